//! The workflow pages of policy staff: the list of workflows with their versions, the editor
//! (the YAML in a textarea; 校验 marks each error at its line, in a list that jumps to the line
//! and in an annotated listing; the diagram preview; 发布为新版本; the version history) and the
//! diff between two versions.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{PreEscaped, html};
use shenpi_adapters::store::{DefinitionRow, DefinitionStore, Source};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::diagram::Highlight;

use super::super::auth::{PageUser, policy};
use super::super::chrome::{Flash, datetime, fail, page};
use super::super::error::ApiError;
use super::super::form::Fields;
use super::super::state::App;
use super::super::svg;
use super::api::{DiffQuery, diff_text, publish_yaml};
use super::forms::{EditorForm, EditorQuery};

pub async fn workflows_page(State(app): State<App>, user: PageUser) -> Response {
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden("流程规则仅限政策法规人员"));
    }
    let mut rows = Vec::new();
    for id in app.catalog.workflow_ids() {
        let versions = app.db.definitions_of(&id).await.unwrap_or_default();
        let name = app
            .catalog
            .latest(&app.db, &id)
            .await
            .ok()
            .flatten()
            .map(|(_, d)| d.workflow.name.clone())
            .unwrap_or_default();
        rows.push((id, name, versions));
    }
    let body = html! {
        h1 { "流程规则" }
        p { a.button href="/workflows/editor" { "新建 / 上传规则" } }
        table.workflows {
            thead { tr { th { "编号" } th { "名称" } th { "版本" } th {} } }
            tbody { @for (id, name, versions) in &rows { tr {
                td { (id) } td { (name) }
                td { @for v in versions { span.version title={(datetime(v.published_at)) " · " (source_label(v))} { "v" (v.version) } " " } }
                td { a href={"/workflows/editor?id=" (id)} { "编辑" } " " a href={"/workflows/" (id) "/migrations"} { "迁移运行中的项目" } " " a href={"/workflows/" (id) "/whatif"} { "政策模拟" } }
            } } }
        }
    };
    page("流程规则", Some(&user), None, body).into_response()
}

struct EditorState<'a> {
    id: Option<String>,
    yaml: &'a str,
    diagnostics: Vec<Diagnostic>,
    preview: Option<String>,
}

async fn editor_view(
    app: &App,
    user: &PageUser,
    s: EditorState<'_>,
    flash: Option<&Flash>,
) -> Html<String> {
    let versions = match &s.id {
        Some(id) => app.db.definitions_of(id).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let error_lines: HashMap<u32, Vec<&Diagnostic>> =
        s.diagnostics.iter().fold(HashMap::new(), |mut m, d| {
            m.entry(d.line).or_default().push(d);
            m
        });
    let body = html! {
        h1 { "流程规则编辑" @if let Some(id) = &s.id { " · " (id) } }
        @if let Some(k) = s.id.as_deref().and_then(|id| app.catalog.kept_newer(id)) {
            p.notice id="kept-newer" { (k.chinese()) }
        }
        form method="post" action="/workflows/editor" id="editor" {
            input type="hidden" name="csrf" value=(user.csrf);
            @if let Some(id) = &s.id { input type="hidden" name="id" value=(id); }
            div.editor {
                textarea name="yaml" id="yaml" rows="30" cols="100" spellcheck="false" { (s.yaml) }
            }
            div.buttons {
                button type="submit" name="op" value="validate" id="btn-validate" { "校验" }
                @if policy::can_publish(&user.user) { button type="submit" name="op" value="publish" id="btn-publish" { "发布为新版本" } }
                @if let Some(id) = &s.id { button type="submit" formaction={"/workflows/" (id) "/whatif"} id="btn-whatif" title="用编辑框中的文本与现行版本对比模拟" { "政策模拟" } }
            }
        }
        @if !s.diagnostics.is_empty() {
            section.diagnostics {
                h2 { "校验结果：" (s.diagnostics.iter().filter(|d| d.is_error()).count()) " 个错误" }
                ul id="diagnostics" { @for d in &s.diagnostics {
                    li class={"diag " (if d.is_error() { "error" } else { "warning" })} data-line=(d.line) data-col=(d.col) {
                        a href="#" class="goto" { "第 " (d.line) " 行，第 " (d.col) " 列" } " "
                        code { (d.code) } " "
                        @if let Some(t) = super::super::refusals::diagnostic_title_zh(d.code) { strong { (t) } "：" }
                        (d.message)
                        @if let Some(h) = &d.help { br; small { "提示：" (h) } }
                    }
                } }
                h3 { "标注" }
                pre.listing { @for (i, line) in s.yaml.lines().enumerate() {
                    @let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    @if let Some(ds) = error_lines.get(&n) {
                        span.line.err id={"L" (n)} data-line=(n) { span.ln { (n) } (line) }
                        @for d in ds { span.marker { span.ln { "" } (" ".repeat(d.col.saturating_sub(1) as usize)) "^ " (d.code) " " (d.message) } }
                    } @else if error_lines.keys().any(|e| e.abs_diff(n) <= 2) {
                        span.line id={"L" (n)} { span.ln { (n) } (line) }
                    }
                } }
            }
        }
        @if let Some(svg) = &s.preview { section { h2 { "流程图预览" } div.diagram { (PreEscaped(svg)) } } }
        @if !versions.is_empty() {
            section {
                h2 { "版本历史" }
                table.versions { thead { tr { th { "版本" } th { "发布时间" } th { "来源" } th { "哈希（SHA-256）" } th { "与上一版差异" } } }
                    tbody { @for d in &versions { @let v = d.version; tr {
                        td { "v" (v) } td { (datetime(d.published_at)) } td { (source_label(d)) } td { code title=(d.hash) { (d.hash.get(..12).unwrap_or(&d.hash)) } }
                        td { @if v > 1 { @if let Some(id) = &s.id { a href={"/workflows/" (id) "/diff?from=" (v - 1) "&to=" (v)} { "v" (v - 1) " → v" (v) } } } }
                    } } }
                }
            }
        }
    };
    page("流程规则编辑", Some(user), flash, body)
}

pub async fn editor_page(
    State(app): State<App>,
    user: PageUser,
    Query(q): Query<EditorQuery>,
) -> Response {
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden("流程规则仅限政策法规人员"));
    }
    let id = q.id;
    let (yaml, preview) = match &id {
        Some(id) => match app.db.latest_definition(id).await {
            Ok(Some(row)) => {
                let preview = app
                    .catalog
                    .latest(&app.db, id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(_, d)| svg::render(&d, &Highlight::NONE));
                (row.yaml, preview)
            }
            _ => return fail(&user, ApiError::not_found("没有该流程")),
        },
        None => (String::new(), None),
    };
    editor_view(
        &app,
        &user,
        EditorState {
            id,
            yaml: &yaml,
            diagnostics: Vec::new(),
            preview,
        },
        None,
    )
    .await
    .into_response()
}

/// 校验 or 发布为新版本: the editor again, with the located problems, or with the check passed
/// (and the warnings) and the version published.
pub async fn editor_submit(State(app): State<App>, user: PageUser, body: Bytes) -> Response {
    let f: EditorForm = match Fields::typed(&user, &body) {
        Ok(f) => f,
        Err(page) => return page,
    };
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden("流程规则仅限政策法规人员"));
    }
    let yaml = f.yaml();
    let publish = f.publishes();
    if publish && !policy::can_publish(&user.user) {
        return fail(&user, ApiError::forbidden("只有政策法规人员可以发布"));
    }
    let def = match app.catalog.check(&yaml) {
        Ok(def) => def,
        Err(diags) => {
            let flash = Flash {
                ok: false,
                text: format!("校验未通过：{} 个问题", diags.len()),
                code: None,
            };
            let v = editor_view(
                &app,
                &user,
                EditorState {
                    id: f.id,
                    yaml: &yaml,
                    diagnostics: diags,
                    preview: None,
                },
                Some(&flash),
            )
            .await;
            return (StatusCode::UNPROCESSABLE_ENTITY, v).into_response();
        }
    };
    let text = if publish {
        match publish_yaml(
            &app,
            &user.user,
            user.remote.clone(),
            &yaml,
            Source::Editor(&user.user.name),
        )
        .await
        {
            Ok(p) => format!(
                "已发布 {} v{}（运行中的实例保持原版本，可在「迁移运行中的项目」中迁移）",
                p.workflow_id, p.version
            ),
            Err(e) => return fail(&user, e),
        }
    } else {
        "校验通过，可以发布".to_string()
    };
    editor_view(
        &app,
        &user,
        EditorState {
            id: Some(def.id().to_string()),
            yaml: &yaml,
            diagnostics: shenpi_engine::validate::validate(&def.workflow, app.catalog.ctx()),
            preview: Some(svg::render(&def, &Highlight::NONE)),
        },
        Some(&Flash {
            ok: true,
            text,
            code: None,
        }),
    )
    .await
    .into_response()
}

pub async fn diff_page(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Response {
    let text = match diff_text(&app, &id, q.from, q.to).await {
        Ok(t) => t,
        Err(e) => return fail(&user, e),
    };
    let body = html! {
        p.crumbs { a href="/workflows" { "流程规则" } " › " a href={"/workflows/editor?id=" (id)} { (id) } }
        h1 { (id) " v" (q.from) " → v" (q.to) }
        pre.diff { @for line in text.lines() {
            @let cls = if line.starts_with("+++") || line.starts_with("---") { "hdr" } else if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" } else if line.starts_with("@@") { "hunk" } else { "ctx" };
            span class=(cls) { (line) "\n" }
        } }
    };
    page("版本差异", Some(&user), None, body).into_response()
}

/// Where a version came from, for people: 「文件 provincial-major.yaml」, 「编辑器 · wang」,
/// 「接口 · wang」, or 「未记录」 for versions published before sources were recorded.
pub fn source_label(d: &DefinitionRow) -> String {
    let by = d.published_by.as_deref().unwrap_or("");
    match d.source.as_deref() {
        Some("file") => format!("文件 {}", d.source_path.as_deref().unwrap_or("")),
        Some("editor") => format!("编辑器 · {by}"),
        Some("api") => format!("接口 · {by}"),
        _ => "未记录".to_string(),
    }
}
