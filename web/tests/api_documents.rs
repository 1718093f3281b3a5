//! Official documents: an instance that reaches its end is issued its 备案证明 with the year's
//! next number; the PDF's Chinese text and number come out of `pdftotext`; the public
//! verification page shows number, project, date, outcome and digest; a breach that revokes
//! issues the 撤销决定 and the 预批复's page then says 已撤销; an unknown code is a plain 404; an
//! approver of another department gets 403 and nothing else; numbers restart at 1 each year; a
//! provincial-major application refused at 受理审查 is issued its 不予许可决定书, stating the step
//! and the reason.

mod api_common;

use std::time::Duration;

use api_common::{Server, T0, server};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use shenpi_adapters::store::TimerStore;

/// Registers and starts an enterprise filing as `chen`; returns the instance.
async fn start_filing(s: &Server, name: &str) -> String {
    let p = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(json!({
                "name": name,
                "workflow_id": "enterprise-filing",
                "fields": {"enterprise": "某纸业股份有限公司", "funding": "企业投资", "catalog": "备案类",
                           "industry": "制造业", "investment": 12000, "service_officer": "liu"}
            })),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let pid = p.json["id"].as_str().expect("id").to_string();
    let r = s
        .req(
            "POST",
            "/api/instances",
            Some("chen"),
            Some(json!({"project_id": pid})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["instance"].as_str().expect("instance").to_string()
}

async fn act(s: &Server, inst: &str, body: Value) {
    let task = s.task_at(inst, "filing").await.expect("filing task");
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{task}/actions"),
            Some("zhang"),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// The instance's documents once `n` are issued (the issuing pass runs after the commit).
async fn documents(s: &Server, inst: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = s
            .req(
                "GET",
                &format!("/api/instances/{inst}/documents"),
                Some("zhang"),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let list = r.json.as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{inst}: fewer than {n} documents issued");
}

async fn get_as(s: &Server, path: &str, user: Option<&str>) -> (StatusCode, Vec<u8>, String) {
    let mut b = Request::get(path);
    if let Some(u) = user {
        b = b.header(
            header::AUTHORIZATION,
            format!("Bearer {}", s.tokens.get(u).expect("token")),
        );
    }
    let resp = tower::ServiceExt::oneshot(s.router.clone(), b.body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), 32 << 20)
        .await
        .expect("body")
        .to_vec();
    (status, bytes, ctype)
}

/// The text `pdftotext` extracts from a PDF.
fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("doc.pdf");
    std::fs::write(&file, pdf).expect("write pdf");
    let out = std::process::Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext runs (apt-get install poppler-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn a_filing_that_ends_is_issued_a_numbered_verifiable_certificate() {
    let mut s = server("documents-end").await;
    // An approver of a department the filing does not involve.
    s.add_user("qian", Some("qx"), &["approver"]).await;
    let inst = start_filing(&s, "年产5万吨特种纸技术改造项目").await;
    act(
        &s,
        &inst,
        json!({"type": "approve", "comment": "信息完整，予以备案"}),
    )
    .await;
    let docs = documents(&s, &inst, 1).await;
    let d = &docs[0];
    assert_eq!(d["kind"], "filing");
    assert_eq!(d["title"], "企业投资项目备案证明");
    assert_eq!(d["number"], "发改投资备〔2026〕1号");
    assert_eq!(d["issuer"], "县（市、区）发展改革局");
    assert_eq!(d["date"], "2026年3月2日");
    let code = d["verify_code"].as_str().expect("code").to_string();
    assert_eq!(code.len(), 20);
    let hash = d["sha256"].as_str().expect("hash").to_string();
    assert_eq!(hash.len(), 64);

    // The PDF: Chinese text and the number survive pdftotext.
    let pdf_path = d["pdf"].as_str().expect("pdf link").to_string();
    let (status, pdf, ctype) = get_as(&s, &pdf_path, Some("chen")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&pdf));
    assert_eq!(ctype, "application/pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    // Kept for a look (web/tests/artifacts/ is not committed).
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    if std::fs::create_dir_all(&artifacts).is_ok() {
        let _ = std::fs::write(artifacts.join("filing-certificate.pdf"), &pdf);
    }
    let text = pdftotext(&pdf);
    let flat: String = text.split_whitespace().collect();
    for want in [
        "企业投资项目备案证明",
        "发改投资备〔2026〕1号",
        "县（市、区）发展改革局",
        "年产5万吨特种纸技术改造项目",
        "予以备案",
        "2026年3月2日",
        code.as_str(),
    ] {
        assert!(
            flat.contains(want),
            "`{want}` not in the PDF's text:\n{text}"
        );
    }
    assert!(flat.contains(&format!("/verify/{code}")), "{text}");

    // The public verification page, without logging in.
    let v = s
        .req("GET", &format!("/verify/{code}"), None, None, &[])
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    for want in [
        "发改投资备〔2026〕1号",
        "年产5万吨特种纸技术改造项目",
        "2026年3月2日",
        "批准",
        hash.as_str(),
        "有效",
    ] {
        assert!(
            v.text.contains(want),
            "`{want}` not on the page:\n{}",
            v.text
        );
    }
    assert!(!v.text.contains("已撤销"));
    // The document carries the head of the instance's event chain when it was issued (the
    // filing ended with it, so the head is still the same).
    let head = s
        .app
        .db
        .head_hash(&inst)
        .await
        .expect("head")
        .expect("chained");
    assert!(v.text.contains(&head), "the chain head is not on the page");

    // An unknown or forged code: 未找到, and nothing about any document.
    for bad in ["ABCDEFGHJKMNPQRSTUVW", "x", &code[..19]] {
        let nf = s
            .req("GET", &format!("/verify/{bad}"), None, None, &[])
            .await;
        assert_eq!(nf.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(nf.text.contains("未找到"), "{}", nf.text);
        assert!(!nf.text.contains("发改投资备"), "{}", nf.text);
        assert!(!nf.text.contains("特种纸"), "{}", nf.text);
    }

    // Another department's approver: 403, neither the list nor the PDF, nothing leaked.
    let no = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/documents"),
            Some("qian"),
            None,
            &[],
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    assert!(!no.text.contains("发改投资备"), "{}", no.text);
    let (status, body, _) = get_as(&s, &pdf_path, Some("qian")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!String::from_utf8_lossy(&body).contains("发改投资备"));

    // Every download, refused or not, is in the audit trail.
    let audit = s.app.accounts.audit_of(&inst).await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "download_document"
            && e.user == "chen"
            && e.outcome.starts_with("ok")),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|e| e.action == "download_document"
            && e.user == "qian"
            && e.outcome == "forbidden"),
        "{audit:?}"
    );

    // The instance page lists it with its PDF and verification link.
    let b = api_common::Browser::login(&s, "chen").await;
    let page = b.get(&format!("/instances/{inst}")).await;
    assert!(page.text.contains("企业投资项目备案证明"), "{}", page.text);
    assert!(page.text.contains(&pdf_path));
    assert!(page.text.contains(&format!("/verify/{code}")));
    // And the dossier, with its number and verification link.
    let dossier = b.get(&format!("/instances/{inst}/dossier")).await;
    assert!(dossier.text.contains("出具的公文"), "{}", dossier.text);
    assert!(dossier.text.contains("发改投资备〔2026〕1号"));
    assert!(dossier.text.contains(&format!("/verify/{code}")));
    assert!(
        dossier
            .text
            .contains(&format!("/instances/{inst}/dossier.pdf"))
    );
    // The dossier's PDF says what the page says, in text a reader can extract.
    let req = Request::get(format!("/instances/{inst}/dossier.pdf"))
        .header(header::COOKIE, &b.cookie)
        .body(Body::empty())
        .expect("req");
    let resp = tower::ServiceExt::oneshot(s.router.clone(), req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let pdf = axum::body::to_bytes(resp.into_body(), 32 << 20)
        .await
        .expect("body");
    assert!(pdf.starts_with(b"%PDF-"));
    let _ = std::fs::write(artifacts.join("dossier.pdf"), &pdf);
    let text: String = pdftotext(&pdf).split_whitespace().collect();
    for want in [
        "办件档案：年产5万吨特种纸技术改造项目",
        "办理历程与意见",
        "信息完整，予以备案",
        "出具的公文",
        "发改投资备〔2026〕1号",
        "记录完整性",
    ] {
        assert!(
            text.contains(want),
            "`{want}` not in the dossier PDF:\n{text}"
        );
    }
    assert!(
        !text.contains("返回办件"),
        "what is not for paper is left out"
    );
    // Someone who may not read the instance gets no PDF.
    let other = api_common::Browser::login(&s, "qian").await;
    let req = Request::get(format!("/instances/{inst}/dossier.pdf"))
        .header(header::COOKIE, &other.cookie)
        .body(Body::empty())
        .expect("req");
    let resp = tower::ServiceExt::oneshot(s.router.clone(), req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn numbers_run_one_two_in_a_year_and_restart_the_next() {
    let s = server("documents-numbers").await;
    let a = start_filing(&s, "项目甲").await;
    act(&s, &a, json!({"type": "approve"})).await;
    let b = start_filing(&s, "项目乙").await;
    act(&s, &b, json!({"type": "approve"})).await;
    assert_eq!(
        documents(&s, &a, 1).await[0]["number"],
        "发改投资备〔2026〕1号"
    );
    assert_eq!(
        documents(&s, &b, 1).await[0]["number"],
        "发改投资备〔2026〕2号"
    );
    // 2027-01-04 10:00 +08:00, a working Monday.
    s.clock
        .0
        .store(1_799_028_000_000, std::sync::atomic::Ordering::Relaxed);
    let c = start_filing(&s, "项目丙").await;
    act(&s, &c, json!({"type": "approve"})).await;
    let d = documents(&s, &c, 1).await;
    assert_eq!(d[0]["number"], "发改投资备〔2027〕1号");
    assert_eq!(d[0]["date"], "2027年1月4日");
}

#[tokio::test]
async fn a_breach_that_revokes_issues_the_revocation_and_the_pre_approval_shows_revoked() {
    let s = server("documents-revoke").await;
    let inst = start_filing(&s, "文创产品设计与制作中心").await;
    act(
        &s,
        &inst,
        json!({"type": "approve_conditional",
               "waive": ["basic_info", "project_info", "investment_info", "policy_statement"]}),
    )
    .await;
    let pre = documents(&s, &inst, 1).await;
    assert_eq!(pre[0]["kind"], "pre_approval");
    assert_eq!(pre[0]["title"], "备案预批复");
    assert_eq!(pre[0]["number"], "发改投资备〔2026〕1号");
    let pre_code = pre[0]["verify_code"].as_str().expect("code").to_string();
    let (status, pdf, _) = get_as(&s, pre[0]["pdf"].as_str().expect("pdf"), Some("zhang")).await;
    assert_eq!(status, StatusCode::OK);
    let flat: String = pdftotext(&pdf).split_whitespace().collect();
    assert!(flat.contains("容缺受理"), "{flat}");
    assert!(flat.contains("20个工作日"), "{flat}");

    // Past the commitment's last day the promise timers fire: breach → revoke.
    s.clock
        .0
        .store(T0 + 60 * 86_400_000, std::sync::atomic::Ordering::Relaxed);
    let claimed = s
        .app
        .db
        .claim_due("test", T0 + 60 * 86_400_000, 60_000, 100)
        .await
        .expect("claim");
    let due = claimed
        .iter()
        .map(|c| c.timer.clone())
        .find(|t| t.instance == inst && t.kind.contains("\"due\"") && t.kind.contains("promise"))
        .expect("a promise's due timer");
    s.app.bus.fire(due).await.expect("breach fires");
    let docs = documents(&s, &inst, 2).await;
    let rev = docs
        .iter()
        .find(|d| d["kind"] == "revocation")
        .expect("a 撤销决定");
    assert_eq!(rev["title"], "撤销备案决定");
    assert_eq!(rev["number"], "发改投资备〔2026〕2号");
    let (status, pdf, _) = get_as(&s, rev["pdf"].as_str().expect("pdf"), Some("zhang")).await;
    assert_eq!(status, StatusCode::OK);
    let flat: String = pdftotext(&pdf).split_whitespace().collect();
    assert!(flat.contains("撤销上述预批复"), "{flat}");
    assert!(
        flat.contains("发改投资备〔2026〕1号"),
        "the revoked pre-approval named: {flat}"
    );

    // The pre-approval's verification page now says 已撤销 and names the 撤销决定.
    for _ in 0..100 {
        let v = s
            .req("GET", &format!("/verify/{pre_code}"), None, None, &[])
            .await;
        if v.text.contains("已撤销") {
            assert!(v.text.contains("撤销备案决定"), "{}", v.text);
            assert!(v.text.contains("发改投资备〔2026〕2号"), "{}", v.text);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pre-approval's page never said 已撤销");
}

#[tokio::test]
async fn a_final_rejection_at_intake_is_issued_a_refusal_with_its_reason() {
    let s = server("documents-refusal").await;
    // A 重中之重 project: the green channel skips 事前会商, so 入库审核 leads to 受理审查.
    let (_, inst) = s.start_project("重中之重").await;
    s.attach_required(&inst, "mouhua").await;
    let lib = s.task_at(&inst, "library").await.expect("library task");
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{lib}/actions"),
            Some("li"),
            Some(json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let intake = s.task_at(&inst, "intake").await.expect("intake open");
    let reason = "未取得用地预审与选址意见书，该材料为红线材料，不得容缺受理";
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{intake}/actions"),
            Some("zhang"),
            Some(json!({"type": "reject", "reason": reason})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let docs = documents(&s, &inst, 1).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    let d = &docs[0];
    assert_eq!(d["kind"], "refusal");
    assert_eq!(d["title"], "不予许可决定书");
    assert_eq!(d["number"], "皖发改投资〔2026〕1号");
    assert_eq!(d["issuer"], "省发展改革委");
    assert_eq!(d["date"], "2026年3月2日");
    assert_eq!(d["outcome"], "不予许可");

    let (status, pdf, ctype) = get_as(&s, d["pdf"].as_str().expect("pdf"), Some("chen")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&pdf));
    assert_eq!(ctype, "application/pdf");
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    if std::fs::create_dir_all(&artifacts).is_ok() {
        let _ = std::fs::write(artifacts.join("refusal.pdf"), &pdf);
    }
    let text = pdftotext(&pdf);
    let flat: String = text.split_whitespace().collect();
    for want in [
        "不予许可决定书",
        "皖发改投资〔2026〕1号",
        "省发展改革委",
        // Addressed to the 项目单位, not to the applicant's account.
        "某数字科技有限公司：",
        "“测试项目”",
        "经“受理审查（容缺受理）”环节审查",
        reason,
        "决定不予许可",
        "行政复议",
        "行政诉讼",
    ] {
        assert!(
            flat.contains(want),
            "`{want}` not in the PDF's text:\n{text}"
        );
    }
    // The projects list names the same 项目单位, with the account that registered it.
    let list = api_common::Browser::login(&s, "chen")
        .await
        .get("/projects")
        .await;
    assert!(
        list.text
            .contains("某数字科技有限公司<br><small class=\"muted\">账号 chen</small>"),
        "{}",
        list.text
    );
}

/// Every role the provincial-major workflow assigns tasks to, held by one clerk with no
/// department, so the test can walk a project to 出具批复 without naming each reviewer.
const PROVINCIAL_ROLES: &[&str] = &[
    "approver",
    "fgw_planner",
    "fgw_reviewer",
    "fgw_intake",
    "zrzy_reviewer",
    "sthj_reviewer",
    "zj_reviewer",
    "cz_reviewer",
    "ny_reviewer",
    "szf_leader",
    "fgw_chief",
];

#[tokio::test]
async fn the_approval_step_issues_the_pifu_which_cannot_be_taken_back() {
    let mut s = server("doc-approval").await;
    s.add_user("clerk", None, PROVINCIAL_ROLES).await;
    let (inst, _) = s.at_intake("省级重大", "").await;
    // 审批 may not close without the 能耗指标 (省发展改革委 attaches it).
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/elements"),
            Some("zhang"),
            Some(json!({"element": "energy_quota", "fields": {"tce": 8000}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The clerk approves every open task of the administration until 出具批复 is decided.
    let mut decision = None;
    for _ in 0..40 {
        let (_, st, _, _) = s.app.instance(&inst).await.expect("load").expect("exists");
        let Some(t) = st
            .tasks
            .iter()
            .find(|t| t.status == shenpi_engine::runtime::state::TaskStatus::Open)
        else {
            break;
        };
        if t.spec.node == "construction" {
            break;
        }
        if t.spec.node == "decision" {
            decision = Some(t.spec.task.0 as u64);
        }
        s.act(
            &inst,
            t.spec.task.0 as u64,
            "clerk",
            json!({"type": "approve", "comment": "同意"}),
        )
        .await;
    }
    let decision = decision.expect("the walk reached 出具批复");
    let docs = documents(&s, &inst, 1).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    let d = &docs[0];
    assert_eq!(d["kind"], "approval");
    assert_eq!(d["title"], "关于项目的批复");
    assert_eq!(d["number"], "皖发改投资〔2026〕1号");
    assert_eq!(d["outcome"], "批准");
    // The case has gone on to 开工建设; the 批复 stands: it is not taken back.
    assert!(s.task_at(&inst, "construction").await.is_some());
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{decision}/actions"),
            Some("clerk"),
            Some(json!({"type": "take_back"})),
            &[],
        )
        .await;
    assert_eq!(r.json["error"], "cannot_take_back", "{}", r.text);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("已出具的公文只能依法撤销"),
        "{}",
        r.text
    );
    let (status, pdf, _) = get_as(&s, d["pdf"].as_str().expect("pdf"), Some("chen")).await;
    assert_eq!(status, StatusCode::OK);
    let flat: String = pdftotext(&pdf).split_whitespace().collect();
    for want in [
        "关于项目的批复",
        "皖发改投资〔2026〕1号",
        "某数字科技有限公司：",
        "“测试项目”",
        "现批复如下",
    ] {
        assert!(
            flat.contains(want),
            "`{want}` not in the PDF's text: {flat}"
        );
    }
}
