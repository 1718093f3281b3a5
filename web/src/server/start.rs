//! Whether a workflow can be run on this server's accounts: a task assigned to a role that no
//! user holds would wait in a pool no one sees until it breaches its limit. `serve` warns of
//! each such role at start (`unheld_roles`); registering a project (`POST /api/projects`, the
//! new-project form) and starting an instance (`POST /api/instances`, the form's second step)
//! refuse a workflow with one, all through [`check_startable`], which names the roles as the
//! workflow names them.

use shenpi_engine::compile::Definition;
use shenpi_engine::model::Assignee;

use super::accounts::User;
use super::error::ApiError;
use super::names::WorkflowNames;
use super::state::App;

/// The roles the workflow's tasks are assigned to (nodes and the branches of parallel steps),
/// in the order they appear, once each.
pub fn task_roles(def: &Definition) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |a: &Option<Assignee>| {
        if let Some(r) = a.as_ref().and_then(|a| a.role.as_ref())
            && !out.contains(&r.value)
        {
            out.push(r.value.clone());
        }
    };
    for n in &def.workflow.nodes {
        add(&n.assignee);
        for b in &n.branches {
            add(&b.assignee);
        }
    }
    out
}

/// The task roles of `def` that none of `users` holds.
pub fn unheld(def: &Definition, users: &[User]) -> Vec<String> {
    task_roles(def)
        .into_iter()
        .filter(|r| !users.iter().any(|u| u.has(r)))
        .collect()
}

/// Refuses to start `def` while a task role has no holder: the Chinese refusal names them
/// (`roles_unheld`, 422, the role ids in `details.roles`). The one check for the API and the
/// pages alike: `projects::register` and `instances::start` call it.
pub async fn check_startable(app: &App, def: &Definition) -> Result<(), ApiError> {
    let users = app.accounts.users().await.map_err(ApiError::internal)?;
    let missing = unheld(def, &users);
    if missing.is_empty() {
        return Ok(());
    }
    let names = WorkflowNames(def);
    let listed: Vec<String> = missing
        .iter()
        .map(|r| format!("「{}」", names.role(r)))
        .collect();
    Err(ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "roles_unheld",
        format!(
            "流程「{}」暂不能申报：{}没有任何人员担任，分派给这些岗位的任务将无人办理。请联系系统管理员配置人员后再申报。",
            names.workflow(),
            listed.join("、")
        ),
    )
    .in_english(format!(
        "workflow {} cannot be applied for: no user holds {}",
        def.workflow.id.value,
        missing.join(", ")
    ))
    .with_details(serde_json::json!({ "roles": missing })))
}

/// One line per loaded workflow with task roles no user holds, for `serve` to print at start.
pub async fn unheld_roles(app: &App) -> Vec<String> {
    let Ok(users) = app.accounts.users().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in app.machine.newest() {
        let missing = unheld(&c.def, &users);
        if missing.is_empty() {
            continue;
        }
        let names = WorkflowNames(&c.def);
        let listed: Vec<String> = missing
            .iter()
            .map(|r| format!("{} ({r})", names.role(r)))
            .collect();
        out.push(format!(
            "workflow {} ({}): no user holds {}; its tasks for them would wait unseen, so \
             applications to it are refused until `shenpi user add NAME --role ROLE` gives them holders",
            names.workflow(),
            c.def.workflow.id.value,
            listed.join(", ")
        ));
    }
    out
}
