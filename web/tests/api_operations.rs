//! The office operations through the API, seen in the inboxes of the people they concern: 委派
//! moves a task to the one consulted and back, 转办 to the new holder, 拿回 takes the next node's
//! task out of its holder's inbox and gives the decider theirs again, 前加签 and 减签 move a
//! parallel branch out of its reviewer's inbox and back, a named user who does not exist or may
//! not take tasks is refused, a copy's read mark is set by its recipient, and a batch approval
//! gives per task what the single command gives.

mod api_common;

use api_common::{Server, server};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The (instance, task) pairs in `user`'s inbox.
async fn inbox(s: &Server, user: &str) -> Vec<(String, String)> {
    let r = s.req("GET", "/api/tasks", Some(user), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
        .as_array()
        .expect("rows")
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap_or_default().to_string(),
                i["task"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn holds(s: &Server, user: &str, inst: &str, task: u64) -> bool {
    inbox(s, user)
        .await
        .contains(&(inst.to_string(), task.to_string()))
}

async fn act(s: &Server, user: &str, inst: &str, task: u64, body: Value) -> api_common::Resp {
    s.req(
        "POST",
        &format!("/api/instances/{inst}/tasks/{task}/actions"),
        Some(user),
        Some(body),
        &[],
    )
    .await
}

async fn ok(s: &Server, user: &str, inst: &str, task: u64, body: Value) {
    let r = act(s, user, inst, task, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{user} {body}: {}", r.text);
}

/// Everyone in the test's user list whose inbox holds the task.
async fn holders(s: &Server, inst: &str, task: u64) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, _, _) in api_common::USERS {
        if holds(s, name, inst, task).await {
            out.push(*name);
        }
    }
    out
}

#[tokio::test]
async fn each_operation_changes_the_inbox_of_exactly_the_right_people() {
    let s = server("operations").await;
    let (_, inst) = s.start_project("中长期库").await;
    let library = s.task_at(&inst, "library").await.expect("library");
    assert_eq!(holders(&s, &inst, library).await, ["li"]);

    // A named user must exist and be able to take tasks; nor may one name oneself.
    let r = act(
        &s,
        "li",
        &inst,
        library,
        json!({"type": "consult", "to": "nobody"}),
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user")),
        "{}",
        r.text
    );
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("不存在")
    );
    let r = act(
        &s,
        "li",
        &inst,
        library,
        json!({"type": "consult", "to": "chen"}),
    )
    .await;
    assert_eq!(r.json["error"], "recipient_cannot_act", "{}", r.text);
    let r = act(
        &s,
        "li",
        &inst,
        library,
        json!({"type": "consult", "to": "li"}),
    )
    .await;
    assert_eq!(r.json["error"], "ineligible_user", "{}", r.text);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("自己"),
        "{}",
        r.text
    );
    assert_eq!(
        holders(&s, &inst, library).await,
        ["li"],
        "a refusal changes nothing"
    );

    // 委派: the task goes to the one consulted, and comes back to the delegator.
    ok(
        &s,
        "li",
        &inst,
        library,
        json!({"type": "consult", "to": "zhou", "text": "请提意见"}),
    )
    .await;
    assert_eq!(holders(&s, &inst, library).await, ["zhou"]);
    let r = act(&s, "li", &inst, library, json!({"type": "approve"})).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::CONFLICT, Some("consulting")),
        "{}",
        r.text
    );
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("zhou"),
        "{}",
        r.text
    );
    ok(
        &s,
        "zhou",
        &inst,
        library,
        json!({"type": "answer_consult", "opinion": "用地无问题"}),
    )
    .await;
    assert_eq!(holders(&s, &inst, library).await, ["li"]);

    // 转办: the new holder's inbox, not the old one's.
    ok(
        &s,
        "li",
        &inst,
        library,
        json!({"type": "delegate", "to": "zhang", "transfer": true}),
    )
    .await;
    assert_eq!(holders(&s, &inst, library).await, ["zhang"]);
    s.attach_required(&inst, "mouhua").await;
    ok(&s, "zhang", &inst, library, json!({"type": "approve"})).await;

    // 拿回: li approves 事前会商; 受理审查 reaches zhang; li takes it back before zhang acts.
    let pre = s.task_at(&inst, "pre_consult").await.expect("pre_consult");
    assert_eq!(holders(&s, &inst, pre).await, ["li"]);
    ok(
        &s,
        "li",
        &inst,
        pre,
        json!({"type": "approve", "comment": "同意"}),
    )
    .await;
    let intake = s.task_at(&inst, "intake").await.expect("intake");
    assert_eq!(holders(&s, &inst, intake).await, ["zhang"]);
    let r = act(&s, "zhang", &inst, pre, json!({"type": "take_back"})).await;
    assert_eq!(
        r.json["error"], "cannot_take_back",
        "only the decider: {}",
        r.text
    );
    ok(&s, "li", &inst, pre, json!({"type": "take_back"})).await;
    assert!(
        holders(&s, &inst, intake).await.is_empty(),
        "the next node's task is withdrawn"
    );
    let again = s.task_at(&inst, "pre_consult").await.expect("stand-in");
    assert_ne!(again, pre);
    assert_eq!(holders(&s, &inst, again).await, ["li"]);
    ok(&s, "li", &inst, again, json!({"type": "approve"})).await;
    let intake = s.task_at(&inst, "intake").await.expect("intake");
    // Once the next node acted, the decision stands.
    s.attach_required(&inst, "shengcheng").await;
    ok(&s, "zhang", &inst, intake, json!({"type": "approve"})).await;
    let r = act(&s, "li", &inst, again, json!({"type": "take_back"})).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::CONFLICT, Some("cannot_take_back")),
        "{}",
        r.text
    );
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("下一环节已经办理"),
        "{}",
        r.text
    );

    // 前加签 on a branch of the parallel review: the reviewer's inbox loses it while the signer
    // decides first; 减签 gives it back.
    let zrzy = s.task_at(&inst, "joint_review").await.map(|_| ());
    assert!(zrzy.is_some(), "the parallel review is open");
    let branch = {
        let r = s
            .req(
                "GET",
                &format!("/api/instances/{inst}"),
                Some("zhao"),
                None,
                &[],
            )
            .await;
        r.json["view"]["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["branch"] == "zrzy")
            .and_then(|t| t["id"].as_u64())
            .expect("zrzy branch")
    };
    assert_eq!(holders(&s, &inst, branch).await, ["zhou"]);
    ok(
        &s,
        "zhou",
        &inst,
        branch,
        json!({"type": "add_cosigner", "user": "ma", "order": "before"}),
    )
    .await;
    assert!(
        holders(&s, &inst, branch).await.is_empty(),
        "the holder waits for the signer"
    );
    let signer = branch_signer(&s, &inst, branch).await;
    assert_eq!(holders(&s, &inst, signer).await, ["ma"]);
    let r = act(&s, "zhou", &inst, branch, json!({"type": "approve"})).await;
    assert_eq!(r.json["error"], "awaiting_signer", "{}", r.text);
    ok(
        &s,
        "zhou",
        &inst,
        branch,
        json!({"type": "remove_cosigner", "user": "ma"}),
    )
    .await;
    assert!(
        holders(&s, &inst, signer).await.is_empty(),
        "the removed signer's task is gone"
    );
    assert_eq!(holders(&s, &inst, branch).await, ["zhou"]);

    // 抄送 with read marks: the recipient's reading is recorded, the sender sees it.
    ok(
        &s,
        "zhou",
        &inst,
        branch,
        json!({"type": "cc", "to": ["zhao", "wang"], "text": "请阅"}),
    )
    .await;
    let read = s
        .req(
            "POST",
            &format!("/api/instances/{inst}/commands"),
            Some("zhao"),
            Some(json!({"type": "read_copies"})),
            &[],
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let r = s
        .req(
            "GET",
            &format!("/api/instances/{inst}"),
            Some("zhou"),
            None,
            &[],
        )
        .await;
    let copies = &r.json["view"]["copies"];
    assert_eq!(copies[0]["by"], "zhou", "{copies}");
    assert_eq!(copies[0]["read_by"], json!(["zhao"]), "{copies}");
}

/// The open co-signer's task of a branch.
async fn branch_signer(s: &Server, inst: &str, parent: u64) -> u64 {
    let (_, st, _, _) = s.app.instance(inst).await.expect("load").expect("exists");
    let t = st
        .task(shenpi_engine::runtime::TaskId(
            u32::try_from(parent).expect("id"),
        ))
        .expect("parent");
    t.cosigners
        .iter()
        .find(|c| st.task(**c).is_some_and(|c| c.is_open()))
        .map(|c| u64::from(c.0))
        .expect("an open signer")
}

#[tokio::test]
async fn a_batch_approval_gives_per_task_what_the_single_commands_give() {
    let s = server("batch").await;
    // Two twin sets of instances: one approved in a batch, one task by task.
    let mut sets = Vec::new();
    for _ in 0..2 {
        let mut t = Vec::new();
        for _ in 0..3 {
            let (_, i) = s.start_project("中长期库").await;
            s.attach_required(&i, "mouhua").await;
            let task = s.task_at(&i, "library").await.expect("library");
            t.push((i, task));
        }
        // The third was decided before the batch.
        ok(&s, "li", &t[2].0, t[2].1, json!({"type": "approve"})).await;
        let missing = (t[0].0.clone(), 99);
        t.push(missing);
        sets.push(t);
    }
    // The batch: two open tasks, one already decided, one that does not exist.
    let items: Vec<Value> = sets[0]
        .iter()
        .map(|(i, t)| json!({"instance": i, "task": t}))
        .collect();
    let r = s
        .req(
            "POST",
            "/api/tasks/batch",
            Some("li"),
            Some(json!({"tasks": items, "comment": "同意"})),
            &[("Idempotency-Key", "batch-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let batch = r.json.as_array().expect("results").clone();
    assert_eq!(batch.len(), 4);
    // The same commands one at a time on the twins.
    let mut single = Vec::new();
    for (i, t) in &sets[1] {
        let r = act(
            &s,
            "li",
            i,
            *t,
            json!({"type": "approve", "comment": "同意"}),
        )
        .await;
        single.push((
            r.status.as_u16(),
            r.json["error"].as_str().map(str::to_string),
        ));
    }
    let got: Vec<(u16, Option<String>)> = batch
        .iter()
        .map(|b| {
            (
                b["status"].as_u64().unwrap_or(0) as u16,
                b["error"]["error"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        got, single,
        "per task, the batch answers as the single command"
    );
    assert_eq!(got[0].0, 200);
    assert_eq!(got[2].1.as_deref(), Some("already_decided"));
    assert!(
        batch[2]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("已经办理过了")
    );
    // Each task was decided once with the one opinion, and the next node is li's.
    for (i, _) in &sets[0][..2] {
        assert!(s.task_at(i, "pre_consult").await.is_some(), "{i} moved on");
    }
    // A retry of the batch with the same key replays each task's answer, deciding nothing more.
    let items: Vec<Value> = sets[0]
        .iter()
        .map(|(i, t)| json!({"instance": i, "task": t}))
        .collect();
    let again = s
        .req(
            "POST",
            "/api/tasks/batch",
            Some("li"),
            Some(json!({"tasks": items, "comment": "同意"})),
            &[("Idempotency-Key", "batch-1")],
        )
        .await;
    assert_eq!(again.json[0]["result"]["replayed"], true, "{}", again.text);
    assert_eq!(
        again.json[0]["result"]["version"],
        batch[0]["result"]["version"]
    );
    // A batch naming a task twice, or nothing, is refused as a whole.
    let twice = json!({"tasks": [{"instance": sets[0][0].0, "task": 1}, {"instance": sets[0][0].0, "task": 1}]});
    let r = s
        .req("POST", "/api/tasks/batch", Some("li"), Some(twice), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = s
        .req(
            "POST",
            "/api/tasks/batch",
            Some("li"),
            Some(json!({"tasks": []})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}
