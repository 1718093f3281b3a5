//! `shenpi bench login-flood`: what a flood of failed logins costs the server.
//!
//! It starts `shenpi serve --demo` as a child process on a scratch database and a loopback port
//! (so the memory measured is the server's alone), then sends N failed logins from C concurrent
//! keep-alive clients, each for a name of its own (so the per-name lock never spares the server
//! a hash: the worst case, credential stuffing). Meanwhile it probes `/healthz` every 20 ms,
//! samples the server's RSS every 50 ms, and has a real user log in, trying again after a
//! `429 too_many_requests` as a person pressing the button again would. It reports RSS before,
//! at the peak and a few seconds after the flood, the `/healthz` percentiles during it, and
//! whether and when the real login succeeded; the exit code is 1 when a target is missed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shenpi_adapters::bench::rss_kib_of;

use super::loadgen::Conn;

#[derive(clap::Args)]
pub struct Args {
    /// Failed logins to send.
    #[arg(long, default_value_t = 2000)]
    logins: u32,
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 128)]
    clients: u32,
    /// The real user who logs in during the flood (a demo account).
    #[arg(long, default_value = "zhang")]
    user: String,
    #[arg(long, default_value = "demo-shenpi")]
    password: String,
    /// The workflows directory for the server.
    #[arg(long, default_value = "workflows")]
    workflows: PathBuf,
    /// Seconds after the flood before the last RSS reading.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// A further flag for the server, e.g. `--serve-arg=--login-workers=1` (repeatable).
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
}

/// The targets of the hardening work.
const MAX_GROWTH_MIB: f64 = 100.0;
const MAX_AFTER_RATIO: f64 = 1.10;
const MAX_HEALTHZ_P99_MS: f64 = 50.0;

/// The server child; killed when dropped, so an error in the middle leaves nothing running.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.logins == 0 || a.clients == 0 {
        bail!("--logins and --clients must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(go(a))
}

async fn go(a: Args) -> anyhow::Result<ExitCode> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::env::temp_dir().join(format!("shenpi-login-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg("--demo")
        .arg("--db")
        .arg(format!("sqlite://{}", dir.join("flood.db").display()))
        .arg("--workflows")
        .arg(&a.workflows)
        .arg("--bind")
        .arg(addr.to_string())
        .args(&a.serve_args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start the server")?;
    let pid = child.id();
    let server = Server {
        child,
        dir: dir.clone(),
    };
    wait_ready(addr).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = || rss_kib_of(pid).unwrap_or(0);
    let before = rss();

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = tokio::spawn({
        let (stop, peak) = (stop.clone(), peak.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib_of(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let probe = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut lat = Vec::new();
            let mut conn = Conn::open(addr).await.ok();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = match conn.as_mut() {
                    Some(c) => matches!(
                        c.request("GET", "/healthz", None, &[], "").await,
                        Ok((200, _))
                    ),
                    None => false,
                };
                if ok {
                    lat.push(started.elapsed());
                } else {
                    conn = Conn::open(addr).await.ok();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lat
        }
    });

    let started = Instant::now();
    let next = Arc::new(AtomicU32::new(0));
    let mut clients = Vec::new();
    for _ in 0..a.clients {
        let next = next.clone();
        let total = a.logins;
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = Conn::open(addr).await.ok();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = serde_json::json!({"name": format!("flood-{i}"), "password": format!("guess-{i}")})
                    .to_string();
                let answer = match conn.as_mut() {
                    Some(c) => c.request("POST", "/api/login", None, &[], &body).await.ok(),
                    None => None,
                };
                match answer {
                    Some((401, _)) => tally.wrong += 1,
                    Some((429, text)) if text.contains("too_many_requests") => tally.busy += 1,
                    Some(_) => tally.other += 1,
                    None => {
                        tally.errors += 1;
                        conn = Conn::open(addr).await.ok();
                    }
                }
            }
            tally
        }));
    }
    // The real user comes in once the flood is under way.
    let real = tokio::spawn({
        let (user, password) = (a.user.clone(), a.password.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let asked = Instant::now();
            let body = serde_json::json!({"name": user, "password": password}).to_string();
            for attempt in 1..=30u32 {
                let Ok(mut c) = Conn::open(addr).await else {
                    continue;
                };
                match c.request("POST", "/api/login", None, &[], &body).await {
                    Ok((200, _)) => return Some((attempt, asked.elapsed())),
                    Ok((429, text)) if text.contains("too_many_requests") => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    _ => return None,
                }
            }
            None
        }
    });
    let mut tally = Tally::default();
    for c in clients {
        tally.add(&c.await?);
    }
    let flood = started.elapsed();
    let real = real.await?;
    let real_in_flood = real.is_some_and(|(_, t)| t + Duration::from_millis(500) <= flood);
    stop.store(true, Ordering::Relaxed);
    let mut lat = probe.await?;
    sampler.await?;
    tokio::time::sleep(Duration::from_secs(a.settle)).await;
    let after = rss();
    let peak = peak.load(Ordering::Relaxed).max(after);
    drop(server);

    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let growth = mib(peak) - mib(before);
    let ratio = after as f64 / before.max(1) as f64;
    println!(
        "login flood: {} failed logins from {} clients in {:.1} s: {} checked (401), {} refused busy (429 too_many_requests), {} other, {} connection errors",
        a.logins,
        a.clients,
        flood.as_secs_f64(),
        tally.wrong,
        tally.busy,
        tally.other,
        tally.errors
    );
    println!(
        "server RSS: before {:.1} MiB, peak {:.1} MiB (+{:.1} MiB), {} s after {:.1} MiB ({:+.1}%)",
        mib(before),
        mib(peak),
        growth,
        a.settle,
        mib(after),
        (ratio - 1.0) * 100.0
    );
    println!(
        "/healthz during the flood: {} probes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    match real {
        Some((attempts, t)) => println!(
            "real login ({}): succeeded after {:.2} s, attempt {attempts}{}",
            a.user,
            t.as_secs_f64(),
            if real_in_flood {
                ", during the flood"
            } else {
                ", after the flood"
            }
        ),
        None => println!("real login ({}): failed", a.user),
    }
    let mut missed = Vec::new();
    if growth >= MAX_GROWTH_MIB {
        missed.push(format!(
            "RSS grew {growth:.1} MiB (target < {MAX_GROWTH_MIB})"
        ));
    }
    if ratio > MAX_AFTER_RATIO {
        missed.push(format!(
            "RSS after is {:.0}% of before (target ≤ 110%)",
            ratio * 100.0
        ));
    }
    // No probe answered (NaN) counts as missed.
    let p99 = pct(0.99);
    if p99.is_nan() || p99 >= MAX_HEALTHZ_P99_MS {
        missed.push(format!(
            "/healthz p99 {:.1} ms (target < {MAX_HEALTHZ_P99_MS})",
            pct(0.99)
        ));
    }
    if !real_in_flood {
        missed.push("the real login did not succeed during the flood".to_string());
    }
    if missed.is_empty() {
        println!("targets: all met");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("targets missed: {}", missed.join("; "));
        Ok(ExitCode::from(1))
    }
}

#[derive(Default)]
struct Tally {
    wrong: u64,
    busy: u64,
    other: u64,
    errors: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.wrong += o.wrong;
        self.busy += o.busy;
        self.other += o.other;
        self.errors += o.errors;
    }
}

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut c) = Conn::open(addr).await
            && let Ok((200, _)) = c.request("GET", "/readyz", None, &[], "").await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not become ready in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
