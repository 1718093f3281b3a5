//! The dossier (办件档案) of an instance, `/instances/{id}/dossier`: one page, made to be printed
//! and filed, with everything done on the instance. Project facts, the timeline with every
//! decision and opinion (who, department, when, what), the materials with their files and how
//! each was verified, the promises and how they ended, the elements by stage, and whether the
//! event hash chain is intact (`chain`, the same words as `shenpi audit verify`).
//!
//! It reads what the instance page reads ([`instances::pages::load`], with the instance's read
//! rights) and writes it with the instance page's blocks and its Chinese for events, so that the
//! two never tell a different story.

pub mod chain;

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use shenpi_adapters::store::chain::ChainReport;
use shenpi_engine::runtime::Event;
use shenpi_engine::runtime::event::OpenedTask;

use super::auth::PageUser;
use super::chrome::{datetime, day_of, fail, outcome_text, page};
use super::error::ApiError;
use super::files::size_zh;
use super::instances::pages::{Loaded, elements_block, event_text, facts, load, promises_table};
use super::names::WorkflowNames;
use super::routes::Routes;
use super::state::App;

mod pdf;

pub fn routes() -> Routes {
    Routes::new()
        .page("/instances/{id}/dossier", get(dossier_page))
        .page("/instances/{id}/dossier.pdf", get(dossier_pdf))
}

/// The task an event is about, for the department column.
fn task_of(e: &Event) -> Option<u32> {
    match e {
        Event::TaskDecided { task, .. }
        | Event::TaskClaimed { task, .. }
        | Event::TaskDelegated { task, .. }
        | Event::MaterialVerified { task, .. } => Some(task.0),
        Event::Commented { task, .. } => task.map(|t| t.0),
        Event::TaskOpened(t) => Some(t.task.0),
        _ => None,
    }
}

/// One line of the timeline: its number in the history, when, the department of the task it
/// concerns, and what happened (who, what, the opinion) as the instance page writes it.
struct Line {
    seq: i64,
    at: i64,
    department: Option<String>,
    text: String,
}

fn timeline(l: &Loaded) -> Vec<Line> {
    let names = WorkflowNames(&l.ctx.def);
    let mut opened: HashMap<u32, OpenedTask> = HashMap::new();
    let mut out = Vec::new();
    for h in &l.detail.history {
        let Ok(ev) = serde_json::from_value::<Event>(h.event.clone()) else {
            continue;
        };
        if let Event::TaskOpened(t) = &ev {
            opened.insert(t.task.0, t.clone());
        }
        let Some(text) = event_text(&ev, &l.ctx) else {
            continue;
        };
        let department = task_of(&ev)
            .and_then(|t| opened.get(&t))
            .and_then(|t| t.department.as_deref())
            .map(|d| names.department(d));
        out.push(Line {
            seq: h.seq,
            at: h.at,
            department,
            text,
        });
    }
    out
}

/// How each promise's material was verified: promise number → (accepted, by whom, when).
fn verifications(l: &Loaded) -> HashMap<u32, (bool, String, i64)> {
    l.detail
        .history
        .iter()
        .filter_map(|h| match serde_json::from_value::<Event>(h.event.clone()) {
            Ok(Event::MaterialVerified {
                promise,
                accepted,
                by,
                ..
            }) => Some((promise.0, (accepted, by.to_string(), h.at))),
            _ => None,
        })
        .collect()
}

fn chain_block(report: Option<&ChainReport>) -> Markup {
    html! {
        @match report {
            Some(r) if r.intact() => p.chain.intact data-chain="intact" {
                strong { "记录完整" } "：" (chain::report_zh(r)) "，每条事件的哈希与前一条相连，与链头一致。"
            }
            Some(r) => p.chain.broken data-chain="broken" role="alert" {
                strong { "记录被改动" } "：" (chain::report_zh(r)) "。本档案所列内容自该事件起不可信，请核查。"
            }
            None => p.chain.broken data-chain="unknown" { "未找到本实例的事件记录。" }
        }
        @if let Some(h) = report.and_then(|r| r.head.as_deref()) {
            p.muted { "链头哈希（SHA-256）：" code.hash { (h) } }
        }
    }
}

fn materials_block(l: &Loaded) -> Markup {
    let names = WorkflowNames(&l.ctx.def);
    let verified = verifications(l);
    html! {
        @if l.files.is_empty() { p.empty { "无材料文件。" } } @else {
            table.dossier-files {
                thead { tr { th { "材料" } th { "版本" } th { "文件" } th { "大小" } th { "SHA-256" } th { "上传人 · 时间" } th { "核验" } } }
                tbody { @for v in &l.files { @for f in &v.files {
                    tr {
                        td { (names.material(&v.material)) }
                        td { "第 " (v.version) " 版" }
                        td { (f.name) }
                        td { (size_zh(f.size)) }
                        td { code.hash { (f.sha256) } }
                        td { (v.by) " · " (datetime(v.at)) }
                        td { @match v.promise.and_then(|p| verified.get(&p)) {
                            Some((true, by, at)) => { "核验通过（" (by) "，" (datetime(*at)) "）" }
                            Some((false, by, at)) => { "核验不通过（" (by) "，" (datetime(*at)) "）" }
                            None if v.promise.is_some() => { "待核验" }
                            None => { "随申报/补正提交" }
                        } }
                    }
                } } }
            }
        }
    }
}

/// `GET /instances/{id}/dossier`: the dossier page, for whoever may read the instance.
pub async fn dossier_page(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
) -> Response {
    match dossier(&app, &user, &id).await {
        Ok((title, body)) => page(&title, Some(&user), None, body).into_response(),
        Err(e) => fail(&user, e),
    }
}

/// `GET /instances/{id}/dossier.pdf`: the same dossier as a PDF (the page's content, laid out
/// by the documents' PDF renderer with the CJK font), with the same read rights.
pub async fn dossier_pdf(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
) -> Response {
    let made = async {
        let (title, body) = dossier(&app, &user, &id).await?;
        let font = app.documents.font()?;
        let meta = super::documents::pdf::PdfMeta {
            title: title.clone(),
            author: "shenpi".into(),
        };
        super::documents::pdf::render(font, &meta, &pdf::blocks(&body.into_string())).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                e.code(),
                e.to_string(),
            )
        })
    }
    .await;
    app.audit(
        &user.user.name,
        None,
        "download_dossier",
        Some(&id),
        match &made {
            Ok(_) => "ok",
            Err(e) => e.body.error.as_str(),
        },
    )
    .await;
    match made {
        Ok(bytes) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/pdf".to_string(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"dossier-{id}.pdf\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => fail(&user, e),
    }
}

/// The dossier's title and body, for the page and the PDF.
async fn dossier(app: &App, user: &PageUser, id: &str) -> Result<(String, Markup), ApiError> {
    let id = id.to_string();
    let l = load(app, &user.user, &id).await?;
    let report = app.db.verify_chain(&id).await.map_err(ApiError::internal)?;
    let broken_seq = report
        .as_ref()
        .and_then(|r| r.broken.as_ref())
        .map(|b| b.seq);
    let project = l
        .detail
        .project
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.clone());
    let title = format!("办件档案：{project}");
    let lines = timeline(&l);
    let docs = super::documents::documents_of(app, &id).await?;
    let letters = super::letters::instance_letters(&l.ctx, &l.st, &user.user, app.now());
    let body = html! {
        div.dossier {
            p.no-print {
                a href={"/instances/" (id)} { "← 返回办件" } " "
                button type="button" data-print { "打印" } " "
                a href={"/instances/" (id) "/dossier.pdf"} { "下载 PDF" }
            }
            h1 { (title) }
            table.facts.dossier-head {
                tr { th { "办件编号" } td { (id) } }
                tr { th { "流程" } td { (l.ctx.def.workflow.name) "（第 " (l.detail.def_version) " 版）" } }
                tr { th { "办理状态" } td { (outcome_text(&l.view.outcome)) } }
                tr { th { "档案生成日期" } td { (day_of(app.now())) } }
            }
            section.dossier-chain { h2 { "记录完整性" } (chain_block(report.as_ref())) }
            section { h2 { "项目信息" } (facts(&l)) }
            section.dossier-timeline {
                h2 { "办理历程与意见" }
                // On a phone each event is a card (a four-column table left one character a
                // line for the department); printed or wide, the table.
                div.table-wrap.cards { table.timeline {
                    thead { tr { th { "序号" } th { "时间" } th { "部门" } th { "经办与意见" } } }
                    tbody { @for line in &lines {
                        tr id={"e" (line.seq)} class=[(broken_seq == Some(line.seq)).then_some("broken")] {
                            td data-label="序号" { (line.seq) } td data-label="时间" { (datetime(line.at)) }
                            td data-label=[line.department.as_ref().map(|_| "部门")] { (line.department.clone().unwrap_or_default()) }
                            td data-label="经办与意见" { (line.text) }
                        }
                    } }
                } }
            }
            section { h2 { "材料与核验" } (materials_block(&l)) }
            section { h2 { "容缺承诺及履行" } (promises_table(&l)) }
            (super::letters::letters_block(user, &id, &letters))
            section { h2 { "要素（按阶段）" } (elements_block(&l)) }
            section.dossier-documents { h2 { "出具的公文" } (super::documents::list_block(&docs)) }
        }
    };
    Ok((title, body))
}
