//! The outbox: a webhook receiver that is down for a while gets every message once it is up
//! (signed), a message past its tries is dead-lettered, a template missing a variable is an
//! error (strict mode); DingTalk robots with 加签 get `timestamp` and `sign` on their URL; an
//! e-mail reaches a (fake) SMTP server with its recipient, subject and Chinese body. On both
//! backends.

mod durable_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_support::{TempDir, both};
use shenpi_adapters::bus::{BusOptions, CommandBus, Submit};
use shenpi_adapters::machine::SystemClock;
use shenpi_adapters::machine::now_millis;
use shenpi_adapters::outbox::{
    Addresses, Directory, OutboxOptions, SmtpConfig, Templates, dingtalk_signed_url, signature,
    spawn_outbox_worker,
};
use shenpi_adapters::store::{OutboxRow, OutboxStore};
use shenpi_adapters::testkit::{Counter, CounterCommand, counter_meta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
struct Request {
    /// The request target: path and query.
    target: String,
    signature: String,
    body: Vec<u8>,
}

type Received = Arc<Mutex<HashMap<String, Request>>>;

/// A minimal HTTP/1.1 receiver: records (delivery id -> request), answers `status`.
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
            let raw_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            // `POST /path?query HTTP/1.1`: the target keeps its case (signatures are base64).
            let target = raw_head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let head = raw_head.to_lowercase();
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
                    Request {
                        target,
                        signature: header("x-shenpi-signature"),
                        body,
                    },
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
            audit: None,
            project: None,
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
            audit: None,
            project: None,
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
        for (id, r) in &got {
            assert_eq!(r.signature, signature(&secret, &r.body), "{id}: signature");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
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

/// A message put straight into the outbox, due now.
fn row(
    id: &str,
    channel: &str,
    recipient: &str,
    template: &str,
    payload: serde_json::Value,
) -> OutboxRow {
    OutboxRow {
        id: id.into(),
        instance: None,
        channel: channel.into(),
        recipient: recipient.into(),
        template: template.into(),
        payload,
        next_attempt_at: 0,
        created_at: 0,
    }
}

#[test]
fn dingtalk_signature_matches_a_hand_computed_value() {
    // Computed apart from this code, with Python:
    //   s = base64.b64encode(hmac.new(secret, b"1700000000004\n" + secret, sha256).digest())
    //   urllib.parse.quote_plus(s)
    // chosen so that the signature has a `+` and a `/` to be URL-encoded.
    let secret = "SECf1d2a3b4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
    let url = dingtalk_signed_url(
        "https://oapi.dingtalk.com/robot/send?access_token=abc",
        secret,
        1_700_000_000_004,
    )
    .unwrap();
    assert_eq!(
        url,
        "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000004\
         &sign=lyA8KjgXtP6QDbboj1e%2Ba2WiSNKoYDAHct%2FsJMZMfG4%3D"
    );
    assert!(dingtalk_signed_url("not a url", secret, 1).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_robots_with_a_secret_get_timestamp_and_sign() {
    let dir = TempDir::new("outbox_dingtalk");
    for db in both("outbox_dingtalk", &dir).await {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let got: Received = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(receiver(listener, got.clone(), 200));
        let own = format!("{base}/robot/send?access_token=own");
        let shared = format!("{base}/robot/send?access_token=shared");
        // The coordinators' robot has its own secret; the default robot is signed with the
        // outbox-wide one.
        let mut directory = Directory::default();
        directory.parties.insert(
            "role:zdb_coordinator".into(),
            Addresses {
                dingtalk: Some(own.clone()),
                dingtalk_secret: Some("SEC-own".into()),
                ..Addresses::default()
            },
        );
        directory.default.dingtalk = Some(shared.clone());
        let payload = serde_json::json!({"instance": "i-1", "n": 1});
        db.enqueue(&[
            row(
                "d-own",
                "dingtalk",
                "role:zdb_coordinator",
                "test",
                payload.clone(),
            ),
            row("d-shared", "dingtalk", "role:fgw_chief", "test", payload),
        ])
        .await
        .unwrap();
        let mut templates = Templates::new();
        templates
            .add("test", "项目 {{instance}} 第 {{n}} 条通知")
            .unwrap();
        let opts = OutboxOptions {
            poll: Duration::from_millis(50),
            dingtalk_secret: Some("SEC-global".into()),
            http_timeout: Duration::from_secs(2),
            ..OutboxOptions::default()
        };
        let (h, _) = spawn_outbox_worker(
            db.clone(),
            Arc::new(templates),
            Arc::new(directory),
            Arc::new(SystemClock),
            opts,
            None,
        )
        .unwrap();
        let t0 = Instant::now();
        while got.lock().unwrap().len() < 2 && t0.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h.abort();
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{}: {got:?}", db.backend());
        for (id, url, secret) in [
            ("d-own", &own, "SEC-own"),
            ("d-shared", &shared, "SEC-global"),
        ] {
            let r = &got[id];
            let query: HashMap<&str, &str> = r
                .target
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let ts: i64 = query["timestamp"].parse().unwrap();
            assert!(
                (ts - now_millis()).abs() < 60_000,
                "{id}: timestamp {ts} is the send time"
            );
            assert!(!query["sign"].is_empty(), "{id}: {}", r.target);
            let expected = dingtalk_signed_url(url, secret, ts).unwrap();
            assert_eq!(
                format!("{base}{}", r.target),
                expected,
                "{id}: signed with {secret}"
            );
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["msgtype"], "markdown");
            assert_eq!(v["markdown"]["text"], "项目 i-1 第 1 条通知");
        }
    }
}

/// One message as a (fake) SMTP server received it.
#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// The DATA, dot-unstuffed, CRLF line ends.
    data: String,
}

/// Just enough of an SMTP server (RFC 5321) for a client to deliver: greeting, EHLO/HELO,
/// MAIL FROM, RCPT TO, DATA ... `.`, RSET, NOOP, QUIT. No TLS, no AUTH: a local relay.
async fn smtp_server(listener: tokio::net::TcpListener, got: Arc<Mutex<Vec<Mail>>>) {
    use tokio::io::AsyncBufReadExt;
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut r = tokio::io::BufReader::new(r);
            let mut mail = Mail::default();
            let mut line = String::new();
            if w.write_all(b"220 relay.test ESMTP\r\n").await.is_err() {
                return;
            }
            loop {
                line.clear();
                if !matches!(r.read_line(&mut line).await, Ok(n) if n > 0) {
                    return;
                }
                let cmd = line.trim_end();
                let verb = cmd.to_ascii_uppercase();
                let arg = |n: usize| cmd.get(n..).unwrap_or_default().trim().to_string();
                let reply: &[u8] = if verb.starts_with("EHLO") {
                    b"250-relay.test\r\n250 HELP\r\n"
                } else if verb.starts_with("HELO") || verb == "NOOP" {
                    b"250 relay.test\r\n"
                } else if verb.starts_with("MAIL FROM:") {
                    mail.from = arg(10);
                    b"250 OK\r\n"
                } else if verb.starts_with("RCPT TO:") {
                    mail.to.push(arg(8));
                    b"250 OK\r\n"
                } else if verb == "DATA" {
                    if w.write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    loop {
                        line.clear();
                        if !matches!(r.read_line(&mut line).await, Ok(n) if n > 0) {
                            return;
                        }
                        if line == ".\r\n" {
                            break;
                        }
                        // Dot-stuffing: a line the client began with `..` began with `.`.
                        mail.data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    }
                    got.lock().unwrap().push(std::mem::take(&mut mail));
                    b"250 OK queued\r\n"
                } else if verb == "RSET" {
                    mail = Mail::default();
                    b"250 OK\r\n"
                } else if verb == "QUIT" {
                    let _ = w.write_all(b"221 bye\r\n").await;
                    return;
                } else {
                    b"502 not implemented\r\n"
                };
                if w.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A header's value, unfolded, with RFC 2047 encoded words (`=?utf-8?b?...?=`) decoded.
fn mail_header(head: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let value = unfolded.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })?;
    let mut out: Vec<u8> = Vec::new();
    let mut last_encoded = false;
    for word in value.split(' ') {
        let parts: Vec<&str> = word.split('?').collect();
        let encoded = parts.len() == 5 && parts[0] == "=" && parts[4] == "=";
        if !encoded {
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(word.as_bytes());
        } else {
            // Space between two encoded words is not part of the text.
            if !out.is_empty() && !last_encoded {
                out.push(b' ');
            }
            match parts[2] {
                "b" | "B" => out.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(parts[3])
                        .unwrap(),
                ),
                _ => out.extend(quoted_printable(&parts[3].replace('_', " "))),
            }
        }
        last_encoded = encoded;
    }
    Some(String::from_utf8(out).unwrap())
}

/// Decodes quoted-printable (soft line breaks and `=XX`).
fn quoted_printable(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'=')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(x) => {
                out.push(x);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The text of a single-part message: its body decoded by its Content-Transfer-Encoding.
fn mail_text(head: &str, body: &str) -> String {
    use base64::Engine as _;
    let cte = mail_header(head, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match cte.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.replace("\r\n", ""))
            .unwrap(),
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes).unwrap().replace("\r\n", "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_a_plain_smtp_relay_with_recipient_subject_and_chinese_body() {
    let dir = TempDir::new("outbox_email");
    let templates_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/templates");
    let payload = serde_json::json!({
        "recipient": "李科长", "workflow_name": "工程建设项目审批", "instance": "i-7",
        "project_name": "示范项目（一期）", "node_name": "施工许可", "task_id": "3",
        "department_name": "市住房城乡建设局", "assignee": "张三", "due": "2026-03-20",
        "days_overdue": 2, "url": "https://shenpi.example.gov.cn/instances/i-7",
    });
    // What the worker will render: the shipped 超期 template, first line as the subject.
    let text = Templates::from_dir(&templates_dir)
        .unwrap()
        .render("overdue_alert", &payload)
        .unwrap();
    let subject = text.lines().next().unwrap().to_string();
    assert!(
        subject.contains("红色预警") && text.contains("示范项目（一期）"),
        "{text}"
    );
    for db in both("outbox_email", &dir).await {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(smtp_server(listener, got.clone()));
        let mut directory = Directory::default();
        directory.parties.insert(
            "role:zj_chief".into(),
            Addresses {
                email: Some("li@zj.example.gov.cn".into()),
                ..Addresses::default()
            },
        );
        db.enqueue(&[row(
            "m-1",
            "email",
            "role:zj_chief",
            "overdue_alert",
            payload.clone(),
        )])
        .await
        .unwrap();
        let opts = OutboxOptions {
            poll: Duration::from_millis(50),
            http_timeout: Duration::from_secs(5),
            smtp: Some(SmtpConfig {
                url: format!("smtp://127.0.0.1:{port}"),
                from: "审批系统 <shenpi@example.gov.cn>".into(),
            }),
            ..OutboxOptions::default()
        };
        let (h, _) = spawn_outbox_worker(
            db.clone(),
            Arc::new(Templates::from_dir(&templates_dir).unwrap()),
            Arc::new(directory),
            Arc::new(SystemClock),
            opts,
            None,
        )
        .unwrap();
        let t0 = Instant::now();
        while db
            .outbox_in_state("delivered", 10)
            .await
            .unwrap()
            .is_empty()
            && t0.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h.abort();
        let dead = db.outbox_in_state("dead", 10).await.unwrap();
        assert!(
            dead.is_empty(),
            "{}: {:?}",
            db.backend(),
            dead[0].last_error
        );
        let mails = got.lock().unwrap().clone();
        assert_eq!(mails.len(), 1, "{}: {mails:?}", db.backend());
        let m = &mails[0];
        assert_eq!(m.from, "<shenpi@example.gov.cn>");
        assert_eq!(m.to, ["<li@zj.example.gov.cn>"]);
        let (head, body) = m.data.split_once("\r\n\r\n").unwrap();
        assert_eq!(mail_header(head, "to").unwrap(), "li@zj.example.gov.cn");
        assert_eq!(mail_header(head, "subject").unwrap(), subject, "{head}");
        assert_eq!(
            mail_header(head, "from").unwrap(),
            "审批系统 <shenpi@example.gov.cn>",
            "{head}"
        );
        assert!(
            mail_header(head, "content-type")
                .unwrap()
                .to_ascii_lowercase()
                .contains("charset=utf-8"),
            "{head}"
        );
        assert_eq!(mail_text(head, body), text, "{head}");
    }
}

#[tokio::test]
async fn a_bad_smtp_url_stops_the_worker_from_starting() {
    let dir = TempDir::new("outbox_smtp_url");
    let db = durable_support::sqlite(&dir).await;
    let opts = OutboxOptions {
        smtp: Some(SmtpConfig {
            url: "smtpx://relay.example:25".into(),
            from: "shenpi@example.gov.cn".into(),
        }),
        ..OutboxOptions::default()
    };
    let e = spawn_outbox_worker(
        db,
        Arc::new(Templates::new()),
        Arc::new(Directory::default()),
        Arc::new(SystemClock),
        opts,
        None,
    )
    .expect_err("a bad URL is refused at start");
    assert!(e.contains("SMTP URL"), "{e}");
}
