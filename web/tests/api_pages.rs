//! The server-rendered pages, in process: login with its CSRF cookie, the inbox, the task page
//! and its 容缺 form (CSRF-checked, idempotent on resubmission), the instance page with the
//! promise and its due date, the workflow editor marking an error at its line, the dashboard.

mod api_common;

use api_common::{Browser, between, form, login_form, server};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};

/// The login form refuses a post without its cookie (login CSRF) and a wrong password, and its
/// session cookie is `HttpOnly` and `SameSite=Lax`.
#[tokio::test]
async fn the_login_form_checks_its_cookie_and_the_password() {
    let s = server("pages-login").await;
    let (login_cookie, csrf) = login_form(&s).await;
    let post = |cookie: Option<&str>, password: &str| {
        let mut b = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(form(&[
            ("csrf", &csrf),
            ("name", "zhang"),
            ("password", password),
        ])))
        .expect("req")
    };
    let r = s.send(post(None, "password-123")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let bad = s.send(post(Some(&login_cookie), "nope")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.text.contains("用户名或密码错误"));
    let r = s.send(post(Some(&login_cookie), "password-123")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.headers[header::SET_COOKIE].to_str().expect("cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"));
}

#[tokio::test]
async fn pages_need_a_session() {
    let s = server("pages-anon").await;
    for p in [
        "/inbox",
        "/projects",
        "/workflows",
        "/dashboard",
        "/workflows/editor",
    ] {
        let r = s
            .send(Request::get(p).body(Body::empty()).expect("req"))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{p}");
        assert_eq!(r.headers[header::LOCATION], "/login");
    }
    let css = s
        .send(
            Request::get("/static/app.css")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(css.status, StatusCode::OK);
}

/// The text a node's box shows on the diagram: its `<text>` lines joined.
fn node_text(page: &str, id: &str) -> String {
    let group = between(page, &format!("data-node=\"{id}\">"), "</g>").unwrap_or("");
    let mut out = String::new();
    let mut rest = group;
    while let Some(i) = rest.find("<text ") {
        let after = &rest[i..];
        let Some(body) = between(after, ">", "</text>") else {
            break;
        };
        out.push_str(body);
        rest = &after[5..];
    }
    out
}

/// The instance page's diagram (provincial-major on the green channel, at 并联审查): every name
/// in full however long, the gateway's 否则 route labelled, the current and skipped nodes marked.
fn diagram_shows_full_names_and_every_branch(page: &str) {
    for (id, name) in [
        ("library", "中长期重大项目库入库审核"),
        ("intake", "受理审查（容缺受理）"),
        ("joint_review", "并联审查（发改委牵头、部门会签）"),
        ("decision", "出具批复（可行性研究报告批复）"),
        ("construction", "开工建设（帮办专员确认开工）"),
    ] {
        let text = node_text(page, id);
        assert!(text.contains(name), "{id}: the diagram reads {text:?}");
    }
    let otherwise = between(page, "<g class=\"edge otherwise\">", "</g>").unwrap_or("");
    assert!(
        otherwise.contains(">否则</text>"),
        "否则 label: {otherwise}"
    );
    assert!(page.contains(">驳回</text>"));
    assert!(page.contains("class=\"node current\" data-node=\"joint_review\""));
    assert!(page.contains("class=\"node skipped\" data-node=\"pre_consult\""));
    assert!(page.contains("class=\"node done\" data-node=\"intake\""));
}

/// Registers and starts an enterprise-filing project of `catalog` as chen; returns the instance.
async fn start_filing(s: &api_common::Server, catalog: &str) -> String {
    s.start_in(
        "enterprise-filing",
        "备案项目",
        serde_json::json!({"enterprise": "某公司", "funding": "企业投资", "catalog": catalog,
                           "industry": "制造业", "investment": 5000, "service_officer": "sun"}),
    )
    .await
    .1
}

/// The diagram marks the branch an instance did not take (未走的分支): past the catalogue
/// gateway on 备案类, the 不予备案 end is not taken while the filing is current and the gateway
/// passed; an instance the gateway sent to 不予备案 has ended, and every node after the gateway
/// on the other side is not taken. The page and `GET …/diagram` say the same.
#[tokio::test]
async fn the_diagram_marks_branches_not_taken() {
    let s = server("pages-not-taken").await;
    let chen = Browser::login(&s, "chen").await;
    let filed = start_filing(&s, "备案类").await;
    let page = chen.get(&format!("/instances/{filed}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for (class, node) in [
        ("current", "filing"),
        ("done", "catalog_gate"),
        ("not-taken", "refused"),
        ("idle", "filed"),
        ("idle", "done"),
    ] {
        let mark = format!("class=\"node {class}\" data-node=\"{node}\"");
        assert!(page.text.contains(&mark), "{mark} in {}", page.text);
    }
    assert!(
        page.text
            .contains("不予备案（核准目录或禁止类项目）（未走的分支）")
    );
    assert!(page.text.contains(">未走的分支</text>"), "the legend");
    let api = s
        .req(
            "GET",
            &format!("/api/instances/{filed}/diagram"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert!(
        api.text
            .contains("class=\"node not-taken\" data-node=\"refused\"")
    );

    let refused = start_filing(&s, "核准目录").await;
    let page = chen.get(&format!("/instances/{refused}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for (class, node) in [
        ("current", "refused"),
        ("done", "catalog_gate"),
        ("not-taken", "filing"),
        ("not-taken", "filed"),
        ("not-taken", "done"),
    ] {
        let mark = format!("class=\"node {class}\" data-node=\"{node}\"");
        assert!(page.text.contains(&mark), "{mark} in {}", page.text);
    }
}

#[tokio::test]
async fn approver_acts_with_conditional_from_the_task_page() {
    let s = server("pages-flow").await;
    let (inst, intake) = s.at_intake("省级重大", "").await;

    let b = Browser::login(&s, "zhang").await;
    let inbox = b.get("/inbox").await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(
        inbox.text.contains("绿色通道") && inbox.text.contains("badge green"),
        "{}",
        inbox.text
    );
    assert!(inbox.text.contains("个工作日"));
    let task_path = format!("/instances/{inst}/tasks/{intake}");
    assert!(inbox.text.contains(&task_path));
    let page = b.get(&task_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("id=\"act-conditional\""));
    assert!(page.text.contains("红线，不可容缺"));
    assert!(
        page.text.contains("node current"),
        "diagram highlights the current node"
    );
    let csrf = between(&page.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    // A form without the session's CSRF token changes nothing.
    let forged = b
        .post(
            &task_path,
            &[
                ("csrf", "forged"),
                ("idem", "x1"),
                ("action", "conditional"),
                ("waive", "eia"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // A red-line material is refused with the engine's reason, on the task page.
    let red = b
        .post(
            &task_path,
            &[
                ("csrf", &csrf),
                ("idem", "x2"),
                ("action", "conditional"),
                ("waive", "land_site"),
            ],
        )
        .await;
    assert_eq!(red.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(red.text.contains("material_is_red_line"), "{}", red.text);
    // The real submission, twice (double click): applied once.
    let fields = [
        ("csrf", csrf.as_str()),
        ("idem", "x3"),
        ("action", "conditional"),
        ("waive", "eia"),
        ("waive", "social_risk"),
        ("limit", "20wd"),
        ("comment", "同意容缺"),
    ];
    let ok = b.post(&task_path, &fields).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    let again = b.post(&task_path, &fields).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    let loc = ok.headers[header::LOCATION]
        .to_str()
        .expect("loc")
        .to_string();
    let inst_page = b.get(&loc).await;
    // The flash and the history speak the workflow's names, not its ids.
    assert!(
        inst_page.text.contains("已办理：容缺通过"),
        "{}",
        inst_page.text
    );
    assert!(
        inst_page.text.contains("进入阶段「谋划」"),
        "{}",
        inst_page.text
    );
    assert!(!inst_page.text.contains("进入阶段 mouhua"));
    assert!(
        !inst_page.text.contains("分派给 角色"),
        "{}",
        inst_page.text
    );
    assert!(
        inst_page.text.contains("data-material=\"eia\""),
        "promise listed"
    );
    diagram_shows_full_names_and_every_branch(&inst_page.text);
    let due = between(&inst_page.text, "<td class=\"due\">", "<").expect("due cell");
    assert!(
        due.len() >= 10 && due.as_bytes().get(4) == Some(&b'-'),
        "due date: {due}"
    );
    let d = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        d.json["view"]["promises"].as_array().map(Vec::len),
        Some(2),
        "applied once"
    );
}

#[tokio::test]
async fn editor_marks_errors_at_their_line_and_publishes() {
    let s = server("pages-editor").await;
    let b = Browser::login(&s, "wang").await;
    let page = b.get("/workflows/editor?id=enterprise-filing").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = between(&page.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let yaml = std::fs::read_to_string(api_common::workflows_dir().join("enterprise-filing.yaml"))
        .expect("yaml");
    let line = yaml
        .lines()
        .position(|l| l.contains("role: fgw_filing") && l.contains("assignee"))
        .expect("assignee line")
        + 1;
    let broken = yaml.replacen(
        "assignee: { role: fgw_filing }",
        "assignee: { role: fgw_filling }",
        1,
    );
    let r = b
        .post(
            "/workflows/editor",
            &[
                ("csrf", &csrf),
                ("id", "enterprise-filing"),
                ("yaml", &broken),
                ("op", "validate"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text.contains(&format!("data-line=\"{line}\"")),
        "error at line {line}"
    );
    assert!(r.text.contains(&format!("id=\"L{line}\"")));
    assert!(r.text.contains("fgw_filling"));
    assert!(
        r.text.contains("class=\"marker\""),
        "the caret line under the error"
    );
    let changed = yaml.replacen(
        "name: 企业投资项目备案",
        "name: 企业投资项目备案（二版）",
        1,
    );
    let p = b
        .post(
            "/workflows/editor",
            &[
                ("csrf", &csrf),
                ("id", "enterprise-filing"),
                ("yaml", &changed),
                ("op", "publish"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("已发布 enterprise-filing v2"));
    let diff = b.get("/workflows/enterprise-filing/diff?from=1&to=2").await;
    assert!(diff.text.contains("class=\"add\""));
    // An approver may not use the editor.
    let z = Browser::login(&s, "zhang").await;
    let no = z.get("/workflows/editor").await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn dashboard_projects_and_applicant_pages() {
    let s = server("pages-dash").await;
    let (_, inst) = s.start_project("重中之重").await;
    let zhao = Browser::login(&s, "zhao").await;
    let d = zhao.get("/dashboard").await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.text.contains("督办看板") && d.text.contains("<svg"));
    // In March the calendar (to 2026-12-31) is far from its end: no warning.
    assert!(!d.text.contains("calendar-runway"), "{}", d.text);
    // It still says which years are provisional.
    assert!(
        d.text
            .contains("工作日历 cn-mainland：正式放假安排至 2026-12-31，2027–2041 年为暂定"),
        "{}",
        d.text
    );
    // On 2026-11-22 10:00 +08:00 it has 39 days left: the dashboard says so.
    s.clock
        .0
        .store(1_795_312_800_000, std::sync::atomic::Ordering::Relaxed);
    // (Sessions from March have expired by then: log in again.)
    let late = Browser::login(&s, "zhao").await.get("/dashboard").await;
    assert!(late.text.contains("calendar-runway"), "{}", late.text);
    assert!(
        late.text
            .contains("工作日历 cn-mainland 的正式放假安排只到 2026-12-31（还剩 39 天）：2027–2041 年为暂定日历"),
        "{}",
        late.text
    );
    s.clock
        .0
        .store(api_common::T0, std::sync::atomic::Ordering::Relaxed);
    let chen = Browser::login(&s, "chen").await;
    assert_eq!(chen.get("/dashboard").await.status, StatusCode::FORBIDDEN);
    let list = chen.get("/projects?workflow=enterprise-filing").await;
    assert!(list.text.contains(&inst));
    assert!(list.text.contains("name=\"f.catalog\""));
    let csrf = between(&list.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let created = chen
        .post(
            "/projects",
            &[
                ("csrf", &csrf),
                ("idem", "np1"),
                ("workflow", "enterprise-filing"),
                ("name", "新厂房"),
                ("f.enterprise", "某公司"),
                ("f.funding", "企业投资"),
                ("f.catalog", "备案类"),
                ("f.industry", "制造业"),
                ("f.investment", "5000"),
                ("f.service_officer", "sun"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let loc = created.headers[header::LOCATION]
        .to_str()
        .expect("loc")
        .to_string();
    let page = chen.get(&loc).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("新厂房") && page.text.contains("撤回申报"));
    let liu = Browser::login(&s, "liu").await;
    assert_eq!(
        liu.get(&format!("/instances/{inst}")).await.status,
        StatusCode::FORBIDDEN
    );
}

/// The office operations on the pages: the inbox's selection approves the ticked tasks with one
/// opinion and lists what became of each; the decider's task page offers 拿回 (confirmed) while
/// the next node has not acted; a copy's recipient opening the instance marks it read, which
/// the sender sees.
#[tokio::test]
async fn batch_take_back_and_read_marks_on_the_pages() {
    let s = server("pages-operations").await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (_, inst) = s.start_project("中长期库").await;
        s.attach_required(&inst, "mouhua").await;
        let lib = s.task_at(&inst, "library").await.expect("library");
        tasks.push((inst, lib));
    }
    let li = Browser::login(&s, "li").await;
    let inbox = li.get("/inbox").await;
    let csrf = between(&inbox.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let picks: Vec<String> = tasks.iter().map(|(i, t)| format!("{i}/{t}")).collect();
    for p in &picks {
        assert!(
            inbox.text.contains(&format!("value=\"{p}\"")),
            "a selection box per row"
        );
    }
    let r = li
        .post(
            "/inbox/batch",
            &[
                ("csrf", &csrf),
                ("idem", "b1"),
                ("pick", &picks[0]),
                ("pick", &picks[1]),
                ("comment", "同意入库"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("2 项已办理，0 项未能办理"), "{}", r.text);
    assert!(
        r.text.contains("测试项目 · 中长期重大项目库入库审核"),
        "named, not ids: {}",
        r.text
    );
    let (inst, lib) = &tasks[0];

    // li's approval of 入库审核 led to 事前会商, li's too, which nobody has acted on: 拿回. The
    // stage moved (谋划 → 生成), so the engine refuses and the page does not offer it.
    let page = li.get(&format!("/instances/{inst}/tasks/{lib}")).await;
    assert!(
        !page.text.contains("act-take-back"),
        "across a stage: no 拿回"
    );
    let pre = s.task_at(inst, "pre_consult").await.expect("pre_consult");
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{pre}/actions"),
            Some("li"),
            Some(serde_json::json!({"type": "approve"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let page = li.get(&format!("/instances/{inst}/tasks/{pre}")).await;
    assert!(
        page.text.contains("act-take-back") && page.text.contains("确认拿回"),
        "{}",
        page.text
    );
    // Unconfirmed, it is refused and nothing changes.
    let path = format!("/instances/{inst}/tasks/{pre}");
    let r = li
        .post(&path, &[("csrf", &csrf), ("action", "take_back")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("请勾选确认后再拿回"), "{}", r.text);
    assert!(s.task_at(inst, "intake").await.is_some());
    let r = li
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("action", "take_back"),
                ("confirm", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert!(
        s.task_at(inst, "intake").await.is_none(),
        "受理审查 withdrawn"
    );
    assert!(
        s.task_at(inst, "pre_consult").await.is_some(),
        "事前会商 is li's again"
    );

    // 抄送: zhao opens the instance, and li sees zhao has read it.
    let again = s.task_at(inst, "pre_consult").await.expect("pre_consult");
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/tasks/{again}/actions"),
            Some("li"),
            Some(serde_json::json!({"type": "cc", "to": ["zhao"], "text": "请阅"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let page = li.get(&format!("/instances/{inst}")).await;
    assert!(page.text.contains("zhao（未读）"), "{}", page.text);
    let zhao = Browser::login(&s, "zhao").await;
    let opened = zhao.get(&format!("/instances/{inst}")).await;
    assert_eq!(opened.status, StatusCode::OK);
    let page = li.get(&format!("/instances/{inst}")).await;
    assert!(page.text.contains("zhao（已读）"), "{}", page.text);
    assert!(page.text.contains("zhao 已阅抄送"), "in the history too");
}

/// The visible text of a page: its tags (and their attributes), scripts and styles left out.
fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let tag = &rest[lt..];
        let skip_to = if tag.starts_with("<script") {
            tag.find("</script>").map(|j| j + "</script>".len())
        } else if tag.starts_with("<style") {
            tag.find("</style>").map(|j| j + "</style>".len())
        } else {
            tag.find('>').map(|j| j + 1)
        };
        let Some(n) = skip_to else { break };
        out.push(' ');
        rest = &tag[n..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The ids `text` shows among those of the shipped workflow's nodes, stages, roles, materials
/// and departments (as whole words).
fn ids_in(text: &str) -> Vec<String> {
    let ids = [
        "library",
        "pre_consult",
        "intake",
        "joint_review",
        "invest_gate",
        "leader_review",
        "decision",
        "mouhua",
        "shengcheng",
        "shenpi",
        "fgw_intake",
        "fgw_planner",
        "fgw_reviewer",
        "zrzy_reviewer",
        "sthj_reviewer",
        "applicant",
        "land_site",
        "eia",
        "social_risk",
        "feasibility",
        "provincial-major",
        "enterprise-filing",
        "fgw",
        "zrzy",
        "sthj",
        "dsj",
        "project_data",
        "land_quota",
    ];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| ids.contains(w))
        .map(str::to_string)
        .collect()
}

/// The inbox, the task page, the instance page and the 督办看板 speak the workflow's names:
/// no node, stage, role, material, department or workflow id in what a person reads, and the
/// header names the user's department and roles.
#[tokio::test]
async fn pages_show_names_not_ids() {
    let s = server("pages-names").await;
    let (_, inst) = s.start_project("重中之重").await;
    s.attach_required(&inst, "mouhua").await;
    let li = Browser::login(&s, "li").await;
    let inbox = li.get("/inbox").await;
    assert_eq!(inbox.status, StatusCode::OK);
    let text = visible(&inbox.text);
    assert!(text.contains("中长期重大项目库入库审核"), "{text}");
    assert!(
        text.contains("谋划") && text.contains("省级重大项目审批"),
        "{text}"
    );
    assert!(
        text.contains("发改委规划处（项目库）"),
        "the header names the role: {text}"
    );
    assert!(
        text.contains("省发展改革委"),
        "the header names the department: {text}"
    );
    assert_eq!(ids_in(&text), Vec::<String>::new(), "{text}");
    let task = s.task_at(&inst, "library").await.expect("the library task");
    let page = li.get(&format!("/instances/{inst}/tasks/{task}")).await;
    let text = visible(&page.text);
    assert_eq!(ids_in(&text), Vec::<String>::new(), "{text}");
    assert!(
        text.contains("时限 5 个工作日"),
        "the limit in Chinese (halved in the green channel): {text}"
    );
    let page = li.get(&format!("/instances/{inst}")).await;
    let text = visible(&page.text);
    assert_eq!(ids_in(&text), Vec::<String>::new(), "{text}");
    assert!(text.contains("重大项目审批绿色通道"), "{text}");
    assert!(
        text.contains("项目满足条件 「项目层级」 为「重中之重」或「省级重大」"),
        "{text}"
    );
    let zhao = Browser::login(&s, "zhao").await;
    let d = zhao.get("/dashboard").await;
    let text = visible(&d.text);
    assert_eq!(ids_in(&text), Vec::<String>::new(), "{text}");
    assert!(
        text.contains("各部门按时率") && text.contains("省发展改革委"),
        "{text}"
    );
}

/// The inbox's tabs count what is in them: 待办 the open tasks, 已办 what I decided, 我发起的 my
/// applications; search by a Chinese name and the green-channel filter narrow 待办.
#[tokio::test]
async fn inbox_tabs_count_and_filters_narrow() {
    let s = server("pages-tabs").await;
    let (_, green) = s.start_project("重中之重").await;
    let (_, plain) = s.start_project("中长期库").await;
    s.attach_required(&green, "mouhua").await;
    let li = Browser::login(&s, "li").await;
    let page = li.get("/inbox").await;
    let text = visible(&page.text);
    assert!(text.contains("待办 2") && text.contains("已办 0"), "{text}");
    let only_green = visible(&li.get("/inbox?green=true").await.text);
    assert!(only_green.contains("共 1 件"), "{only_green}");
    let search = visible(&li.get("/inbox?q=%E6%B5%8B%E8%AF%95").await.text);
    assert!(
        search.contains("共 2 件"),
        "searching 测试 (the project's name) finds both: {search}"
    );
    let none = visible(&li.get("/inbox?q=%E4%B8%8D%E5%AD%98%E5%9C%A8").await.text);
    assert!(none.contains("没有待办事项"), "{none}");
    let task = s.task_at(&green, "library").await.expect("task");
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{green}/tasks/{task}/actions"),
            Some("li"),
            Some(serde_json::json!({"type": "approve", "comment": "同意"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The audit trail is written off the request path, in batches.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let text = visible(&li.get("/inbox?tab=done").await.text);
    assert!(text.contains("已办 1") && text.contains("待办 1"), "{text}");
    assert!(text.contains("通过"), "{text}");
    let chen = Browser::login(&s, "chen").await;
    let mine = visible(&chen.get("/inbox?tab=mine").await.text);
    assert!(mine.contains("我发起的 2"), "{mine}");
    let _ = plain;
}

/// The message centre shows the notifications the outbox sends to me, my roles and my
/// department, rendered with the outbox's templates; marking them read clears the count.
#[tokio::test]
async fn message_centre_counts_unread_and_marks_read() {
    let s = server("pages-messages").await;
    let (_, inst) = s.start_project("中长期库").await;
    let m = s.req("GET", "/api/messages", Some("li"), None, &[]).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    let list = m.json.as_array().expect("a list").clone();
    let assigned = list
        .iter()
        .find(|x| x["template"] == "task_assigned" && x["instance"] == inst.as_str())
        .expect("the new task's notification reaches its role's holder");
    assert!(
        assigned["text"]
            .as_str()
            .unwrap_or("")
            .contains("【待办提醒】")
    );
    assert_eq!(assigned["read"], false);
    let li = Browser::login(&s, "li").await;
    let page = li.get("/inbox").await;
    assert!(
        page.text.contains("class=\"count unread\""),
        "the header counts unread messages"
    );
    let bad = s
        .req(
            "POST",
            "/api/messages/read",
            Some("li"),
            Some(serde_json::json!({"ids": ["nope"]})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    let ok = s
        .req(
            "POST",
            "/api/messages/read",
            Some("li"),
            Some(serde_json::json!({})),
            &[],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["unread"], 0);
    let again = s.req("GET", "/api/messages", Some("li"), None, &[]).await;
    assert!(
        again
            .json
            .as_array()
            .expect("list")
            .iter()
            .all(|x| x["read"] == true)
    );
    // Someone else's messages are not mine to see.
    let other = s.req("GET", "/api/messages", Some("wang"), None, &[]).await;
    assert!(
        other
            .json
            .as_array()
            .expect("list")
            .iter()
            .all(|x| x["instance"] != inst.as_str()),
        "{}",
        other.text
    );
}

/// The demo clock moves forward by working days for an admin of a demo only, never back, and
/// is stored so that a restarted demo goes on from it.
#[tokio::test]
async fn the_demo_clock_moves_forward_by_working_days() {
    use shenpi_adapters::machine::Clock;
    let s = server("pages-clock").await;
    let body = serde_json::json!({"working_days": 4});
    let r = s
        .req(
            "POST",
            "/api/clock/advance",
            Some("zhao"),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "not a demo: {}", r.text);
    s.app.demo.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = s
        .req(
            "POST",
            "/api/clock/advance",
            Some("zhao"),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a supervisor is not an admin: {}",
        r.text
    );
    let admin = shenpi_web::server::accounts::User {
        name: "root".into(),
        department: None,
        roles: vec!["admin".into()],
    };
    // From Monday 2026-03-02, 4 working days on: Friday 2026-03-06, same time of day.
    shenpi_web::server::demo_time::move_forward(&s.app, &admin, 4)
        .await
        .expect("moves");
    assert_eq!(s.clock.now(), api_common::T0 + 4 * 86_400_000);
    // 2026-04-03 (Friday) + 1 working day skips 清明 (04-04 to 04-06): Tuesday 04-07.
    s.clock
        .0
        .store(1_775_181_600_000, std::sync::atomic::Ordering::Relaxed);
    shenpi_web::server::demo_time::move_forward(&s.app, &admin, 1)
        .await
        .expect("moves");
    assert_eq!(s.clock.now(), 1_775_181_600_000 + 4 * 86_400_000);
    for bad in [0, 61] {
        let e = shenpi_web::server::demo_time::move_forward(&s.app, &admin, bad)
            .await
            .expect_err("refused");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.body.message.contains("1 至 60"), "{}", e.body.message);
    }
    // A restart on an earlier start goes on from the stored clock, not back.
    let stored = s
        .app
        .accounts
        .demo_clock_offset()
        .await
        .expect("reads")
        .expect("stored");
    let restarted = shenpi_web::server::state::OffsetClock::starting_at(api_common::T0);
    shenpi_web::server::demo_time::restore(&s.app, &restarted).await;
    assert_eq!(restarted.offset(), stored);
    // A later start moves it on, and that is stored.
    let later = shenpi_web::server::state::OffsetClock::starting_at(
        shenpi_adapters::machine::now_millis() + stored + 86_400_000,
    );
    shenpi_web::server::demo_time::restore(&s.app, &later).await;
    assert!(later.offset() > stored);
    assert_eq!(
        s.app.accounts.demo_clock_offset().await.expect("reads"),
        Some(later.offset())
    );
}

/// A workflow whose task roles no account holds cannot be applied for, and the API and the
/// new-project form refuse it alike (one check, `start::check_startable`): `POST /api/projects`
/// and `POST /api/instances` answer 422 `roles_unheld` naming the roles in Chinese (their ids in
/// the details), the form shows the same sentence, and no project is kept.
#[tokio::test]
async fn start_form_refuses_unheld_roles_and_keeps_no_project() {
    let mut s = server("pages-unheld").await;
    // Registered while every role has a holder; then 财政厅审核人 loses its only one.
    let registered = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(serde_json::json!({
                "name": "登记在先的项目",
                "workflow_id": "provincial-major",
                "fields": {"tier": "中长期库", "investment": 1000, "funding": "政府投资",
                           "industry": "交通", "region": "昆明市", "service_officer": "sun"}
            })),
            &[],
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.text
    );
    let pid = registered.json["id"].as_str().expect("id").to_string();
    s.add_user("feng", Some("cz"), &["approver"]).await;
    let started = s
        .req(
            "POST",
            "/api/instances",
            Some("chen"),
            Some(serde_json::json!({"project_id": pid})),
            &[],
        )
        .await;
    let new_project = s
        .req(
            "POST",
            "/api/projects",
            Some("chen"),
            Some(serde_json::json!({
                "name": "无人办理的项目",
                "workflow_id": "provincial-major",
                "fields": {"tier": "中长期库", "investment": 1000, "funding": "政府投资",
                           "industry": "交通", "region": "昆明市", "service_officer": "sun"}
            })),
            &[],
        )
        .await;
    let mut refusal = String::new();
    for r in [&started, &new_project] {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json["error"], "roles_unheld", "{}", r.text);
        assert_eq!(
            r.json["details"]["roles"],
            serde_json::json!(["cz_reviewer"])
        );
        let message = r.json["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains("流程「省级重大项目")
                && message.contains("「财政厅审核人」没有任何人员担任"),
            "{message}"
        );
        assert_eq!(ids_in(&message), Vec::<String>::new(), "{message}");
        refusal = message;
    }
    assert_eq!(
        started.json["message"], new_project.json["message"],
        "one sentence for both"
    );
    let chen = Browser::login(&s, "chen").await;
    let list = chen.get("/projects?workflow=provincial-major").await;
    let csrf = between(&list.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let before = s.req("GET", "/api/projects", Some("chen"), None, &[]).await;
    let n = before.json.as_array().map_or(0, Vec::len);
    let r = chen
        .post(
            "/projects",
            &[
                ("csrf", &csrf),
                ("idem", "u1"),
                ("workflow", "provincial-major"),
                ("name", "无人办理的项目"),
                ("f.tier", "中长期库"),
                ("f.investment", "1000"),
                ("f.funding", "政府投资"),
                ("f.industry", "交通"),
                ("f.service_officer", "sun"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let text = visible(&r.text);
    assert!(
        text.contains("没有任何人员担任") && text.contains("财政厅审核人"),
        "{text}"
    );
    assert!(
        text.contains(&refusal),
        "the form says what the API says: {text}"
    );
    assert_eq!(ids_in(&text), Vec::<String>::new(), "{text}");
    let after = s.req("GET", "/api/projects", Some("chen"), None, &[]).await;
    assert_eq!(
        after.json.as_array().map_or(0, Vec::len),
        n,
        "no project was kept"
    );
    // A refused start keeps no project either (an invalid field value).
    let ef = chen.get("/projects?workflow=enterprise-filing").await;
    let csrf = between(&ef.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let r = chen
        .post(
            "/projects",
            &[
                ("csrf", &csrf),
                ("idem", "u2"),
                ("workflow", "enterprise-filing"),
                ("name", "缺字段的项目"),
            ],
        )
        .await;
    assert_ne!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let after = s.req("GET", "/api/projects", Some("chen"), None, &[]).await;
    assert_eq!(
        after.json.as_array().map_or(0, Vec::len),
        n,
        "{}",
        after.text
    );
}

/// 挂牌督办 by hand: refused to who oversees no department, recorded once for a supervisor,
/// and the task is on the board's 挂牌督办 list.
#[tokio::test]
async fn a_supervisor_puts_a_task_under_supervision() {
    let s = server("pages-supervise").await;
    let (_, inst) = s.start_project("中长期库").await;
    let task = s.task_at(&inst, "library").await.expect("task");
    let path = format!("/api/instances/{inst}/commands");
    let cmd = serde_json::json!({"type": "supervise", "task": task, "reason": "超期"});
    let r = s
        .req("POST", &path, Some("zhao"), Some(cmd.clone()), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"], "not_authorised");
    let boss = shenpi_web::server::accounts::User {
        name: "boss".into(),
        department: Some("szf".into()),
        roles: vec!["supervisor".into(), "szf_office".into()],
    };
    s.app
        .accounts
        .upsert_user(&boss, None, api_common::T0)
        .await
        .expect("user");
    let token = s
        .app
        .accounts
        .create_token("boss", None, api_common::T0)
        .await
        .expect("token");
    let send = || {
        Request::post(&path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(cmd.to_string()))
            .expect("req")
    };
    let r = s.send(send()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let again = s.send(send()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["events"], 0, "supervised once: {}", again.text);
    let d = s
        .req("GET", "/api/dashboard", Some("zhao"), None, &[])
        .await;
    assert!(
        d.json["supervised"]
            .as_array()
            .expect("list")
            .iter()
            .any(|r| r["instance"] == inst.as_str()),
        "{}",
        d.text
    );
}
