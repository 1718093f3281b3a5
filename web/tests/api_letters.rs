//! Commitment letters (承诺书) through the API: a 容缺 pre-approval yields the letter; the
//! applicant signs it with their password (a wrong one records nothing but its audit row; the
//! right one records who, when, from where and the hash, with an audit row); anyone else, a
//! changed text or a second signature is refused in Chinese; the general command endpoint
//! cannot sign; and the 督办看板 lists a letter left unsigned past its three working days.

mod api_common;

use std::sync::atomic::Ordering;

use api_common::{Server, T0, server};
use axum::http::StatusCode;
use serde_json::{Value, json};

async fn letters(s: &Server, user: &str, inst: &str) -> Value {
    let r = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/letters"),
            Some(user),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

async fn sign(s: &Server, user: &str, inst: &str, password: &str, sha: &str) -> api_common::Resp {
    s.req(
        "POST",
        &format!("/api/instances/{inst}/letters/0/sign"),
        Some(user),
        Some(json!({"password": password, "sha256": sha})),
        &[],
    )
    .await
}

async fn events_of(s: &Server, inst: &str, kind: &str) -> usize {
    let r = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    r.json["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["type"] == kind)
        .count()
}

async fn audit_rows(s: &Server, inst: &str, outcome: &str) -> usize {
    let r = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    r.json["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["action"] == "sign_letter" && a["outcome"] == outcome)
        .count()
}

#[tokio::test]
async fn the_applicant_signs_the_letter_with_their_password() {
    let s = server("letters-sign").await;
    let inst = s.pre_approved_eia().await;

    let l = letters(&s, "chen", &inst).await;
    let letter = &l[0];
    let text = letter["text"].as_str().expect("text");
    assert!(text.contains("容缺受理承诺书"), "{text}");
    assert!(
        text.contains("环境影响评价审批意见"),
        "the waived material by its name: {text}"
    );
    // 20 working days from Monday 2026-03-02 on the shipped calendar: Monday 03-30.
    assert!(text.contains("20个工作日内（2026年3月30日前）"), "{text}");
    assert!(text.contains("撤销预批复、记入信用记录"), "{text}");
    assert!(
        text.contains("“测试项目”") && text.contains("省发展改革委"),
        "{text}"
    );
    assert_eq!(letter["sign_by"], "2026-03-05", "three working days");
    assert_eq!(letter["may_sign"], true);
    assert_eq!(letter["signers"], json!(["chen", "sun"]));
    assert!(letter["signed"].is_null());
    let sha = letter["sha256"].as_str().expect("hash").to_string();
    assert_eq!(sha.len(), 64);
    // The approver reads the letter but may not sign it.
    assert_eq!(letters(&s, "zhang", &inst).await[0]["may_sign"], false);

    // A wrong password: refused in Chinese, nothing signed, no event; the attempt is audited.
    let r = sign(&s, "chen", &inst, "wrong-password", &sha).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"], "wrong_password");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("密码不正确"),
        "{}",
        r.text
    );
    assert!(letters(&s, "chen", &inst).await[0]["signed"].is_null());
    assert_eq!(events_of(&s, &inst, "letter_signed").await, 0);
    assert_eq!(audit_rows(&s, &inst, "wrong_password").await, 1);

    // The text changed since it was shown: refused, before any password is checked.
    let r = sign(&s, "chen", &inst, "password-123", &"0".repeat(64)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json["error"], "letter_changed");
    assert!(
        r.json["message"].as_str().unwrap_or("").contains("承诺书"),
        "{}",
        r.text
    );

    // The general command endpoint takes no signature: it checks no password.
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/commands"),
            Some("chen"),
            Some(json!({"type": "sign_letter", "pre": 0, "sha256": sha})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(events_of(&s, &inst, "letter_signed").await, 0);

    // The right password: signed, by whom, when, the hash; an audit row.
    let r = sign(&s, "chen", &inst, "password-123", &sha).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let signed = &letters(&s, "chen", &inst).await[0];
    assert_eq!(signed["signed"]["by"], "chen");
    assert_eq!(signed["signed"]["sha256"], sha.as_str());
    assert_eq!(signed["signed"]["at"], T0);
    assert_eq!(signed["may_sign"], false);
    assert_eq!(events_of(&s, &inst, "letter_signed").await, 1);
    assert_eq!(audit_rows(&s, &inst, "ok").await, 1);

    // Signed once: a second signature is refused.
    let r = sign(&s, "chen", &inst, "password-123", &sha).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json["error"], "letter_already_signed");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("已由 chen 签署"),
        "{}",
        r.text
    );

    // The instance page shows who signed and the hash.
    let page = api_common::Browser::login(&s, "chen")
        .await
        .get(&format!("/instances/{inst}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("容缺受理承诺书"));
    assert!(page.text.contains("已签署"));
    assert!(page.text.contains(&sha));
}

#[tokio::test]
async fn no_one_but_the_applicant_side_signs() {
    let s = server("letters-others").await;
    let inst = s.pre_approved_eia().await;
    let sha = letters(&s, "chen", &inst).await[0]["sha256"]
        .as_str()
        .expect("hash")
        .to_string();
    // The approver, with their own right password.
    let r = sign(&s, "zhang", &inst, "password-123", &sha).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"], "not_letter_signer");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("不是本项目的申请人或帮办专员"),
        "{}",
        r.text
    );
    // An applicant of other projects cannot even read this one.
    let r = sign(&s, "liu", &inst, "password-123", &sha).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(events_of(&s, &inst, "letter_signed").await, 0);
    assert_eq!(audit_rows(&s, &inst, "ok").await, 0);
}

async fn board(s: &Server) -> Value {
    let r = s
        .req("GET", "/api/dashboard", Some("zhao"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["unsigned_letters"].clone()
}

#[tokio::test]
async fn the_board_lists_a_letter_unsigned_past_three_working_days() {
    let s = server("letters-board").await;
    let inst = s.pre_approved_eia().await;
    assert_eq!(board(&s).await, json!([]), "not late at the pre-approval");
    // Thursday 03-05 is the last day to sign; on Friday 03-06 it is four working days since.
    s.clock.0.store(T0 + 4 * 86_400_000, Ordering::Relaxed);
    let late = board(&s).await;
    assert_eq!(late.as_array().map(Vec::len), Some(1), "{late}");
    assert_eq!(late[0]["instance"], inst.as_str());
    assert_eq!(late[0]["project"], "测试项目");
    assert_eq!(late[0]["node_name"], "受理审查（容缺受理）");
    assert_eq!(late[0]["working_days_since"], 4);
    assert_eq!(late[0]["signers"], json!(["chen", "sun"]));
    let page = api_common::Browser::login(&s, "zhao")
        .await
        .get("/dashboard")
        .await;
    assert!(page.text.contains("逾期未签署的承诺书"));
    assert!(page.text.contains("受理审查（容缺受理）"));

    let sha = letters(&s, "chen", &inst).await[0]["sha256"]
        .as_str()
        .expect("hash")
        .to_string();
    let r = sign(&s, "chen", &inst, "password-123", &sha).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        board(&s).await,
        json!([]),
        "a signed letter leaves the board"
    );
}
