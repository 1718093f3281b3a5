//! The connection limits of `security::serve` over real TCP, and the `serve` flags that set
//! them and the cookie and proxy rules, on the binary: a client that sends its headers a byte
//! at a time is cut off, connections beyond the cap wait, `--public-url https://` makes the
//! cookies `Secure`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use shenpi_web::server::security::{ConnLimits, serve};

/// Starts `serve` on a loopback port with a one-route router; returns the port.
async fn start(limits: ConnLimits) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(listener, router, limits, std::future::pending()));
    port
}

/// Whether the server closed the connection (a read returns end of file or an error) within
/// `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_headers_is_cut_off() {
    let port = start(ConnLimits {
        header_timeout: Duration::from_millis(300),
        max_connections: 16,
    })
    .await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
            .expect("write");
        (
            closed_within(&mut idle, Duration::from_secs(5)),
            closed_within(&mut slow, Duration::from_secs(5)),
        )
    })
    .await
    .expect("join");
    assert_eq!(
        closed,
        (true, true),
        "(idle, slow header) connections closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let port = start(ConnLimits {
        header_timeout: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    tokio::task::spawn_blocking(move || {
        let first = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _second = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        std::thread::sleep(Duration::from_millis(200));
        let mut third = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        third
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .expect("write");
        third
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        assert!(
            third.read(&mut buf).is_err(),
            "a third connection is not served while two are open"
        );
        drop(first);
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = String::new();
        let _ = third.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    })
    .await
    .expect("join");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn serve_flags_set_secure_cookies_and_the_header_timeout() {
    let dir = std::env::temp_dir().join(format!("shenpi-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--db"])
        .arg(format!("sqlite://{}", dir.join("s.db").display()))
        .arg("--workflows")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows"))
        .args([
            "--public-url",
            "https://shenpi.example.gov.cn/",
            "--trusted-proxy",
            "10.0.0.0/8,127.0.0.2",
            "--header-timeout",
            "1",
            "--max-connections",
            "64",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let page = loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let _ = s.write_all(b"GET /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1") {
                break out;
            }
        }
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(200));
    };
    let cookie = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or("");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        page.to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{page}"
    );
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").expect("write");
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(10)));
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = child.kill();
    let _ = child.wait();
    // A bad proxy list is refused before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(["serve", "--trusted-proxy", "proxy.local", "--db"])
        .arg(format!("sqlite://{}", dir.join("t.db").display()))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("proxy.local"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}
