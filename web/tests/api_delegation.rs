//! Delegation (委托), hand-over (转办) and co-signing (加签) as the people in them see it: a
//! delegated task is in its delegate's inbox beside its holder's, a handed-over task in the new
//! holder's alone; and a task is never given to a user who does not exist or could not act on
//! it — such a request is refused with a code and a Chinese sentence, and changes nothing.

mod api_common;

use api_common::{Browser, Resp, Server, server};
use axum::http::StatusCode;
use serde_json::{Value, json};

async fn act(s: &Server, inst: &str, task: &str, user: &str, body: Value) -> Resp {
    let path = format!("/api/instances/{inst}/tasks/{task}/actions");
    s.req("POST", &path, Some(user), Some(body), &[]).await
}

async fn version(s: &Server, inst: &str) -> i64 {
    let r = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhao"),
            None,
            &[],
        )
        .await;
    r.json["version"].as_i64().expect("version")
}

/// Whose inboxes (scope mine) hold the task, among the test's users.
async fn holders(s: &Server, inst: &str, task: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for u in ["chen", "liu", "zhang", "li", "zhou", "ma", "wang", "zhao"] {
        if s.inbox_tasks(u, inst).await.iter().any(|t| t == task) {
            out.push(u);
        }
    }
    out
}

#[tokio::test]
async fn a_delegated_task_is_in_the_inbox_of_exactly_its_addressees() {
    let s = server("delegation").await;
    let (_, inst) = s.start_project("省级重大").await;
    // 入库审核 is addressed to the role fgw_planner, which li holds.
    let task = s
        .task_at(&inst, "library")
        .await
        .expect("library")
        .to_string();
    assert_eq!(holders(&s, &inst, &task).await, ["li"]);

    // 委托 to zhou (another department): zhou now has it too, li keeps it.
    let r = act(
        &s,
        &inst,
        &task,
        "li",
        json!({"type": "delegate", "to": "zhou"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(holders(&s, &inst, &task).await, ["li", "zhou"]);
    // The inbox page shows it to the delegate as well, with the link to act on it.
    let page = Browser::login(&s, "zhou").await.get("/inbox").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text
            .contains(&format!("/instances/{inst}/tasks/{task}")),
        "{}",
        page.text
    );
    let page = Browser::login(&s, "ma").await.get("/inbox").await;
    assert!(
        !page
            .text
            .contains(&format!("/instances/{inst}/tasks/{task}"))
    );

    // 转办 to ma by the delegate: the task is ma's alone; li's role and zhou's delegation no
    // longer reach it.
    let r = act(
        &s,
        &inst,
        &task,
        "zhou",
        json!({"type": "delegate", "to": "ma", "transfer": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(holders(&s, &inst, &task).await, ["ma"]);
    let r = act(&s, &inst, &task, "li", json!({"type": "approve"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    // The new holder decides (the stage's element attached first); the task leaves every inbox.
    s.attach_required(&inst, "mouhua").await;
    let r = act(&s, &inst, &task, "ma", json!({"type": "approve"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(holders(&s, &inst, &task).await.is_empty());
}

#[tokio::test]
async fn a_task_is_not_given_to_a_user_who_does_not_exist_or_could_not_act() {
    let s = server("delegation-refused").await;
    let (_, inst) = s.start_project("省级重大").await;
    let task = s
        .task_at(&inst, "library")
        .await
        .expect("library")
        .to_string();
    let before = version(&s, &inst).await;
    for (body, code, words) in [
        (
            json!({"type": "delegate", "to": "nobody"}),
            "unknown_user",
            "没有名为「nobody」的用户，无法委托",
        ),
        (
            json!({"type": "delegate", "to": "nobody", "transfer": true}),
            "unknown_user",
            "没有名为「nobody」的用户，无法转办",
        ),
        (
            json!({"type": "add_cosigner", "user": "nobody"}),
            "unknown_user",
            "没有名为「nobody」的用户，无法加签",
        ),
        // An applicant's account cannot handle the administration's step.
        (
            json!({"type": "delegate", "to": "liu"}),
            "recipient_cannot_act",
            "「liu」不能办理此任务，无法委托",
        ),
        (
            json!({"type": "add_cosigner", "user": "chen"}),
            "recipient_cannot_act",
            "「chen」不能办理此任务，无法加签",
        ),
    ] {
        let r = act(&s, &inst, &task, "li", body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert_eq!(r.json["error"], code, "{body}");
        let message = r.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{body}: {message}");
        // Nothing changed: no event, and the task is where it was.
        assert_eq!(version(&s, &inst).await, before, "{body}");
        assert_eq!(holders(&s, &inst, &task).await, ["li"], "{body}");
    }
    // The same through the task page's form: the page says why, and nothing changes.
    let li = Browser::login(&s, "li").await;
    let page = li.get(&format!("/instances/{inst}/tasks/{task}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = api_common::between(&page.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let r = li
        .post(
            &format!("/instances/{inst}/tasks/{task}"),
            &[("csrf", &csrf), ("action", "delegate"), ("to", "nobody")],
        )
        .await;
    assert!(
        r.text.contains("没有名为「nobody」的用户"),
        "{} {}",
        r.status,
        r.text
    );
    assert_eq!(version(&s, &inst).await, before);
}
