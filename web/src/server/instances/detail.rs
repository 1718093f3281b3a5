//! What an instance is, as the API answers `GET /api/instances/{id}` and as its pages read it:
//! the engine's view at now, the materials of the current node with their status, the history
//! and the audit trail.

use serde::Serialize;
use shenpi_engine::runtime::state::PromiseStatus;
use shenpi_engine::runtime::{self, InstanceState};
use utoipa::ToSchema;

use super::super::accounts::{AuditEntry, Project, User};
use super::super::auth::policy;
use super::super::engine::{EngineCtx, timestamp};
use super::super::error::{ApiError, ApiResult};
use super::super::state::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    /// When it was recorded (ms since the epoch).
    pub at: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaterialStatus {
    pub material: String,
    pub name: Option<String>,
    pub red_line: bool,
    /// `present`, `missing`, `promised`, `supplied`, `verified`, `breached`.
    pub status: String,
    /// Due date of the promise (ms), when promised.
    pub due: Option<i64>,
    pub waivable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceDetail {
    pub id: String,
    pub workflow_id: String,
    pub def_version: i64,
    /// Number of events (send as `If-Match` to act on exactly this state).
    pub version: i64,
    pub project: Option<Project>,
    /// The engine's view at now: status, open tasks with colour and working days left, steps,
    /// promises with due dates, stage and elements, outstanding items, timers.
    #[schema(value_type = Object)]
    pub view: serde_json::Value,
    /// The materials of the current task's node.
    pub materials: Vec<MaterialStatus>,
    pub history: Vec<HistoryEntry>,
    /// Who did what from where (HTTP audit trail).
    pub audit: Vec<AuditEntry>,
}

/// Materials of a node, with their status in an instance.
pub fn materials_of(ctx: &EngineCtx, st: &InstanceState, node: &str) -> Vec<MaterialStatus> {
    let Some(n) = ctx.def.node(node) else {
        return Vec::new();
    };
    let waivable: Vec<&str> = n
        .conditional
        .as_ref()
        .map(|c| c.waivable.iter().map(|w| w.value.as_str()).collect())
        .unwrap_or_default();
    let mut ids: Vec<&str> = n.materials.iter().map(|m| m.value.as_str()).collect();
    for b in &n.branches {
        ids.extend(b.materials.iter().map(|m| m.value.as_str()));
    }
    let mut out: Vec<MaterialStatus> = Vec::new();
    for id in ids {
        if out.iter().any(|m| m.material == id) {
            continue;
        }
        let def = ctx.def.workflow.materials.iter().find(|m| m.id.value == id);
        let promise = st.promises.iter().rev().find(|p| p.material == id);
        let (status, due) = match promise {
            Some(p) => {
                let due = p
                    .clock
                    .due(&ctx.cal)
                    .ok()
                    .flatten()
                    .map(|t| t.as_millisecond());
                let s = if p.breached {
                    "breached"
                } else {
                    match p.status {
                        PromiseStatus::Open => "promised",
                        PromiseStatus::Supplied => "supplied",
                        PromiseStatus::Verified => "verified",
                    }
                };
                (s, due)
            }
            None if st.supplied.iter().any(|s| s == id) => ("present", None),
            // Without a promise or a 补正 request, a step's material is taken as submitted with
            // the application; only a 容缺 makes it missing.
            None => match &st.returned {
                Some(r) if r.materials.iter().any(|m| m == id) => ("missing", None),
                _ => ("present", None),
            },
        };
        out.push(MaterialStatus {
            material: id.to_string(),
            name: def.and_then(|d| d.name.clone()),
            red_line: def.is_some_and(|d| d.red_line.value),
            status: status.to_string(),
            due,
            waivable: waivable.contains(&id),
        });
    }
    out
}

pub async fn instance_detail(app: &App, user: &User, id: &str) -> ApiResult<InstanceDetail> {
    let (row, st, events, ctx) = app.instance(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("没有编号为 {id} 的办理实例。"))
            .in_english(format!("no instance `{id}`"))
    })?;
    let project = app
        .accounts
        .project_of(id)
        .await
        .map_err(ApiError::internal)?;
    if !policy::can_read_instance(user, project.as_ref(), &ctx.def) {
        return Err(
            ApiError::forbidden("这不是您的项目，也不是您所在部门参与的流程，无权查看。")
                .in_english("not your project, nor a workflow your department takes part in"),
        );
    }
    let view = runtime::view(&ctx.def, &ctx.cal, &st, timestamp(app.now()));
    let node = view
        .tasks
        .first()
        .map(|t| t.node.to_string())
        .or_else(|| st.pre_approvals.last().map(|p| p.node.to_string()))
        .or_else(|| st.at.as_ref().map(|a| a.to_string()))
        .unwrap_or_default();
    let materials = materials_of(&ctx, &st, &node);
    let history = events
        .iter()
        .map(|(seq, at, e)| HistoryEntry {
            seq: *seq,
            at: *at,
            kind: e.kind().to_string(),
            event: serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    let audit = app
        .accounts
        .audit_of(id)
        .await
        .map_err(ApiError::internal)?;
    Ok(InstanceDetail {
        id: row.meta.id.clone(),
        workflow_id: row.meta.workflow_id.clone(),
        def_version: row.meta.def_version,
        version: row.version,
        project,
        view: serde_json::to_value(&view).unwrap_or(serde_json::Value::Null),
        materials,
        history,
        audit,
    })
}
