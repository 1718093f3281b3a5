//! `shenpi loadgen`: an open-loop HTTP load generator for the task-action endpoint.
//!
//! It logs in (as an applicant to register and start projects, as an approver to act), then sends
//! `POST /api/instances/{id}/tasks/{task}/actions` at a fixed rate over keep-alive connections,
//! each with its own `Idempotency-Key`, for a fixed time, and prints the latency percentiles.
//! Latency is measured from the moment a request was *scheduled*, not sent, so a server that
//! falls behind shows it (no coordinated omission). Only loopback targets make sense here; the
//! run is bounded in time and count and stops by itself.
//!
//! The action is a task comment (意见): it goes through the whole command path (auth, policy,
//! decide, group commit with fsync, projections) but leaves the task open, so a run can last as
//! long as wanted on a fixed set of instances.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[derive(clap::Args)]
pub struct Args {
    /// The server, e.g. 127.0.0.1:8080 (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value = "chen")]
    applicant: String,
    #[arg(long, default_value = "li")]
    approver: String,
    /// Password of both accounts (the demo password with `serve --demo`).
    #[arg(long, default_value = "demo-shenpi")]
    password: String,
    /// Requests per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Instances to spread the actions over.
    #[arg(long, default_value_t = 50)]
    instances: u32,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
}

/// One keep-alive HTTP/1.1 connection (also the login-flood benchmark's client).
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: loadgen\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.write_all(req.as_bytes()).await?;
        // Read the head, then Content-Length bytes of body.
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        let head =
            String::from_utf8_lossy(self.buf.get(..head_end).unwrap_or_default()).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line"))?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < head_end + len {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed in body");
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        let body =
            String::from_utf8_lossy(self.buf.get(head_end..head_end + len).unwrap_or_default())
                .to_string();
        Ok((status, body))
    }
}

fn field(json: &str, key: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("not JSON: {json}"))?;
    v.get(key)
        .cloned()
        .ok_or_else(|| anyhow!("no `{key}` in {json}"))
}

async fn login(c: &mut Conn, name: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"name": name, "password": password}).to_string();
    let (st, text) = c.request("POST", "/api/login", None, &[], &body).await?;
    if st != 200 {
        bail!("login as {name} failed ({st}): {text}");
    }
    Ok(field(&text, "token")?
        .as_str()
        .unwrap_or_default()
        .to_string())
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if !a.addr.ip().is_loopback() {
        bail!("loadgen only targets loopback addresses");
    }
    if a.rate == 0 || a.seconds == 0 || a.seconds > 600 || a.connections == 0 {
        bail!("rate, seconds (≤ 600) and connections must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(go(a))
}

async fn go(a: Args) -> anyhow::Result<ExitCode> {
    let mut c = Conn::open(a.addr).await?;
    let applicant = login(&mut c, &a.applicant, &a.password).await?;
    let approver = login(&mut c, &a.approver, &a.password).await?;
    // Set up: projects started, each with its first task open for the approver.
    let mut targets: Vec<(String, String)> = Vec::new();
    eprintln!("loadgen: starting {} instances", a.instances);
    for i in 0..a.instances {
        let body = serde_json::json!({
            "name": format!("压测项目 {i}"), "workflow_id": "provincial-major",
            "fields": {"tier": "中长期库", "investment": 1000, "funding": "企业投资", "industry": "其他", "service_officer": "sun"}
        })
        .to_string();
        let (st, text) = c
            .request("POST", "/api/projects", Some(&applicant), &[], &body)
            .await?;
        if st != 201 {
            bail!("create project: {st} {text}");
        }
        let pid = field(&text, "id")?;
        let body = serde_json::json!({"project_id": pid}).to_string();
        let (st, text) = c
            .request("POST", "/api/instances", Some(&applicant), &[], &body)
            .await?;
        if st != 201 {
            bail!("start instance: {st} {text}");
        }
        let inst = field(&text, "instance")?
            .as_str()
            .unwrap_or_default()
            .to_string();
        targets.push((inst, "0".to_string()));
    }
    let total = u64::from(a.rate) * u64::from(a.seconds);
    eprintln!(
        "loadgen: {} req/s for {} s ({} requests) over {} connections",
        a.rate, a.seconds, total, a.connections
    );
    // Keys unique to this run, so a second run against the same database is not just replays.
    let run_id = shenpi_adapters::machine::now_millis();
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Instant)>(100_000);
    let rx = Arc::new(Mutex::new(rx));
    let targets = Arc::new(targets);
    let approver = Arc::new(approver);
    let mut workers = Vec::new();
    for _ in 0..a.connections {
        let rx = rx.clone();
        let targets = targets.clone();
        let token = approver.clone();
        let addr = a.addr;
        workers.push(tokio::spawn(async move {
            let mut lat: Vec<Duration> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            let mut conn = match Conn::open(addr).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e.to_string());
                    return (lat, errors);
                }
            };
            loop {
                let job = { rx.lock().await.recv().await };
                let Some((n, due)) = job else { break };
                let idx = usize::try_from(n).unwrap_or(0) % targets.len().max(1);
                let Some((inst, task)) = targets.get(idx) else {
                    break;
                };
                let path = format!("/api/instances/{inst}/tasks/{task}/actions");
                let key = format!("load-{run_id}-{n}");
                let body = format!("{{\"type\":\"comment\",\"text\":\"压测意见 {n}\"}}");
                match conn
                    .request(
                        "POST",
                        &path,
                        Some(&token),
                        &[("Idempotency-Key", &key)],
                        &body,
                    )
                    .await
                {
                    Ok((200, body)) => {
                        lat.push(due.elapsed());
                        if body.contains("\"replayed\":true") {
                            errors.push("unexpected replay: keys collide".to_string());
                        }
                    }
                    Ok((st, text)) => {
                        lat.push(due.elapsed());
                        errors.push(format!(
                            "{st}: {}",
                            text.chars().take(200).collect::<String>()
                        ));
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        match Conn::open(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(a.rate));
    for n in 0..total {
        let due = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        if tx.send((n, due)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for w in workers {
        let (l, e) = w.await?;
        lat.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let ok = lat.len() - errors.len().min(lat.len());
    println!(
        "requests: {} sent, {} ok, {} errors in {:.1} s",
        total,
        ok,
        errors.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "achieved: {:.0} req/s",
        lat.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    for e in errors.iter().take(5) {
        println!("error: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
