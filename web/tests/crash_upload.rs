//! A crash while uploading leaves no half-stored file referenced by an event. The real
//! `shenpi serve` (on a fresh SQLite file; on SQLite with `--file-dir`, the content in a
//! directory; and on PostgreSQL in a schema of its own when it can be reached) takes a 40 MiB
//! PDF for a material promised under 容缺, sent over a raw TCP connection, and is killed with
//! SIGKILL at each point of the upload:
//!
//! - (a) while the body is still coming in (the client is sending it slowly; the server holds
//!   the upload's unnamed temporary file);
//! - (b) while the content is being written (the SQLite WAL, PostgreSQL's chunk table, or the
//!   file under the directory's `.incoming`, has grown by megabytes and there is no
//!   `material_files` row for it yet);
//! - (c) right after the content is stored, before the command: the request's second file is
//!   held back, so the server has stored the first and waits for the rest of the body;
//! - (d) the moment a file's `material_files` row is committed, with nothing held back: the
//!   `SupplyMaterial` command may or may not be committed too, and either is right.
//!
//! Each kill point is caught by watching the process and the database; the server is then
//! stopped (SIGSTOP) so the state checked is the state it is killed in. After each kill the
//! server is restarted on the same database, and the API and the database must agree: every
//! hash a `material_supplied` event names is listed, has its `material_files` row and all its
//! content (every chunk: count, total length, SHA-256 of their concatenation; or its file
//! `DIR/ab/<sha256>` of the row's size hashing to it, the row saying `directory`) and downloads
//! whole; no row has content missing and no chunk is left without its row (a file in place
//! without its row may be: renamed just before the kill; it must be whole); a cut-off upload is
//! not listed and its material is still awaited; and a complete upload afterwards (of the same
//! content, whatever a kill left of it) succeeds and downloads byte for byte. The checks are
//! written once ([`Peek::check_stored`]); only where content is looked for differs.
//!
//! Linux only: the test reads the server's open files in `/proc`.
#![cfg(target_os = "linux")]

mod api_common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_common::{in_schema, pg_admin, pg_schema, pg_url, workflows_dir};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shenpi_adapters::store::files::CHUNK;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-03-02 10:00 +08:00: the servers' clock starts here and goes on from restart to
/// restart, inside the shipped calendar.
const T0: i64 = 1_772_416_800_000;
const BOUNDARY: &str = "----shenpi-crash-boundary";
/// The two materials the approver waives (容缺) and the applicant then owes.
const INVESTMENT: &str = "investment_info";
const POLICY: &str = "policy_statement";

/// A PDF-looking file of `len` bytes: the PDF header, then bytes from a seeded generator, so
/// each seed is other content with another hash.
fn pdf(len: usize, seed: u64) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Where a run's database is, and how the test reads it behind the server's back.
enum Backend {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

/// One run: a scratch folder (logs, the server's temporary files), the database, the tokens.
struct Site {
    /// The backend's name, for the log of where each kill landed.
    name: &'static str,
    dir: PathBuf,
    db: String,
    backend: Backend,
    /// `serve --file-dir`, when the run keeps file content in a directory.
    file_dir: Option<PathBuf>,
    started: Instant,
    tokens: BTreeMap<&'static str, String>,
    servers: u32,
}

/// A running `shenpi serve`, killed when dropped (a failed test leaves none behind).
struct Serve {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Freezes the process (SIGSTOP): nothing it does can move on while the test looks.
    fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.pid().to_string()])
            .status()
            .expect("kill -STOP runs");
        assert!(status.success(), "SIGSTOP to the server");
    }

    /// SIGKILL, and the proof that it was the signal that ended the process.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait");
        assert_eq!(status.signal(), Some(9), "the server died of SIGKILL");
    }

    /// Whether the server holds an unnamed temporary file in its `TMPDIR`: an upload's body
    /// being received (or being read back into the database).
    fn holds_upload_file(&self, tmp: &Path) -> bool {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                target.starts_with(tmp) && target.to_string_lossy().ends_with("(deleted)")
            })
        })
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An HTTP response, read to the end of a `Connection: close` exchange.
struct Resp {
    status: u16,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits a raw response into its status and body (a chunked body decoded).
fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line])
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            rest = &rest[line + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    Some(Resp { status, body })
}

/// One request to the server; `body` is (content type, bytes).
async fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Option<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some((ctype, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.ok()?;
    if let Some((_, bytes)) = body {
        s.write_all(bytes).await.ok()?;
    }
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    parse_response(&raw)
}

/// The multipart framing before a file part's content.
fn part_head(name: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
    .into_bytes()
}

/// A whole multipart body with one file part per `(name, content)`.
fn multipart(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, content) in files {
        body.extend_from_slice(&part_head(name));
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// An upload on a raw connection: the request head, declaring `len` bytes of body, is sent.
async fn open_upload(port: u16, token: &str, inst: &str, material: &str, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/instances/{inst}/materials/{material}/files HTTP/1.1\r\nHost: t\r\n\
         Connection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s
}

/// Sends `bytes` on a task of its own (the server may read them slower than they are sent);
/// the connection is handed back so it stays open until the kill.
fn send_in_background(
    mut s: TcpStream,
    bytes: Vec<u8>,
) -> tokio::task::JoinHandle<(TcpStream, std::io::Result<()>)> {
    tokio::spawn(async move {
        let r = s.write_all(&bytes).await;
        (s, r)
    })
}

/// How the test reads the database while the server runs (read-only on SQLite), and where it
/// looks for the content the server writes.
struct Peek {
    pool: Pool,
    content: Content,
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Where a run's server writes file content.
enum Content {
    /// Chunks in the SQLite file; an open transaction's pages spill to this WAL.
    SqliteChunks { wal: PathBuf },
    /// Chunks in PostgreSQL, in this schema.
    PostgresChunks { schema: String },
    /// One file per hash in this directory (`serve --file-dir`).
    Directory(PathBuf),
}

/// Runs one query on whichever pool: `$q` is the query built once per driver.
macro_rules! on_pool {
    ($peek:expr, |$p:ident| $q:expr) => {
        match &$peek.pool {
            Pool::Sqlite($p) => $q.await,
            Pool::Postgres($p) => $q.await,
        }
    };
}

/// The SHA-256 of a file on disk, read 1 MiB at a time.
fn file_hash(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return format!("{:x}", h.finalize());
        }
        h.update(&buf[..n]);
    }
}

impl Peek {
    /// A query in PostgreSQL's `$n` parameters, as SQLite writes them.
    fn sql(&self, text: &'static str) -> sqlx::AssertSqlSafe<String> {
        match self.pool {
            Pool::Sqlite(..) => sqlx::AssertSqlSafe(text.replace('$', "?")),
            Pool::Postgres(..) => sqlx::AssertSqlSafe(text.to_string()),
        }
    }

    async fn close(self) {
        match self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Where this run's rows must say their content is.
    fn place(&self) -> &'static str {
        match self.content {
            Content::Directory(_) => "directory",
            _ => "database",
        }
    }

    /// `DIR/ab/<sha>`, for a run with a files directory.
    fn path_of(&self, sha: &str) -> Option<PathBuf> {
        match &self.content {
            Content::Directory(dir) => Some(dir.join(&sha[..2]).join(sha)),
            _ => None,
        }
    }

    /// The `material_files` rows: hash, size and place.
    async fn files(&self) -> BTreeMap<String, (i64, String)> {
        let q = self.sql("SELECT sha256, size, place FROM material_files");
        let rows: Vec<(String, i64, String)> =
            on_pool!(self, |p| sqlx::query_as(q).fetch_all(p)).expect("material_files");
        rows.into_iter()
            .map(|(sha, size, place)| (sha, (size, place)))
            .collect()
    }

    /// The chunks stored for each hash: (count, total length, highest `n`).
    async fn chunks(&self) -> BTreeMap<String, (i64, i64, i64)> {
        let q = self.sql(
            "SELECT sha256, CAST(COUNT(*) AS BIGINT), CAST(SUM(LENGTH(data)) AS BIGINT), \
             CAST(MAX(n) AS BIGINT) FROM material_file_chunks GROUP BY sha256",
        );
        let rows: Vec<(String, i64, i64, i64)> =
            on_pool!(self, |p| sqlx::query_as(q).fetch_all(p)).expect("material_file_chunks");
        rows.into_iter()
            .map(|(sha, count, total, max)| (sha, (count, total, max)))
            .collect()
    }

    async fn has_file(&self, sha: &str) -> bool {
        let q = self.sql("SELECT CAST(COUNT(*) AS BIGINT) FROM material_files WHERE sha256 = $1");
        let n: i64 = on_pool!(self, |p| sqlx::query_scalar(q).bind(sha).fetch_one(p))
            .expect("material_files");
        n > 0
    }

    /// Whether any of `sha`'s content is in place: a chunk, or its file in the directory.
    async fn has_content(&self, sha: &str) -> bool {
        self.chunks().await.contains_key(sha) || self.path_of(sha).is_some_and(|p| p.exists())
    }

    /// The SHA-256 of a hash's chunks concatenated in order.
    async fn content_hash(&self, sha: &str, chunks: i64) -> String {
        let mut h = Sha256::new();
        for n in 0..chunks {
            let q = self.sql("SELECT data FROM material_file_chunks WHERE sha256 = $1 AND n = $2");
            let data: Vec<u8> = on_pool!(self, |p| sqlx::query_scalar(q)
                .bind(sha)
                .bind(n)
                .fetch_one(p))
            .unwrap_or_else(|e| panic!("{sha}: chunk {n}: {e}"));
            h.update(&data);
        }
        format!("{:x}", h.finalize())
    }

    /// Every row says the content is where this run's server puts it and the content is
    /// there whole: every chunk (count, total length, SHA-256 of their concatenation) or the
    /// file `DIR/ab/<sha>` of exactly the row's size hashing to the hash. No chunk lacks its
    /// row. A file in the directory without a row is allowed (renamed into place just before a
    /// kill, the row not yet written), but it is whole and named by its hash.
    async fn check_stored(&self) -> BTreeMap<String, i64> {
        let rows = self.files().await;
        let chunks = self.chunks().await;
        for (sha, (size, place)) in &rows {
            assert_eq!(place, self.place(), "{sha}: the row's place");
            match self.path_of(sha) {
                None => {
                    let want = (*size as u64).div_ceil(CHUNK as u64) as i64;
                    assert_eq!(
                        chunks.get(sha),
                        Some(&(want, *size, want - 1)),
                        "{sha}: a material_files row of {size} bytes has (chunks, bytes, last n)"
                    );
                    assert_eq!(
                        &self.content_hash(sha, want).await,
                        sha,
                        "the chunks of {sha} hash to it"
                    );
                }
                Some(path) => {
                    let len = std::fs::metadata(&path).map(|m| m.len());
                    assert_eq!(
                        len.ok(),
                        Some(*size as u64),
                        "{sha}: its row's file {} of {size} bytes",
                        path.display()
                    );
                    assert_eq!(
                        &file_hash(&path),
                        sha,
                        "{} hashes to its name",
                        path.display()
                    );
                }
            }
        }
        for sha in chunks.keys() {
            assert!(
                rows.get(sha).is_some_and(|(_, place)| place == "database"),
                "chunks of {sha} without its row"
            );
        }
        if let Content::Directory(dir) = &self.content {
            for sub in std::fs::read_dir(dir).expect("files directory").flatten() {
                if sub.file_name() == ".incoming" {
                    continue;
                }
                for f in std::fs::read_dir(sub.path())
                    .expect("subdirectory")
                    .flatten()
                {
                    let name = f.file_name().to_string_lossy().into_owned();
                    assert_eq!(
                        self.path_of(&name).as_deref(),
                        Some(f.path().as_path()),
                        "a file outside .incoming is named DIR/<first two hex digits>/<sha256>"
                    );
                    if !rows.contains_key(&name) {
                        assert_eq!(
                            file_hash(&f.path()),
                            name,
                            "{name}, without a row, is whole"
                        );
                        eprintln!("{name}: in place without its row (renamed before a kill)");
                    }
                }
            }
        }
        rows.into_iter()
            .map(|(sha, (size, _))| (sha, size))
            .collect()
    }

    /// Bytes written for file content so far, committed or not: the size of the SQLite WAL
    /// (an open transaction's pages spill there), of PostgreSQL's chunk table with its TOAST,
    /// or of the files being written under the directory's `.incoming`.
    async fn written(&self) -> i64 {
        match &self.content {
            Content::SqliteChunks { wal } => {
                std::fs::metadata(wal).map(|m| m.len() as i64).unwrap_or(0)
            }
            Content::PostgresChunks { schema } => {
                let q = "SELECT pg_total_relation_size(CAST(CAST($1 AS TEXT) AS regclass))";
                on_pool!(self, |p| sqlx::query_scalar(q)
                    .bind(format!("{schema}.material_file_chunks"))
                    .fetch_one(p))
                .expect("relation size")
            }
            Content::Directory(dir) => std::fs::read_dir(dir.join(".incoming"))
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len() as i64)
                        .sum()
                })
                .unwrap_or(0),
        }
    }
}

/// What the API says of the instance's files after a restart.
struct Seen {
    /// Every hash a `material_supplied` event names, with its size.
    named: BTreeMap<String, u64>,
    /// Each material's status (`promised`, `supplied` …).
    status: BTreeMap<String, String>,
}

impl Site {
    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Runs `shenpi` with `args` on the site's database, `stdin` on its standard input; its
    /// standard output.
    fn cli(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shenpi"))
            .args(args)
            .args(["--db", &self.db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("shenpi runs");
        let mut input = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("stdin written");
        drop(input);
        let out = child.wait_with_output().expect("shenpi ends");
        assert!(
            out.status.success(),
            "shenpi {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The accounts, as an administrator makes them (README: `shenpi user add … --password-stdin`,
    /// `shenpi token create`).
    fn add_users(&mut self) {
        let users: &[(&str, Option<&str>, &[&str])] = &[
            ("chen", None, &["applicant"]),
            ("zhang", Some("fgw"), &["approver", "fgw_filing"]),
            ("liu", None, &["service_officer"]),
        ];
        for (name, dept, roles) in users {
            let mut args = vec!["user", "add", name];
            if let Some(d) = dept {
                args.extend(["--department", d]);
            }
            for r in *roles {
                args.extend(["--role", r]);
            }
            args.push("--password-stdin");
            self.cli(&args, "a-long-password\n");
        }
        for name in ["chen", "zhang"] {
            let token = self.cli(&["token", "create", name], "");
            assert!(!token.is_empty(), "a token for {name}");
            self.tokens.insert(name, token);
        }
    }

    fn token(&self, user: &str) -> &str {
        self.tokens.get(user).expect("a token")
    }

    /// Starts `shenpi serve` on the site's database and waits until it is ready. Its clock
    /// starts at `T0` plus the time the run has taken, so it never goes back across restarts.
    async fn start(&mut self) -> Serve {
        self.servers += 1;
        let port = free_port();
        let log = self.dir.join(format!("serve-{}.log", self.servers));
        let out = std::fs::File::create(&log).expect("log");
        let clock = jiff::Timestamp::from_millisecond(
            T0 + i64::try_from(self.started.elapsed().as_millis()).expect("ms"),
        )
        .expect("instant");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_shenpi"));
        serve
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--db"])
            .arg(&self.db)
            .arg("--workflows")
            .arg(workflows_dir())
            .args(["--clock-start", &clock.to_string()]);
        if let Some(dir) = &self.file_dir {
            serve.arg("--file-dir").arg(dir);
        }
        let child = serve
            .env("TMPDIR", self.tmp())
            .env("SHENPI_LOG", "warn")
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("serve starts");
        let mut serve = Serve { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = request(port, "GET", "/readyz", None, None).await
                && r.status == 200
            {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("serve exited ({status}): {}", serve.log());
            }
            assert!(
                Instant::now() < deadline,
                "serve not ready: {}",
                serve.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn peek(&self) -> Peek {
        let (pool, content) = match &self.backend {
            Backend::Sqlite(file) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(file)
                    .read_only(true);
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .expect("the database, read-only");
                let wal = PathBuf::from(format!("{}-wal", file.display()));
                (Pool::Sqlite(pool), Content::SqliteChunks { wal })
            }
            Backend::Postgres { url, schema } => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .expect("PostgreSQL");
                let schema = schema.clone();
                (Pool::Postgres(pool), Content::PostgresChunks { schema })
            }
        };
        let content = match &self.file_dir {
            Some(dir) => Content::Directory(dir.clone()),
            None => content,
        };
        Peek { pool, content }
    }

    async fn api(
        &self,
        srv: &Serve,
        method: &str,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> Resp {
        let bytes = body.map(|b| b.to_string().into_bytes());
        request(
            srv.port,
            method,
            path,
            Some(self.token(user)),
            bytes.as_deref().map(|b| ("application/json", b)),
        )
        .await
        .unwrap_or_else(|| panic!("{method} {path}: no answer; {}", srv.log()))
    }

    /// An enterprise filing of chen's, pre-approved under 容缺 with two materials waived: chen
    /// owes both, so their uploads are accepted.
    async fn filing_owing_two_materials(&self, srv: &Serve) -> String {
        let p = self
            .api(
                srv,
                "POST",
                "/api/projects",
                "chen",
                Some(json!({
                    "name": "年产5万吨再生纸技改项目",
                    "workflow_id": "enterprise-filing",
                    "fields": {"enterprise": "某纸业股份有限公司", "funding": "企业投资",
                               "catalog": "备案类", "industry": "制造业", "investment": 12000,
                               "service_officer": "liu"}
                })),
            )
            .await;
        assert_eq!(p.status, 201, "{}", p.text());
        let project = p.json()["id"].as_str().expect("project id").to_string();
        let s = self
            .api(
                srv,
                "POST",
                "/api/instances",
                "chen",
                Some(json!({"project_id": project})),
            )
            .await;
        assert_eq!(s.status, 201, "{}", s.text());
        let inst = s.json()["instance"].as_str().expect("instance").to_string();
        let d = self
            .api(srv, "GET", &format!("/api/instances/{inst}"), "zhang", None)
            .await;
        let task = d.json()["view"]["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["node"] == "filing"))
            .and_then(|t| t["id"].as_u64())
            .expect("the filing task");
        let r = self
            .api(
                srv,
                "POST",
                &format!("/api/instances/{inst}/tasks/{task}/actions"),
                "zhang",
                Some(json!({"type": "approve_conditional", "waive": [INVESTMENT, POLICY]})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        inst
    }

    /// Everything the API and the database say of the instance's files must agree: each hash
    /// an event names is listed, stored whole and downloads whole; each stored file has every
    /// chunk and nothing else is stored.
    async fn check(&self, srv: &Serve, inst: &str) -> Seen {
        let d = self
            .api(srv, "GET", &format!("/api/instances/{inst}"), "chen", None)
            .await;
        assert_eq!(d.status, 200, "{}", d.text());
        let d = d.json();
        let mut named: BTreeMap<String, u64> = BTreeMap::new();
        for h in d["history"].as_array().expect("history") {
            if h["type"] == "material_supplied" {
                for f in h["event"]["files"].as_array().into_iter().flatten() {
                    named.insert(
                        f["sha256"].as_str().expect("sha256").to_string(),
                        f["size"].as_u64().expect("size"),
                    );
                }
            }
        }
        let status = d["materials"]
            .as_array()
            .expect("materials")
            .iter()
            .map(|m| {
                (
                    m["material"].as_str().expect("id").to_string(),
                    m["status"].as_str().expect("status").to_string(),
                )
            })
            .collect();
        let mut listed: BTreeMap<String, u64> = BTreeMap::new();
        for m in [INVESTMENT, POLICY] {
            let l = self
                .api(
                    srv,
                    "GET",
                    &format!("/api/instances/{inst}/materials/{m}/files"),
                    "chen",
                    None,
                )
                .await;
            assert_eq!(l.status, 200, "{}", l.text());
            for v in l.json().as_array().expect("versions") {
                for f in v["files"].as_array().expect("files") {
                    listed.insert(
                        f["sha256"].as_str().expect("sha256").to_string(),
                        f["size"].as_u64().expect("size"),
                    );
                }
            }
        }
        assert_eq!(
            listed, named,
            "the versions listed are the files events name"
        );

        let peek = self.peek().await;
        let files = peek.check_stored().await;
        for (sha, size) in &named {
            assert_eq!(
                files.get(sha).map(|s| *s as u64),
                Some(*size),
                "{sha}, named by an event, is stored with its size"
            );
            let r = request(
                srv.port,
                "GET",
                &format!("/api/instances/{inst}/files/{sha}?download=true"),
                Some(self.token("zhang")),
                None,
            )
            .await
            .expect("download");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.body.len() as u64, *size);
            assert_eq!(&sha256_hex(&r.body), sha, "{sha} downloads whole");
        }
        peek.close().await;
        Seen { named, status }
    }

    /// A complete upload of one file, on one connection: its response.
    async fn upload(
        &self,
        srv: &Serve,
        inst: &str,
        material: &str,
        name: &str,
        content: &[u8],
    ) -> Resp {
        let body = multipart(&[(name, content)]);
        let s = open_upload(srv.port, self.token("chen"), inst, material, body.len()).await;
        let (mut s, sent) = send_in_background(s, body).await.expect("join");
        sent.expect("body sent");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
            .await
            .expect("answered in time")
            .expect("read");
        parse_response(&raw).unwrap_or_else(|| panic!("no response: {}", srv.log()))
    }
}

/// Polls `what` until it holds (at most 30 s, then fails naming `point`).
async fn until<F, Fut>(point: &str, srv: &Serve, mut what: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !what().await {
        assert!(
            Instant::now() < deadline,
            "{point}: never reached; {}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A run in progress: the site, the server now running, the instance, and the contents.
struct Run {
    site: Site,
    srv: Serve,
    inst: String,
    /// 40 MiB for the investment material, and its hash.
    a: Vec<u8>,
    sha_a: String,
    /// 16 MiB for the policy statement, and its hash.
    b: Vec<u8>,
    sha_b: String,
}

impl Run {
    /// SIGKILL, a restart on the same database, and what the restarted server says.
    async fn kill_and_restart(&mut self) -> Seen {
        self.srv.kill();
        // The upload's temporary file had no name: the kill leaves nothing on disk.
        let left: Vec<_> = std::fs::read_dir(self.site.tmp())
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "files left in the server's TMPDIR: {left:?}"
        );
        self.srv = self.site.start().await;
        self.site.check(&self.srv, &self.inst).await
    }

    /// An upload's connection, the request head sent.
    async fn open(&self, material: &str, len: usize) -> TcpStream {
        let token = self.site.token("chen");
        open_upload(self.srv.port, token, &self.inst, material, len).await
    }

    /// (a) Killed while the body comes in: 12 MiB of the 40 sent, 1 MiB every 20 ms.
    async fn killed_while_receiving(&mut self) {
        let whole = multipart(&[("投资估算.pdf", &self.a)]);
        let mut s = self.open(INVESTMENT, whole.len()).await;
        for piece in whole[..12 << 20].chunks(1 << 20) {
            s.write_all(piece).await.expect("the server reads the body");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (srv, tmp) = (&self.srv, self.site.tmp());
        until("(a) receiving", srv, || {
            let receiving = srv.holds_upload_file(&tmp);
            async move { receiving }
        })
        .await;
        srv.freeze();
        assert!(
            srv.holds_upload_file(&tmp),
            "(a) the body is being received"
        );
        let peek = self.site.peek().await;
        assert!(!peek.has_file(&self.sha_a).await);
        peek.close().await;
        let seen = self.kill_and_restart().await;
        drop(s);
        eprintln!("{}: (a) killed 12 MiB into a 40 MiB body", self.site.name);
        assert!(
            !seen.named.contains_key(&self.sha_a),
            "(a) the cut-off upload is not listed"
        );
        assert_eq!(seen.status[INVESTMENT], "promised", "(a) still awaited");
    }

    /// (b) Killed while the content is written: the whole body sent, the database grown by
    /// 8 MiB or more (an open transaction's writes), or the file under the directory's
    /// `.incoming` grown as much, and no row for it.
    async fn killed_while_writing(&mut self) {
        let whole = multipart(&[("投资估算.pdf", &self.a)]);
        let peek = self.site.peek().await;
        let before = peek.written().await;
        let s = self.open(INVESTMENT, whole.len()).await;
        let _sending = send_in_background(s, whole);
        until("(b) writing", &self.srv, || {
            let peek = &peek;
            async move { peek.written().await - before >= 8 << 20 }
        })
        .await;
        self.srv.freeze();
        let grown = peek.written().await - before;
        assert!(
            self.srv.holds_upload_file(&self.site.tmp()),
            "(b) the upload is in progress"
        );
        peek.close().await;
        let seen = self.kill_and_restart().await;
        eprintln!(
            "{}: (b) killed with {} MiB of the content written",
            self.site.name,
            grown >> 20
        );
        assert!(!seen.named.contains_key(&self.sha_a), "(b) not listed");
        // No row: the kill landed before the commit or the rename (the restart's check above
        // has already refused a row without its content); and nothing of the content written
        // is in place (what is under `.incoming` is never named).
        let peek = self.site.peek().await;
        assert!(
            !peek.has_file(&self.sha_a).await,
            "(b) the kill landed before the content was committed"
        );
        assert!(
            !peek.has_content(&self.sha_a).await,
            "(b) nothing of the half-written content is in place"
        );
        peek.close().await;
        assert_eq!(seen.status[INVESTMENT], "promised", "(b) still awaited");
    }

    /// (c) Killed right after the content is stored, before the command: a second file
    /// follows the first, and all but its last 512 KiB are sent.
    async fn killed_once_stored(&mut self) {
        let second = pdf(1 << 20, 3);
        let two = multipart(&[("投资估算.pdf", &self.a), ("附件.pdf", &second)]);
        let s = self.open(INVESTMENT, two.len()).await;
        let _sending = send_in_background(s, two[..two.len() - (512 << 10)].to_vec());
        let peek = self.site.peek().await;
        until("(c) stored", &self.srv, || peek.has_file(&self.sha_a)).await;
        // The request waits for the rest of the second file (its temporary file is open), so
        // the command cannot have been sent.
        let (srv, tmp) = (&self.srv, self.site.tmp());
        until("(c) receiving the second file", srv, || {
            let receiving = srv.holds_upload_file(&tmp);
            async move { receiving }
        })
        .await;
        srv.freeze();
        peek.close().await;
        let seen = self.kill_and_restart().await;
        eprintln!(
            "{}: (c) killed with the first file stored and the second still coming",
            self.site.name
        );
        assert!(
            !seen.named.contains_key(&self.sha_a),
            "(c) stored content no event names is not listed"
        );
        let peek = self.site.peek().await;
        assert!(
            peek.has_file(&self.sha_a).await,
            "(c) the stored content is kept"
        );
        peek.close().await;
        assert_eq!(seen.status[INVESTMENT], "promised", "(c) still awaited");
    }

    /// (d) Killed the moment the other material's file is committed, nothing held back: its
    /// command may have been committed as well. If not, the file is sent again whole.
    async fn killed_around_the_command(&mut self) {
        let whole = multipart(&[("产业政策声明.pdf", &self.b)]);
        let s = self.open(POLICY, whole.len()).await;
        let _sending = send_in_background(s, whole);
        let peek = self.site.peek().await;
        until("(d) stored", &self.srv, || peek.has_file(&self.sha_b)).await;
        self.srv.freeze();
        peek.close().await;
        let seen = self.kill_and_restart().await;
        if seen.named.contains_key(&self.sha_b) {
            eprintln!(
                "{}: (d) killed once the file was stored: its command was committed too",
                self.site.name
            );
            assert_eq!(seen.status[POLICY], "supplied");
        } else {
            eprintln!(
                "{}: (d) killed once the file was stored, before its command",
                self.site.name
            );
            assert_eq!(seen.status[POLICY], "promised", "(d) still awaited");
            let r = self
                .site
                .upload(&self.srv, &self.inst, POLICY, "产业政策声明.pdf", &self.b)
                .await;
            assert_eq!(r.status, 201, "(d) sent again: {}", r.text());
        }
    }

    /// A complete upload after the kills: the content a kill left stored is taken, listed as
    /// the material's one version, and downloads byte for byte.
    async fn uploaded_whole(&mut self) {
        let (site, srv, inst) = (&self.site, &self.srv, &self.inst);
        let r = site
            .upload(srv, inst, INVESTMENT, "投资估算.pdf", &self.a)
            .await;
        assert_eq!(r.status, 201, "the upload after the kills: {}", r.text());
        assert_eq!(r.json()["files"][0]["sha256"], self.sha_a.as_str());
        let path = format!("/api/instances/{inst}/materials/{INVESTMENT}/files");
        let versions = site.api(srv, "GET", &path, "zhang", None).await.json();
        assert_eq!(
            versions.as_array().map(Vec::len),
            Some(1),
            "one version: {versions}"
        );
        assert_eq!(versions[0]["files"][0]["sha256"], self.sha_a.as_str());
        assert_eq!(versions[0]["files"][0]["size"], self.a.len());
        let path = format!("/api/instances/{inst}/files/{}?download=true", self.sha_a);
        let dl = site.api(srv, "GET", &path, "zhang", None).await;
        assert_eq!(dl.status, 200);
        assert!(dl.body == self.a, "the file downloads byte for byte");
        let seen = site.check(srv, inst).await;
        assert_eq!(
            seen.named.keys().cloned().collect::<BTreeSet<_>>(),
            BTreeSet::from([self.sha_a.clone(), self.sha_b.clone()]),
        );
        assert_eq!(seen.status[INVESTMENT], "supplied");
        assert_eq!(seen.status[POLICY], "supplied");
    }
}

async fn run(mut site: Site) {
    site.add_users();
    let srv = site.start().await;
    let inst = site.filing_owing_two_materials(&srv).await;
    let seen = site.check(&srv, &inst).await;
    assert!(seen.named.is_empty());
    assert_eq!(seen.status[INVESTMENT], "promised");
    assert_eq!(seen.status[POLICY], "promised");
    let (a, b) = (pdf(40 << 20, 1), pdf(16 << 20, 2));
    let mut run = Run {
        site,
        srv,
        inst,
        sha_a: sha256_hex(&a),
        a,
        sha_b: sha256_hex(&b),
        b,
    };
    run.killed_while_receiving().await;
    run.killed_while_writing().await;
    run.killed_once_stored().await;
    run.killed_around_the_command().await;
    run.uploaded_whole().await;
    run.srv.kill();
}

/// A fresh scratch folder (with the servers' `TMPDIR`).
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("shenpi-crash-upload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
    dir
}

impl Site {
    fn new(name: &'static str, dir: PathBuf, db: String, backend: Backend) -> Site {
        Site {
            name,
            dir,
            db,
            backend,
            file_dir: None,
            started: Instant::now(),
            tokens: BTreeMap::new(),
            servers: 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_upload_leaves_no_half_stored_file_named() {
    let dir = scratch("sqlite");
    let file = dir.join("shenpi.db");
    let db = format!("sqlite://{}", file.display());
    run(Site::new("sqlite", dir.clone(), db, Backend::Sqlite(file))).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The same with `serve --file-dir`: the rows in SQLite, the content in a directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_directory_a_killed_upload_leaves_no_half_stored_file_named() {
    let dir = scratch("file-dir");
    let file = dir.join("shenpi.db");
    let db = format!("sqlite://{}", file.display());
    let mut site = Site::new("sqlite, --file-dir", dir.clone(), db, Backend::Sqlite(file));
    site.file_dir = Some(dir.join("files"));
    run(site).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_upload_leaves_no_half_stored_file_named() {
    let base = pg_url();
    let Some(mut admin) = pg_admin(&base).await else {
        return;
    };
    let schema = pg_schema(&mut admin, "crash_upload").await;
    let url = in_schema(&base, &schema);
    let dir = scratch("postgres");
    let backend = Backend::Postgres {
        url: url.clone(),
        schema: schema.clone(),
    };
    run(Site::new("postgres", dir.clone(), url, backend)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .expect("drop schema");
    let _ = std::fs::remove_dir_all(dir);
}
