//! The outbox: a webhook receiver that is down for a while gets every message once it is up
//! (signed), a message past its tries is dead-lettered, a template missing a variable is an
//! error (strict mode). On both backends.

mod durable_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_support::{TempDir, both};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::machine::SystemClock;
use shenpi_adapters::outbox::{
    Directory, OutboxOptions, Templates, signature, spawn_outbox_worker,
};
use shenpi_adapters::store::OutboxStore;
use shenpi_adapters::testkit::{Counter, CounterCommand, counter_meta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Received = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

/// A minimal HTTP/1.1 receiver: records (delivery id -> signature, body), answers `status`.
async fn receiver(listener: tokio::net::TcpListener, got: Received, status: u16) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let Ok(n) = sock.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let Ok(n) = sock.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        l.strip_prefix(&format!("{name}:"))
                            .map(|v| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let body = buf[head_end..].to_vec();
            if status == 200 {
                got.lock().unwrap().insert(
                    header("x-shenpi-delivery"),
                    (header("x-shenpi-signature"), body),
                );
            }
            let resp =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_then_up_gets_everything_and_dead_letters_are_visible() {
    let dir = TempDir::new("outbox");
    for db in both("outbox", &dir).await {
        // A port nobody listens on yet: the receiver is "down".
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let url = format!("http://{addr}/hook");
        // A receiver that always fails.
        let bad = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bad_url = format!("http://{}/hook", bad.local_addr().unwrap());
        tokio::spawn(receiver(bad, Arc::new(Mutex::new(HashMap::new())), 500));

        let bus = CommandBus::start(
            Arc::new(Counter),
            db.clone(),
            Arc::new(SystemClock),
            BusOptions::default(),
        );
        bus.submit(Submit {
            instance: "o".into(),
            start: Some(counter_meta("o")),
            key: None,
            expected_version: None,
            command: CounterCommand::Start,
        })
        .await
        .unwrap();
        let notify = |recipient: &str| Submit {
            instance: "o".into(),
            start: None,
            key: None,
            expected_version: None,
            command: CounterCommand::Notify {
                channel: "webhook".into(),
                recipient: recipient.into(),
            },
        };
        for _ in 0..20 {
            bus.submit(notify(&url)).await.unwrap();
        }
        bus.submit(notify(&bad_url)).await.unwrap();

        let mut templates = Templates::new();
        templates
            .add("test", "项目 {{instance}} 第 {{n}} 条通知")
            .unwrap();
        let secret = b"s3cret".to_vec();
        let opts = OutboxOptions {
            poll: Duration::from_millis(50),
            backoff_base_ms: 100,
            backoff_max_ms: 400,
            max_tries: 5,
            webhook_secret: secret.clone(),
            http_timeout: Duration::from_secs(2),
            ..OutboxOptions::default()
        };
        let got: Received = Arc::new(Mutex::new(HashMap::new()));
        let (h, stats) = spawn_outbox_worker(
            db.clone(),
            Arc::new(templates),
            Arc::new(Directory::default()),
            Arc::new(SystemClock),
            opts,
            Some(bus.outbox_queued.clone()),
        )
        .unwrap();
        // Down for a while (at least one failed attempt each), then up.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(receiver(listener, got.clone(), 200));
        let t0 = Instant::now();
        while got.lock().unwrap().len() < 20 && t0.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t0 = Instant::now();
        while db.outbox_in_state("dead", 10).await.unwrap().is_empty()
            && t0.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h.abort();
        let got = got.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            20,
            "{}: every message arrives once the receiver is up",
            db.backend()
        );
        for (id, (sig, body)) in &got {
            assert_eq!(sig, &signature(&secret, body), "{id}: signature");
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert!(v["text"].as_str().unwrap().starts_with("项目 o 第"), "{v}");
        }
        assert!(
            stats.retried.load(std::sync::atomic::Ordering::Relaxed) >= 1,
            "it was down at first"
        );
        let delivered = db.outbox_in_state("delivered", 100).await.unwrap();
        assert_eq!(delivered.len(), 20);
        let dead = db.outbox_in_state("dead", 10).await.unwrap();
        assert_eq!(dead.len(), 1, "{}", db.backend());
        assert_eq!(dead[0].tries, 5);
        assert!(
            dead[0].last_error.as_deref().unwrap_or("").contains("500"),
            "{:?}",
            dead[0].last_error
        );
    }
}

#[test]
fn strict_templates_refuse_missing_variables_and_the_shipped_ones_render() {
    let mut t = Templates::new();
    t.add("x", "{{a}} and {{b}}").unwrap();
    assert!(t.render("x", &serde_json::json!({"a": 1})).is_err());
    assert_eq!(
        t.render("x", &serde_json::json!({"a": 1, "b": "二"}))
            .unwrap(),
        "1 and 二"
    );
    assert!(t.render("nope", &serde_json::json!({})).is_err());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/templates");
    let shipped = Templates::from_dir(&dir).unwrap();
    let data = serde_json::json!({
        "recipient": "李科长", "workflow_name": "工程建设项目审批", "instance": "i-1",
        "project_name": "示范项目", "node_name": "施工许可", "task_id": "3",
        "department_name": "市住建局", "assignee": "张三", "due": "2026-03-20 17:00",
        "days_left": 2, "days_overdue": 1, "used_percent": 80, "rung": 1, "leader": "王局长",
        "from": "赵主任", "text": "请加快", "materials": ["环评"], "promised_at": "2026-03-01",
        "actions": ["撤销预批复"], "channel_name": "绿色通道", "reason": "省级重大",
        "limit_scale": "50%", "same_day": false, "skipped": [], "conditional": true,
        "priority": 5, "url": "/instances/i-1",
    });
    for name in [
        "overdue_alert",
        "yellow_warning",
        "escalation",
        "supervise",
        "task_assigned",
        "urge",
        "cc",
        "promise_due",
        "promise_breach",
        "green_channel",
        "permit_issued",
        "filing_done",
    ] {
        let out = shipped.render(name, &data);
        assert!(out.is_ok(), "{name}: {out:?}");
    }
}
