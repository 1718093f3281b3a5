//! While the database cannot be reached, a request is answered at once with 503
//! `database_unavailable` and `Retry-After` (a page in Chinese for a browser), nothing is done,
//! and `/readyz` says so within a second or two; once the database is back, the same requests
//! succeed. The server reaches PostgreSQL through a TCP proxy the test controls: an outage cuts
//! every connection and leaves new ones hanging unanswered, as a stopped server does.
//!
//! PostgreSQL is at `SHENPI_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! cannot be reached the test is skipped, except under `CI`, where it fails.

mod api_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_common::{Browser, in_schema, pg_admin, pg_schema, server_at};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

fn pg_url() -> String {
    std::env::var("SHENPI_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A proxy in front of PostgreSQL that the test can cut off and restore.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (d, l) = (down.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let down = d.clone();
                let task = tokio::spawn({
                    let target = target.clone();
                    async move {
                        if down.load(Ordering::SeqCst) {
                            // A stopped server: the connection opens and nothing ever answers.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }
                });
                l.lock().expect("links").push(task.abort_handle());
            }
        });
        Proxy { port, down, links }
    }

    /// Cuts every open connection; new ones hang.
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for l in self.links.lock().expect("links").drain(..) {
            l.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        for l in self.links.lock().expect("links").drain(..) {
            l.abort();
        }
    }
}

/// The `host:port` a PostgreSQL URL points at, and the same URL pointed at a local port.
fn split_authority(url: &str) -> (String, impl Fn(u16) -> String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let target = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    let (scheme, path) = (scheme.to_string(), path.to_string());
    (target, move |port| {
        format!("{scheme}://{user}127.0.0.1:{port}{path}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_requests_get_a_prompt_503_and_readyz_says_so() {
    let base = pg_url();
    let Some(mut admin) = pg_admin(&base).await else {
        return;
    };
    let schema = pg_schema(&mut admin, "db_outage").await;
    let (target, through) = split_authority(&base);
    let proxy = Proxy::start(target).await;
    let via = through(proxy.port);
    let url = in_schema(&via, &schema);
    let dir = std::env::temp_dir().join(format!("shenpi-api-{}-db-outage", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let s = server_at(dir, &url, Default::default(), Default::default()).await;
    let (_, instance) = s.start_project("省级重大").await;
    let browser = Browser::login(&s, "zhang").await;
    let ready = || async {
        s.send(Request::get("/readyz").body(Body::empty()).expect("req"))
            .await
    };
    assert_eq!(ready().await.status, StatusCode::OK);

    proxy.cut();
    let cut_at = Instant::now();
    // /readyz notices within a second or two.
    let r = ready().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.starts_with("database"), "{}", r.text);
    assert!(
        cut_at.elapsed() < Duration::from_secs(4),
        "/readyz took {:?}",
        cut_at.elapsed()
    );
    // An API read and a command: 503 with the code, a Chinese message and Retry-After, well
    // before the driver's 30 s default wait.
    let asked = Instant::now();
    let inbox = s.req("GET", "/api/tasks", Some("zhang"), None, &[]).await;
    assert_eq!(
        inbox.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        inbox.text
    );
    assert_eq!(
        inbox.json["error"], "database_unavailable",
        "{}",
        inbox.text
    );
    assert!(
        inbox.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("数据库"))
    );
    assert!(inbox.headers.contains_key(header::RETRY_AFTER));
    let comment = json!({"type": "comment", "text": "停电期间的意见"});
    let path = format!("/api/instances/{instance}/commands");
    let key = [("idempotency-key", "outage-1")];
    let during = s
        .req("POST", &path, Some("zhang"), Some(comment.clone()), &key)
        .await;
    assert_eq!(
        during.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        during.text
    );
    assert_eq!(during.json["error"], "database_unavailable");
    assert!(
        asked.elapsed() < Duration::from_secs(12),
        "two requests took {:?}",
        asked.elapsed()
    );
    // A browser gets a page in Chinese, not JSON.
    let page = browser.get("/inbox").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text.contains("<html"), "{}", page.text);
    assert!(page.text.contains("数据库暂时无法访问"), "{}", page.text);
    assert!(page.headers.contains_key(header::RETRY_AFTER));

    proxy.restore();
    let back = Instant::now();
    loop {
        if ready().await.status == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing was done during the outage, so the same key now does the command once.
    let after = s
        .req("POST", &path, Some("zhang"), Some(comment), &key)
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    assert_eq!(after.json["replayed"], false, "{}", after.text);
    drop(s);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .expect("drop schema");
}
