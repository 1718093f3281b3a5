//! What an attacker probing the server relies on breaking, in-process: concurrent wrong
//! passwords for one name, a flood of logins larger than the password workers, a body sent too
//! slowly, a forged `X-Forwarded-For`, and the security headers every response carries.

mod api_common;

use std::net::SocketAddr;
use std::time::Duration;

use api_common::{server, server_with};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use shenpi_web::server::passwords::Limits;
use shenpi_web::server::security::{Settings, TrustedProxies};
use shenpi_web::server::throttle::MAX_FAILURES;

fn login_request(name: &str, password: &str) -> Request<Body> {
    Request::post("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"name": name, "password": password}).to_string(),
        ))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_for_one_name_check_at_most_the_limit() {
    let s = server("race").await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let router = s.router.clone();
        attempts.spawn(async move {
            use tower::ServiceExt as _;
            let r = router
                .oneshot(login_request("zhang", "guess"))
                .await
                .expect("infallible");
            r.status()
        });
    }
    let mut checked = 0;
    let mut locked = 0;
    while let Some(status) = attempts.join_next().await {
        match status.expect("task") {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => locked += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        checked <= MAX_FAILURES,
        "{checked} wrong passwords were checked against a limit of {MAX_FAILURES}"
    );
    assert_eq!(checked + locked, 64);
    // And the name is locked now, even for the right password.
    let r = s.send(login_request("zhang", "password-123")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.json["error"], "too_many_failed_logins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_beyond_the_password_workers_are_refused_with_retry_after() {
    let s = server_with(
        "busy",
        Limits {
            workers: 1,
            wait: Duration::from_millis(200),
        },
        Settings::default(),
    )
    .await;
    // Unknown names, each its own: the failed-login throttle plays no part, and an unknown
    // name takes its turn on the same workers as a known one.
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..24 {
        let router = s.router.clone();
        attempts.spawn(async move {
            use tower::ServiceExt as _;
            let r = router
                .oneshot(login_request(&format!("ghost{i}"), "guess"))
                .await
                .expect("infallible");
            let retry = r.headers().get(header::RETRY_AFTER).cloned();
            let status = r.status();
            let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            (status, retry, body)
        });
    }
    let mut busy = 0;
    while let Some(r) = attempts.join_next().await {
        let (status, retry, body) = r.expect("task");
        match status {
            StatusCode::UNAUTHORIZED => assert_eq!(body["error"], "bad_credentials"),
            StatusCode::TOO_MANY_REQUESTS => {
                busy += 1;
                assert_eq!(body["error"], "too_many_requests", "{body}");
                assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
                let msg = body["message"].as_str().unwrap_or("");
                assert!(msg.contains("请1秒后再试"), "{msg}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        busy > 0,
        "24 logins at once on one worker: some must be refused"
    );
    // The server is free again: a real login goes through.
    let ok = s.send(login_request("zhang", "password-123")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_answered_408() {
    let s = server_with(
        "slowbody",
        Limits::default(),
        Settings {
            body_timeout: Duration::from_millis(300),
            ..Settings::default()
        },
    )
    .await;
    let stalled = Stalled(Some(axum::body::Bytes::from_static(b"{\"name\": \"zh")));
    let req = Request::post("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(stalled))
        .expect("request");
    let r = tokio::time::timeout(Duration::from_secs(10), s.send(req))
        .await
        .expect("the server answers instead of waiting for ever");
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT, "{}", r.text);
    assert_eq!(r.json["error"], "request_timeout");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("秒内传完"),
        "{}",
        r.text
    );
}

/// A body in `pieces` of `size` bytes (a login's JSON, padded with spaces), one every `gap`.
fn paced_login(pieces: usize, size: usize, gap: Duration) -> Request<Body> {
    let json = br#"{"name": "zhang", "password": "password-123"}"#;
    let mut bytes = vec![b' '; pieces * size - json.len()];
    bytes.extend_from_slice(json);
    let chunks: Vec<Vec<u8>> = bytes.chunks(size).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::unfold(chunks.into_iter(), move |mut rest| async move {
        let next = rest.next()?;
        tokio::time::sleep(gap).await;
        Some((Ok::<_, std::io::Error>(next), rest))
    });
    Request::post("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("request")
}

#[tokio::test]
async fn a_long_body_may_outlast_the_timeout_while_it_keeps_coming_and_a_trickle_may_not() {
    let s = server_with(
        "pacedbody",
        Limits::default(),
        Settings {
            body_timeout: Duration::from_millis(300),
            body_min_rate: 1000,
            ..Settings::default()
        },
    )
    .await;
    // 2,000 bytes over about a second (a large file on a slow line): past the 300 ms, but
    // each 500 bytes buys half a second more.
    let r = s
        .send(paced_login(4, 500, Duration::from_millis(200)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // 60 bytes over the same time: a trickle, cut off.
    let r = s.send(paced_login(6, 10, Duration::from_millis(200))).await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT, "{}", r.text);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("每秒不到 1 KB"),
        "{}",
        r.text
    );
}

/// Half a JSON body, then nothing more for ever: a client that stalls.
struct Stalled(Option<axum::body::Bytes>);

impl axum::body::HttpBody for Stalled {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.0.take() {
            Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test]
async fn the_audit_trail_believes_forwarded_for_only_from_a_trusted_proxy() {
    for (trusted, expect) in [(vec![], "10.0.0.5"), (vec!["10.0.0.0/8"], "198.51.100.7")] {
        let s = server_with(
            &format!("xff{}", trusted.len()),
            Limits::default(),
            Settings {
                proxies: TrustedProxies::parse(&trusted).expect("parses"),
                ..Settings::default()
            },
        )
        .await;
        let p = s
            .req(
                "POST",
                "/api/projects",
                Some("chen"),
                Some(json!({
                    "name": "测试项目",
                    "workflow_id": "provincial-major",
                    "fields": {"tier": "省级重大", "investment": 120000, "funding": "政府投资",
                               "industry": "数字经济", "region": "昆明市", "service_officer": "sun"}
                })),
                &[],
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
        let mut req = Request::post("/api/instances")
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", s.tokens["chen"]),
            )
            // What the client claims, then what our proxy saw.
            .header("x-forwarded-for", "203.0.113.66, 198.51.100.7")
            .body(Body::from(json!({"project_id": p.json["id"]}).to_string()))
            .expect("request");
        let peer: SocketAddr = "10.0.0.5:40000".parse().expect("addr");
        req.extensions_mut().insert(ConnectInfo(peer));
        let started = s.send(req).await;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
        let instance = started.json["instance"].as_str().expect("instance");
        let mut remotes = Vec::new();
        for _ in 0..50 {
            let i = s
                .req(
                    "GET",
                    &format!("/api/instances/{instance}"),
                    Some("chen"),
                    None,
                    &[],
                )
                .await;
            remotes = i.json["audit"]
                .as_array()
                .map(|a| a.iter().map(|e| e["remote"].clone()).collect())
                .unwrap_or_default();
            if !remotes.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(remotes, vec![json!(expect)], "trusted proxies {trusted:?}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let s = server("headers").await;
    let login = s
        .send(Request::get("/login").body(Body::empty()).expect("req"))
        .await;
    let me = s.req("GET", "/api/me", Some("zhang"), None, &[]).await;
    let missing = s.req("GET", "/api/nope", None, None, &[]).await;
    for r in [&login, &me, &missing] {
        let h = |name: header::HeaderName| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let csp = h(header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(h(header::REFERRER_POLICY), "same-origin");
        assert_eq!(h(header::CACHE_CONTROL), "no-store");
        assert!(r.headers.get(header::STRICT_TRANSPORT_SECURITY).is_none());
    }
    // The static files may be cached; they are the same for everyone.
    let css = s
        .send(
            Request::get("/static/app.css")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers.get(header::CACHE_CONTROL).is_none());
    assert_eq!(css.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    // The pages satisfy the policy: no inline script or style, no `javascript:` link; the
    // error page included, whose 返回 link was one.
    let session = s.send(login_request("zhang", "password-123")).await;
    let cookie = session.headers[header::SET_COOKIE]
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let error_page = s
        .send(
            Request::get("/instances/Inone")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert!(error_page.text.contains("无法完成"), "{}", error_page.text);
    for page in [&login.text, &error_page.text] {
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "{page}"
        );
        assert!(!page.contains("javascript:"), "{page}");
    }
}

#[tokio::test]
async fn an_idempotency_key_is_bound_to_its_request_and_the_audit_entry_is_there_at_once() {
    let s = server("key_bound").await;
    let (_, inst) = s.start_project("省级重大").await;
    let path = format!("/api/instances/{inst}/commands");
    let send = |text: &'static str, key: &'static str| {
        let (s, path) = (&s, &path);
        async move {
            s.req(
                "POST",
                path,
                Some("zhang"),
                Some(json!({"type": "comment", "text": text})),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = send("请补充用地预审意见", "c-1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    // Read straight after the answer: the entry committed with the command.
    let detail_path = format!("/api/instances/{inst}");
    let detail = || s.req("GET", &detail_path, Some("zhang"), None, &[]);
    let shown = detail().await;
    let audit = shown.json["audit"].as_array().expect("audit").clone();
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "comment" && a["outcome"] == "ok" && a["user"] == "zhang"),
        "{audit:?}"
    );
    let again = send("请补充用地预审意见", "c-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["replayed"], true);
    let other = send("另一条意见", "c-1").await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text
    );
    assert_eq!(other.json["error"], "idempotency_key_reused");
    assert!(
        other.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("Idempotency-Key")),
        "{}",
        other.text
    );
    let shown = detail().await;
    let comments = shown.json["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|e| e.to_string().contains("另一条意见"))
        .count();
    assert_eq!(comments, 0, "the refused request recorded nothing");
}

#[tokio::test]
async fn a_project_field_out_of_its_values_is_refused_in_chinese_with_the_values() {
    let s = server("project_field_zh").await;
    let p = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(json!({
                "name": "层级写错的项目",
                "workflow_id": "provincial-major",
                "fields": {"tier": "provincial-major", "investment": 120000, "funding": "政府投资",
                           "industry": "数字经济", "region": "昆明市", "service_officer": "sun"}
            })),
            &[],
        )
        .await;
    let started = if p.status == StatusCode::CREATED {
        let pid = p.json["id"].as_str().expect("id").to_string();
        s.req(
            "POST",
            "/api/instances",
            Some("chen"),
            Some(json!({"project_id": pid})),
            &[],
        )
        .await
    } else {
        p
    };
    assert_eq!(
        started.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        started.text
    );
    assert_eq!(started.json["error"], "invalid_project", "{}", started.text);
    let m = started.json["message"].as_str().unwrap_or("");
    assert!(m.contains("须为以下之一：「"), "{m}");
    assert!(m.contains("「省级重大」"), "{m}");
    assert!(!m.contains("must be"), "{m}");
}
