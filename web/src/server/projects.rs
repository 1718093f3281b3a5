//! Projects (项目): registering one (API and the new-project form generated from the workflow's
//! fields, which also starts its first instance), listing and searching them, reading one.
//! Applicants see only their own projects; who sees what is `auth::policy`'s.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::html;
use serde::Deserialize;
use shenpi_engine::compile::Definition;
use shenpi_engine::model::FieldType;
use utoipa::{IntoParams, ToSchema};

use super::accounts::{Project, User, random_hex};
use super::auth::{Caller, PageUser, policy};
use super::chrome::{fail, page};
use super::commands::{page_caller, user_key};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract;
use super::form::{self, Fields, FormError};
use super::instances::{self, StartRequest};
use super::routes::{Routes, operation};
use super::state::App;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(list_projects))
        .api(operation!(create_project))
        .api(operation!(get_project))
        .page("/projects", get(projects_page).post(project_create))
}

// ---------- API ----------

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProject {
    pub name: String,
    /// The workflow the project will run on.
    pub workflow_id: String,
    /// Field values, as the workflow declares them (`tier`, `investment` ...).
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
}

/// Register a project (applicants, service officers).
#[utoipa::path(post, path = "/api/projects", request_body = NewProject, tag = "projects",
    responses((status = 201, body = Project), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_project(
    State(app): State<App>,
    caller: Caller,
    extract::Json(req): extract::Json<NewProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let p = register(&app, &caller, req).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// Registers a project in the caller's name (`POST /api/projects`).
pub async fn register(app: &App, caller: &Caller, req: NewProject) -> ApiResult<Project> {
    let p = checked_project(app, caller, req).await?;
    app.accounts
        .create_project(&p)
        .await
        .map_err(ApiError::internal)?;
    audit_registered(app, caller, &p).await;
    Ok(p)
}

async fn audit_registered(app: &App, caller: &Caller, p: &Project) {
    app.audit(
        &caller.user.name,
        caller.remote.clone(),
        "create_project",
        None,
        &p.id,
    )
    .await;
}

/// A new project in the caller's name, checked (the caller may register, the name, the
/// fields, the workflow exists and its task roles are held), not yet written: the API writes
/// it at once, the new-project form with its first instance.
async fn checked_project(app: &App, caller: &Caller, req: NewProject) -> ApiResult<Project> {
    if !policy::can_start(&caller.user) {
        return Err(ApiError::forbidden("只有项目单位和帮办专员可以登记项目。")
            .in_english("only applicants and service officers register projects"));
    }
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("项目名称须为 1 至 200 个字符。")
            .in_english("`name` must be 1 to 200 characters")
            .with_details(serde_json::json!({ "field": "name" })));
    }
    if !req.fields.is_object() {
        return Err(ApiError::invalid("项目信息（fields）须是 JSON 对象。")
            .in_english("`fields` must be a JSON object")
            .with_details(serde_json::json!({ "field": "fields" })));
    }
    let Some((_, def)) = app.catalog.latest(&app.db, &req.workflow_id).await? else {
        return Err(
            ApiError::invalid(format!("没有流程「{}」。", req.workflow_id))
                .in_english(format!("unknown workflow `{}`", req.workflow_id)),
        );
    };
    super::start::check_startable(app, &def).await?;
    let mut fields = req.fields.clone();
    // The project's name is also its `name` field when the workflow declares one.
    if def.workflow.fields.iter().any(|f| f.id.value == "name")
        && let Some(o) = fields.as_object_mut()
    {
        o.entry("name").or_insert_with(|| name.into());
    }
    let p = Project {
        id: format!("P{}", &random_hex(5).map_err(ApiError::internal)?),
        name: name.to_string(),
        workflow_id: req.workflow_id,
        owner: caller.user.name.clone(),
        fields,
        created_at: app.now(),
        instances: Vec::new(),
    };
    Ok(p)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Search in name and id.
    pub q: Option<String>,
    pub limit: Option<i64>,
}

/// List or search projects; applicants see only their own.
#[utoipa::path(get, path = "/api/projects", params(ProjectQuery), tag = "projects",
    responses((status = 200, body = [Project]), (status = 401, body = ErrorBody)))]
pub async fn list_projects(
    State(app): State<App>,
    caller: Caller,
    extract::Query(q): extract::Query<ProjectQuery>,
) -> ApiResult<Json<Vec<Project>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        visible(&app, &caller.user, q.q.as_deref(), limit).await?,
    ))
}

/// The projects `user` may see, matching `search` (in name and id) when it is not empty.
pub async fn visible(
    app: &App,
    user: &User,
    search: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<Project>> {
    let owner = (!user.is_staff()).then_some(user.name.as_str());
    let list = app
        .accounts
        .projects(owner, search.filter(|s| !s.is_empty()), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(list
        .into_iter()
        .filter(|p| policy::can_see_project(user, p))
        .collect())
}

/// The refusal of a project (or its instance) the user may not see.
pub fn not_your_project() -> ApiError {
    ApiError::forbidden("这不是您的项目，无权查看。").in_english("not your project")
}

/// A project the user may see, or why not.
pub async fn project_for(app: &App, user: &User, id: &str) -> ApiResult<Project> {
    let p = app
        .accounts
        .project(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!("没有编号为 {id} 的项目。"))
                .in_english(format!("no project `{id}`"))
        })?;
    if !policy::can_see_project(user, &p) {
        return Err(not_your_project());
    }
    Ok(p)
}

/// One project with its instances.
#[utoipa::path(get, path = "/api/projects/{id}", params(("id" = String, Path, description = "the project")), tag = "projects",
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(app): State<App>,
    caller: Caller,
    extract::Path(id): extract::Path<String>,
) -> ApiResult<Json<Project>> {
    Ok(Json(project_for(&app, &caller.user, &id).await?))
}

// ---------- pages ----------

/// The projects page's search, and the workflow chosen for a new project.
#[derive(Debug, Deserialize)]
struct PageQuery {
    q: Option<String>,
    workflow: Option<String>,
}

async fn projects_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<PageQuery>,
) -> Response {
    let list = match visible(&app, &user.user, q.q.as_deref(), 200).await {
        Ok(l) => l,
        Err(e) => return fail(&user, e),
    };
    let wf = q.workflow.clone();
    let def = match &wf {
        Some(w) => app.catalog.latest(&app.db, w).await.ok().flatten(),
        None => None,
    };
    let names = super::names::Everywhere::of(&app.machine);
    let users = app.accounts.users().await.unwrap_or_default();
    let body = html! {
        h1 { "项目" }
        form.filters method="get" { label { "搜索 " input name="q" value=(q.q.clone().unwrap_or_default()) placeholder="项目名称或编号"; } button { "搜索" } }
        div.table-wrap.cards {
        table.projects {
            thead { tr { th { "项目" } th { "流程" } th { "申报单位" } th { "办理" } } }
            tbody { @for p in &list { tr {
                td data-label="项目" { (p.name) br; small.muted { (p.id) } }
                td data-label="流程" { (names.workflow(&p.workflow_id)) }
                td data-label="申报单位" {
                    (p.applicant())
                    @if p.applicant() != p.owner { br; small.muted { "账号 " (p.owner) } }
                }
                td data-label="办理" { @for (n, i) in p.instances.iter().enumerate() { a href={"/instances/" (i)} { @if p.instances.len() > 1 { "第 " (n + 1) " 次申报" } @else { "查看进度" } } " " } }
            } } }
        }
        }
        @if policy::can_start(&user.user) {
            h2 { "新项目申报" }
            form method="get" action="/projects" {
                label { "流程 " select name="workflow" { @for (id, name) in names.workflows() { option value=(id) selected[wf.as_deref() == Some(id.as_str())] { (name) } } } }
                button { "选择" }
            }
            @if let Some((_, d)) = &def {
                form method="post" action="/projects" class="newproject" {
                    (form::hidden(&user))
                    input type="hidden" name="workflow" value=(d.id());
                    label { "项目名称 " input name="name" required size="40"; }
                    @for fd in &d.workflow.fields {
                        @if fd.id.value != "name" {
                            label {
                                (fd.label.clone().unwrap_or_else(|| fd.id.value.clone())) @if fd.required { " *" } " "
                                @if !fd.values.is_empty() {
                                    select name={"f." (fd.id.value)} { option value="" { "—" } @for v in &fd.values { option value=(v.value) { (v.value) } } }
                                } @else if matches!(fd.ty.value, FieldType::Bool) {
                                    select name={"f." (fd.id.value)} { option value="" { "—" } option value="true" { "是" } option value="false" { "否" } }
                                } @else if matches!(fd.ty.value, FieldType::User) {
                                    // A user is picked among the accounts, not typed.
                                    select name={"f." (fd.id.value)} {
                                        option value="" { "—" }
                                        @for u in users.iter().filter(|u| u.has("service_officer") || fd.id.value != "service_officer") {
                                            option value=(u.name) { (u.name) @if let Some(dn) = u.department.as_deref() { "（" (names.department(dn)) "）" } }
                                        }
                                    }
                                } @else if matches!(fd.ty.value, FieldType::Number | FieldType::Int) {
                                    input name={"f." (fd.id.value)} type="number" step="any" size="12";
                                } @else {
                                    input name={"f." (fd.id.value)} size="20";
                                }
                            }
                        }
                    }
                    button type="submit" { "提交申报" }
                }
            }
        }
    };
    page("项目", Some(&user), None, body).into_response()
}

/// What the new-project form posts: the workflow, the name, and one `f.FIELD` per field the
/// workflow declares.
#[derive(Debug, Deserialize)]
struct ProjectForm {
    #[serde(default, deserialize_with = "form::text")]
    workflow: Option<String>,
    #[serde(default, deserialize_with = "form::text")]
    name: Option<String>,
    /// Everything else the form sent, the `f.FIELD` values among it.
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

impl ProjectForm {
    /// The workflow's field values, typed as the workflow declares them; empty ones are left out.
    fn fields(&self, def: &Definition) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        let name = self.name.clone().unwrap_or_default();
        if def.workflow.fields.iter().any(|x| x.id.value == "name") {
            fields.insert("name".into(), name.into());
        }
        for fd in &def.workflow.fields {
            let Some(v) = self
                .rest
                .get(&format!("f.{}", fd.id.value))
                .and_then(first_text)
            else {
                continue;
            };
            let value = form::typed_value(fd.ty.value, &v);
            fields.insert(fd.id.value.clone(), value);
        }
        fields
    }
}

/// The first value of a form field, trimmed; `None` when empty.
fn first_text(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::Array(a) => a.first()?.as_str()?,
        other => other.as_str()?,
    };
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Registers the project and starts its instance, then shows the instance.
async fn project_create(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    let posted = match Fields::checked(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let f: ProjectForm = match posted.parse() {
        Ok(f) => f,
        Err(e) => return fail(&user, e.into()),
    };
    let Some(workflow) = f.workflow.clone() else {
        return fail(&user, FormError::new("workflow", "请选择流程").into());
    };
    let Ok(Some((_, def))) = app.catalog.latest(&app.db, &workflow).await else {
        return fail(&user, FormError::new("workflow", "未知流程").into());
    };
    // Refused as the API refuses (a workflow whose task roles no one holds included); the
    // project is written with its instance, in the start's transaction, or not at all.
    let c = page_caller(&user);
    let req = NewProject {
        name: f.name.clone().unwrap_or_default(),
        workflow_id: workflow,
        fields: serde_json::Value::Object(f.fields(&def)),
    };
    let p = match checked_project(&app, &c, req).await {
        Ok(p) => p,
        Err(e) => return fail(&user, e),
    };
    // The form's key makes a resubmitted form start one instance, as the API's header does.
    let key = match posted
        .idem()
        .map(|k| user_key(&c.user.name, &k))
        .transpose()
    {
        Ok(k) => k,
        Err(e) => return fail(&user, e),
    };
    let start = StartRequest {
        project_id: p.id.clone(),
        version: None,
        channel: None,
    };
    match instances::start(&app, &c, key, start, Some(p.clone())).await {
        Ok(r) => {
            if !r.replayed {
                audit_registered(&app, &c, &p).await;
            }
            Redirect::to(&format!("/instances/{}?done=start", r.instance)).into_response()
        }
        Err(e) => fail(&user, e),
    }
}
