//! `shenpi serve` as a process: it refuses to start on an invalid workflow (printing the located
//! error), serves /healthz, /readyz and /metrics, and stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workflows() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shenpi-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

#[test]
fn refuses_invalid_workflows_with_located_errors() {
    let dir = scratch("bad");
    let wf = dir.join("workflows");
    std::fs::create_dir_all(wf.join("calendars")).expect("mkdir");
    std::fs::create_dir_all(wf.join("templates")).expect("mkdir");
    for sub in ["calendars", "templates"] {
        for e in std::fs::read_dir(workflows().join(sub))
            .expect("read")
            .flatten()
        {
            std::fs::copy(e.path(), wf.join(sub).join(e.file_name())).expect("copy");
        }
    }
    let yaml = std::fs::read_to_string(workflows().join("enterprise-filing.yaml")).expect("yaml");
    std::fs::write(
        wf.join("enterprise-filing.yaml"),
        yaml.replacen("role: fgw_filing }", "role: fgw_filling }", 1),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", dir.join("x.db").display()))
        .arg("--workflows")
        .arg(&wf)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to start"), "{err}");
    let line = yaml
        .lines()
        .position(|l| l.contains("role: fgw_filing }"))
        .expect("assignee line")
        + 1;
    let at = format!("enterprise-filing.yaml:{line}:");
    assert!(err.contains(&at) && err.contains("error[E004]"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serves_health_and_stops_on_sigterm() {
    let dir = scratch("ok");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--db"])
        .arg(format!("sqlite://{}", dir.join("x.db").display()))
        .arg("--workflows")
        .arg(workflows())
        // 2026-12-01 10:00 in China: 30 days before the shipped calendar ends.
        .args(["--clock-start", "2026-12-01T02:00:00Z"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let start = Instant::now();
    let ready = loop {
        if let Some((200, _)) = get(port, "/readyz") {
            break true;
        }
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready, "server did not become ready");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    let metrics = get(port, "/metrics").expect("metrics").1;
    assert!(metrics.contains("shenpi_timers_due"), "{metrics}");
    let login = get(port, "/login").expect("login page").1;
    assert!(login.contains("登录"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        err.contains("shutting down") && err.contains("stopped"),
        "{err}"
    );
    assert!(
        err.contains(
            "warning: calendar `cn-mainland` has official years until 2026-12-31 (30 days from \
             today); deadlines after it are provisional (2027-2041"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
