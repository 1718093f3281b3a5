//! `shenpi serve`, `shenpi user add`, `shenpi token create`: the server and its accounts.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use shenpi_web::server::accounts::{Accounts, SYSTEM_ROLES, User};
use shenpi_web::server::security::{self, TrustedProxies};
use shenpi_web::server::{ServeOptions, passwords, serve};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Database URL: `sqlite://FILE` or `postgres://...`. The default is an embedded SQLite
    /// file in the data directory (`$SHENPI_DATA_DIR`, else `$XDG_DATA_HOME/shenpi`, else
    /// `~/.local/share/shenpi`), never in the source tree.
    #[arg(long, default_value_t = default_db())]
    db: String,
    /// The workflows folder (YAML files, `calendars/`, `templates/`).
    #[arg(long, default_value = "./workflows")]
    workflows: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Seed demo users and projects and print their accounts (never in production).
    #[arg(long)]
    demo: bool,
    /// Start the clock at this instant (e.g. `2026-03-02T10:00:00+08:00`) instead of now; time
    /// then passes normally. For demos and tests on a date the shipped calendar covers.
    #[arg(long, value_name = "TIMESTAMP")]
    clock_start: Option<jiff::Timestamp>,
    /// Notification addresses per party, a JSON file:
    /// `{"parties": {"role:zdb_coordinator": {"dingtalk": "https://..."}}, "default": {}}`.
    /// The webhook signing key comes from the environment variable SHENPI_WEBHOOK_SECRET; a
    /// DingTalk robot's 加签 secret from its entry's `dingtalk_secret`, else from
    /// SHENPI_DINGTALK_SECRET. E-mail goes out through SHENPI_SMTP_URL (`smtps://user:pass@host`,
    /// `smtp://user:pass@host?tls=required` for STARTTLS, `smtp://127.0.0.1:25` for a plain local
    /// relay) from SHENPI_SMTP_FROM; secrets stay out of the command line, which `ps` shows.
    #[arg(long, value_name = "FILE")]
    notify_directory: Option<PathBuf>,
    /// The address people reach the server at, e.g. `https://shenpi.example.gov.cn/`. With
    /// `https://` the session cookies are `Secure` and responses carry HSTS.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// The CJK font official documents' PDFs embed (TrueType/OpenType, or a `.ttc` collection
    /// with `--document-font-index`). The default is Debian's `fonts-wqy-microhei`.
    #[arg(long, value_name = "FILE", default_value = shenpi_web::server::documents::DEFAULT_FONT)]
    document_font: PathBuf,
    /// The face of a font collection (`.ttc`) to use; 0 for a single font.
    #[arg(long, value_name = "N", default_value_t = 0)]
    document_font_index: u32,
    /// A reverse proxy (IP address or CIDR range; repeat or separate with commas) whose
    /// `X-Forwarded-For` is believed for the audit trail. None by default: the header is
    /// ignored and the connection's peer address is recorded.
    #[arg(long = "trusted-proxy", value_name = "IP|CIDR", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Seconds a client has to send a request's headers (and an idle keep-alive connection
    /// its next request) before the connection is closed.
    #[arg(long, default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client has to send a request's body once its headers are in (408 after).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// A long body may take longer than `--body-timeout` as long as it arrives at this many KiB
    /// a second on average (a 50 MB file at the default 32: 30 s + 26 min); slower is 408.
    #[arg(long, default_value_t = 32, value_name = "KIB", value_parser = clap::value_parser!(u64).range(1..))]
    body_min_kib: u64,
    /// Keep material files in this directory (one file per SHA-256, created if missing; a share
    /// every node mounts when several serve one database) instead of in the database. Files
    /// stored before stay readable where they are.
    #[arg(long, value_name = "DIR")]
    file_dir: Option<PathBuf>,
    /// The largest material file taken, in MiB (larger ones are refused with 413).
    #[arg(long, default_value_t = 50, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    max_file_mb: u64,
    /// Connections open at once; further ones wait to be accepted.
    #[arg(long, default_value_t = 512, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Password checks (argon2, 19 MiB each) run at once; default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    login_workers: Option<u64>,
    /// Seconds a login waits for a password worker before it is refused with 429
    /// `too_many_requests` and `Retry-After`.
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    login_wait: u64,
}

/// The data directory: `$SHENPI_DATA_DIR`, else `$XDG_DATA_HOME/shenpi`, else
/// `~/.local/share/shenpi`, else `./shenpi-data` (no home at all).
pub fn data_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("SHENPI_DATA_DIR")
        .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("shenpi")))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/shenpi")))
        .unwrap_or_else(|| PathBuf::from("shenpi-data"))
}

/// The default database: `shenpi.db` in the data directory.
pub fn default_db() -> String {
    format!("sqlite://{}", data_dir().join("shenpi.db").display())
}

/// Opens a database that must already hold shenpi's data (for the tools that read or repair
/// it: `audit verify`, `files sweep`, `migrate`, `workflows export`): a `sqlite://` file that
/// does not exist is an error naming it, not a new empty database that reports nothing wrong.
pub async fn existing_db(url: &str) -> anyhow::Result<shenpi_adapters::store::Db> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            anyhow::bail!(
                "no database at {path}: give the server's database with --db (`shenpi serve` \
                 uses {} unless told otherwise)",
                default_db()
            );
        }
    }
    shenpi_adapters::store::Db::connect(url)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

/// Creates the folder a `sqlite://` URL's file lives in (the data directory on first use).
pub fn ensure_sqlite_dir(db: &str) -> anyhow::Result<()> {
    let Some(path) = db.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let path = path.split('?').next().unwrap_or(path);
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Where `--demo` starts its clock unless `--clock-start` says otherwise.
const DEMO_CLOCK_START: &str = "2026-03-02T10:00:00+08:00";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHENPI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run_serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    passwords::return_hash_memory_to_the_system();
    let directory = match &a.notify_directory {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid directory", p.display()))?
        }
        None => shenpi_adapters::outbox::Directory::default(),
    };
    let webhook_secret = std::env::var("SHENPI_WEBHOOK_SECRET")
        .unwrap_or_default()
        .into_bytes();
    let dingtalk_secret = std::env::var("SHENPI_DINGTALK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let smtp = match std::env::var("SHENPI_SMTP_URL") {
        Ok(url) if !url.is_empty() => Some(shenpi_adapters::outbox::SmtpConfig {
            url,
            from: std::env::var("SHENPI_SMTP_FROM")
                .ok()
                .filter(|s| !s.is_empty())
                .context(
                    "SHENPI_SMTP_URL is set: set SHENPI_SMTP_FROM to the sender address too",
                )?,
        }),
        _ => None,
    };
    // The demo runs on a date the shipped calendar covers (2025-2026), so that every limit it
    // computes lands inside the calendar; a real deployment runs on the real clock.
    let clock_start = match (a.clock_start, a.demo) {
        (Some(t), _) => Some(t),
        (None, true) => {
            let t: jiff::Timestamp = DEMO_CLOCK_START
                .parse()
                .context("the demo start time does not parse")?;
            Some(t)
        }
        (None, false) => None,
    };
    if let Some(u) = &a.public_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        anyhow::bail!("--public-url must start with https:// or http://, not `{u}`");
    }
    let proxies = TrustedProxies::parse(&a.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))?;
    let mut passwords = passwords::Limits {
        wait: Duration::from_secs(a.login_wait),
        ..passwords::Limits::default()
    };
    if let Some(n) = a.login_workers {
        passwords.workers = usize::try_from(n).unwrap_or(usize::MAX);
    }
    // Started from the wrong folder: say once what was looked for, and create nothing.
    if !a.workflows.join(".").is_dir() {
        let looked = std::env::current_dir()
            .map(|d| d.join(&a.workflows))
            .unwrap_or_else(|_| a.workflows.clone());
        eprintln!(
            "error: no workflows folder at {} (looked for `{}`): start shenpi from the folder that \
             holds `workflows/` (the repository's root) or pass `--workflows DIR`; nothing was created",
            looked.display(),
            a.workflows.display()
        );
        return Ok(ExitCode::from(2));
    }
    ensure_sqlite_dir(&a.db)?;
    let rt = runtime()?;
    let res = rt.block_on(serve(ServeOptions {
        db: a.db,
        workflows: a.workflows,
        bind: a.bind,
        demo: a.demo,
        clock_start: clock_start.map(|t| t.as_millisecond()),
        directory,
        webhook_secret,
        dingtalk_secret,
        smtp,
        public_url: a.public_url,
        documents: shenpi_web::server::documents::Settings::new(
            a.document_font,
            a.document_font_index,
        ),
        passwords,
        security: security::Settings {
            proxies,
            body_timeout: Duration::from_secs(a.body_timeout),
            body_min_rate: a.body_min_kib.saturating_mul(1024),
            max_file_bytes: a.max_file_mb.saturating_mul(1 << 20),
        },
        file_dir: a.file_dir,
        connections: security::ConnLimits {
            header_timeout: Duration::from_secs(a.header_timeout),
            max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
        },
    }));
    match res {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            // Invalid workflows: the located errors are the message; exit 1 (input is wrong).
            if let Some(shenpi_web::server::state::StartError::Catalog(
                c @ shenpi_web::server::catalog::CatalogError::Invalid(_),
            )) = e.downcast_ref()
            {
                eprintln!("{c}");
                return Ok(ExitCode::from(1));
            }
            Err(e)
        }
    }
}

async fn accounts(db: &str) -> anyhow::Result<Accounts> {
    ensure_sqlite_dir(db)?;
    let db = shenpi_adapters::store::Db::connect(db)
        .await
        .with_context(|| format!("cannot open database {db}"))?;
    Ok(Accounts::new(&db))
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a user (or update their department, roles and password).
    Add {
        name: String,
        /// The department id (as in the workflows: fgw, zrzy ...).
        #[arg(long)]
        department: Option<String>,
        /// Repeatable: applicant, service_officer, approver, supervisor, policy_staff, admin,
        /// or a workflow role id such as fgw_intake.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value_t = default_db())]
        db: String,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = default_db())]
        db: String,
    },
}

pub fn run_user(c: UserCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match c {
        UserCommand::Add {
            name,
            department,
            roles,
            password_stdin,
            db,
        } => {
            let name = name.trim().to_string();
            if name.is_empty()
                || name.len() > 64
                || name.chars().any(|c| c.is_whitespace() || c == ':')
            {
                anyhow::bail!("user name must be 1 to 64 characters without spaces or `:`");
            }
            for r in &roles {
                if !SYSTEM_ROLES.contains(&r.as_str())
                    && !r
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    anyhow::bail!(
                        "role `{r}`: use a system role ({}) or a workflow role id",
                        SYSTEM_ROLES.join(", ")
                    );
                }
            }
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                let p = s.lines().next().unwrap_or("").to_string();
                if p.chars().count() < 8 {
                    anyhow::bail!("the password must have at least 8 characters");
                }
                Some(p)
            } else {
                None
            };
            let user = User {
                name: name.clone(),
                department,
                roles,
            };
            rt.block_on(async {
                let a = accounts(&db).await?;
                a.upsert_user(
                    &user,
                    password.as_deref(),
                    shenpi_adapters::machine::now_millis(),
                )
                .await?;
                anyhow::Ok(())
            })?;
            println!("user {name} saved");
            if password.is_none() {
                eprintln!(
                    "note: no password set; this user can use API tokens only (`shenpi token create {name}`)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::List { db } => {
            let users = rt.block_on(async {
                accounts(&db)
                    .await?
                    .users()
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            for u in users {
                println!(
                    "{}\t{}\t{}",
                    u.name,
                    u.department.unwrap_or_else(|| "-".into()),
                    u.roles.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user; prints it once (only its hash is stored).
    Create {
        name: String,
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value_t = default_db())]
        db: String,
    },
}

pub fn run_token(c: TokenCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match c {
        TokenCommand::Create { name, label, db } => {
            let token = rt.block_on(async {
                let a = accounts(&db).await?;
                a.create_token(
                    &name,
                    label.as_deref(),
                    shenpi_adapters::machine::now_millis(),
                )
                .await
                .map_err(anyhow::Error::from)
            })?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
