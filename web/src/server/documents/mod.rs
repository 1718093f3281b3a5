//! Official documents (公文): 预批复, 批复, 备案证明, 不予许可决定书, 撤销决定. The list of an
//! instance's documents and each one's PDF (the API and the instance page, with exactly the
//! instance's read rights, every download in the audit trail), and the public verification
//! page `/verify/{code}` that the QR code on each PDF opens.
//!
//! Which documents an instance calls for is the engine's (`engine::documents::due`); issuing
//! them (number, date, text, digest) is [`issue`]'s pass; the numbering transaction is the
//! store's (`shenpi_adapters::store::documents`). A PDF is made from the stored text at each
//! download by [`pdf::render`], the one PDF renderer (the dossier's PDF can use it too): the
//! stored text and its digest are the record, the PDF its printed form.

pub mod issue;
pub mod pdf;

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Serialize;
use shenpi_adapters::store::DocumentStore;
use shenpi_adapters::store::documents::DocumentRow;
use utoipa::ToSchema;

use super::auth::{Caller, policy};
use super::chrome::{self, date_zh};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Path;
use super::routes::{Routes, operation};
use super::state::App;
use pdf::{Align, Block, PdfError, PdfFont, PdfMeta};

/// Where Debian's `fonts-wqy-microhei` puts its font (a collection; face 0 is 文泉驿微米黑).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

/// How the server makes PDFs: the CJK font to embed (`serve --document-font`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub font_path: PathBuf,
    /// The face of a font collection (`.ttc`); 0 for a single font.
    pub font_index: u32,
    font: OnceLock<Result<PdfFont, String>>,
}

impl Settings {
    pub fn new(font_path: PathBuf, font_index: u32) -> Settings {
        Settings {
            font_path,
            font_index,
            font: OnceLock::new(),
        }
    }

    /// The font, read once (a missing one is said at each PDF asked for, and at start).
    pub fn font(&self) -> Result<&PdfFont, ApiError> {
        let loaded = self.font.get_or_init(|| {
            PdfFont::load(&self.font_path, self.font_index).map_err(|e| e.to_string())
        });
        loaded.as_ref().map_err(|msg| {
            let code = if std::fs::metadata(&self.font_path).is_ok() {
                "document_font_unusable"
            } else {
                "document_font_missing"
            };
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, msg.clone())
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::new(PathBuf::from(DEFAULT_FONT), 0)
    }
}

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(list_documents))
        .api(operation!(document_pdf))
        .page("/verify/{code}", axum::routing::get(verify_page))
}

/// One official document of an instance, as the API lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentEntry {
    pub id: String,
    /// `pre_approval`, `approval`, `filing`, `refusal`, `revocation`.
    pub kind: String,
    pub title: String,
    /// The 文号.
    pub number: String,
    /// The issuing authority.
    pub issuer: String,
    /// When it was issued (ms since the epoch) and that date in Chinese.
    pub issued_at: i64,
    pub date: String,
    pub outcome: String,
    /// The code of its public verification page, `/verify/{code}`.
    pub verify_code: String,
    /// SHA-256 of its canonical content (what the verification page and the PDF show).
    pub sha256: String,
    /// When it was revoked (ms), and the 撤销决定's number.
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// The PDF.
    pub pdf: String,
}

/// An instance's documents, in the order they were issued (for the instance page, the API and
/// the dossier). The caller checks the read rights.
pub async fn documents_of(app: &App, instance: &str) -> ApiResult<Vec<DocumentRow>> {
    app.db
        .documents_of(instance)
        .await
        .map_err(ApiError::internal)
}

fn entry(d: &DocumentRow, all: &[DocumentRow]) -> DocumentEntry {
    DocumentEntry {
        id: d.id.clone(),
        kind: d.kind.clone(),
        title: d.title.clone(),
        number: d.number.clone(),
        issuer: d.issuer.clone(),
        issued_at: d.issued_at,
        date: date_zh(d.issued_at),
        outcome: d.outcome.clone(),
        verify_code: d.verify_code.clone(),
        sha256: d.sha256.clone(),
        revoked_at: d.revoked_at,
        revoked_by: d
            .revoked_by
            .as_ref()
            .and_then(|id| all.iter().find(|x| x.id == *id))
            .map(|x| x.number.clone()),
        pdf: format!("/api/instances/{}/documents/{}/pdf", d.instance, d.id),
    }
}

/// The documents of an instance the caller may read, refused as the instance page refuses.
async fn readable(app: &App, caller: &Caller, id: &str) -> ApiResult<Vec<DocumentRow>> {
    let Some((_, _, _, ctx)) = app.instance(id).await? else {
        return Err(ApiError::not_found(format!("没有编号为「{id}」的办件。")));
    };
    let project = app
        .accounts
        .project_of(id)
        .await
        .map_err(ApiError::internal)?;
    if !policy::can_read_instance(&caller.user, project.as_ref(), &ctx.def) {
        return Err(ApiError::forbidden("无权查看本项目的公文。"));
    }
    documents_of(app, id).await
}

/// The official documents issued for an instance (批复, 备案证明, 预批复 …), oldest first.
#[utoipa::path(get, path = "/api/instances/{id}/documents", tag = "documents",
    params(("id" = String, Path, description = "the instance")),
    responses((status = 200, body = Vec<DocumentEntry>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_documents(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<DocumentEntry>>> {
    let docs = readable(&app, &caller, &id).await?;
    Ok(Json(docs.iter().map(|d| entry(d, &docs)).collect()))
}

/// One official document as PDF (Chinese text with an embedded font, the 文号, the date, the
/// verification code and its QR code).
#[utoipa::path(get, path = "/api/instances/{id}/documents/{doc}/pdf", tag = "documents",
    params(("id" = String, Path, description = "the instance"), ("doc" = String, Path, description = "the document's id, as the list gives it")),
    responses((status = 200, description = "the PDF", content_type = "application/pdf"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "`document_font_missing`: the CJK font is not installed")))]
pub async fn document_pdf(
    State(app): State<App>,
    caller: Caller,
    Path((id, doc)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let res = async {
        let docs = readable(&app, &caller, &id).await?;
        let d = docs
            .iter()
            .find(|d| d.id == doc)
            .ok_or_else(|| ApiError::not_found("本办件没有这份公文。"))?;
        let base = public_base(&app, &headers);
        let bytes = pdf_of(&app, d, &docs, &base)?;
        Ok::<_, ApiError>((d.number.clone(), d.title.clone(), bytes))
    }
    .await;
    let outcome = match &res {
        Ok((number, _, _)) => format!("ok {doc} {number}"),
        Err(e) => e.body.error.clone(),
    };
    app.audit(
        &caller.user.name,
        caller.remote.clone(),
        "download_document",
        Some(&id),
        &outcome,
    )
    .await;
    let (number, title, bytes) = res?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    let name = format!("{title}{number}.pdf");
    if let Ok(v) = HeaderValue::from_str(&super::files::disposition(true, &name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}

/// The address the QR code points at: `serve --public-url`, else the host the request came to.
fn public_base(app: &App, headers: &HeaderMap) -> String {
    let configured = app.public_url.lock().map(|u| u.clone()).unwrap_or_default();
    match configured {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

/// The blocks of an official document, laid out as one: the issuing authority in red over a
/// red rule (红头), the 文号, the title, the body, the authority and date at the right, and the
/// verification code, its QR code and the content's digest at the foot.
pub fn blocks(d: &DocumentRow, all: &[DocumentRow], verify_url: &str) -> Vec<Block> {
    let mut out = vec![
        Block::Text {
            text: d.issuer.clone(),
            size: 26.0,
            align: Align::Center,
            red: true,
            indent: false,
        },
        Block::Gap(6.0),
        Block::Rule,
        Block::line(d.number.clone(), 14.0, Align::Center),
        Block::Gap(10.0),
        Block::line(d.title.clone(), 22.0, Align::Center),
        Block::Gap(10.0),
        Block::body(d.body.clone()),
        Block::Gap(24.0),
        Block::line(d.issuer.clone(), 15.0, Align::Right),
        Block::line(date_zh(d.issued_at), 15.0, Align::Right),
        Block::Gap(24.0),
    ];
    let mut caption = vec![
        format!("核验码：{}", d.verify_code),
        "扫描右侧二维码或访问以下地址核验本文件真伪：".to_string(),
        verify_url.to_string(),
        format!(
            "内容摘要（SHA-256）：{}",
            &d.sha256[..32.min(d.sha256.len())]
        ),
        format!("{}", &d.sha256[32.min(d.sha256.len())..]),
    ];
    if let Some(by) = d
        .revoked_by
        .as_ref()
        .and_then(|id| all.iter().find(|x| x.id == *id))
    {
        caption.push(format!("本文件已被{}（{}）撤销。", by.title, by.number));
    } else if d.revoked_at.is_some() {
        caption.push("本文件已撤销。".to_string());
    }
    out.push(Block::Qr {
        content: verify_url.to_string(),
        size: 96.0,
        caption,
    });
    out
}

fn pdf_of(app: &App, d: &DocumentRow, all: &[DocumentRow], base: &str) -> ApiResult<Vec<u8>> {
    let font = app.documents.font()?;
    let url = format!("{base}/verify/{}", d.verify_code);
    let meta = PdfMeta {
        title: format!("{} {}", d.title, d.number),
        author: d.issuer.clone(),
    };
    pdf::render(font, &meta, &blocks(d, all, &url)).map_err(|e: PdfError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string())
    })
}

/// The instance page's list of documents, each with its PDF and verification page.
pub fn list_block(docs: &[DocumentRow]) -> maud::Markup {
    html! {
        @if docs.is_empty() { p.empty { "尚未出具公文。" } } @else {
            div.table-wrap { table.documents {
                thead { tr { th { "公文" } th { "文号" } th { "发文机关" } th { "日期" } th { "状态" } th { "核验" } } }
                tbody {
                    @for d in docs {
                        tr {
                            td { a href={"/api/instances/" (d.instance) "/documents/" (d.id) "/pdf"} target="_blank" rel="noopener" { (d.title) } " · " a href={"/api/instances/" (d.instance) "/documents/" (d.id) "/pdf"} download { "下载 PDF" } }
                            td { (d.number) }
                            td { (d.issuer) }
                            td { (date_zh(d.issued_at)) }
                            td { @if d.revoked_at.is_some() { span.warn { "已撤销" } } @else { "有效" } }
                            td { a href={"/verify/" (d.verify_code)} { (d.verify_code) } }
                        }
                    }
                }
            } }
        }
    }
}

/// The public verification page of a document (no login): its number, project, date, outcome
/// and digest, and whether it was revoked since. An unknown code says only that it is unknown.
pub async fn verify_page(State(app): State<App>, Path(code): Path<String>) -> Response {
    let well_formed = code.len() == 20 && code.chars().all(|c| c.is_ascii_alphanumeric());
    let found = if well_formed {
        match app.db.document_by_code(&code).await {
            Ok(d) => d,
            Err(e) => {
                return chrome::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    &ApiError::internal(e),
                );
            }
        }
    } else {
        None
    };
    let Some(d) = found else {
        let e = ApiError::not_found(
            "未找到该核验码对应的公文：请核对核验码是否完整、正确。本页面不提供其他公文的任何信息。",
        );
        let body = html! {
            h1 { "公文核验：未找到" }
            p.warn { (e.body.message) }
        };
        let mut resp = chrome::page("公文核验：未找到", None, None, body).into_response();
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    let revoker = match &d.revoked_by {
        Some(id) => app
            .db
            .documents_of(&d.instance)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|x| x.id == *id)),
        None => None,
    };
    let body = html! {
        h1 { "公文核验" }
        @if d.revoked_at.is_some() {
            p.warn.revoked { strong { "已撤销" } "：本文件已于 " (date_zh(d.revoked_at.unwrap_or(d.issued_at))) " 撤销"
                @if let Some(r) = &revoker { "，见" (r.title) "（" (r.number) "）" } "。" }
        } @else {
            p.ok.valid { strong { "有效" } "：本文件由本平台出具，内容与记录一致。" }
        }
        table.facts { tbody {
            tr { th { "公文" } td { (d.title) } }
            tr { th { "文号" } td.number { (d.number) } }
            tr { th { "发文机关" } td { (d.issuer) } }
            tr { th { "项目" } td.project { (d.project) } }
            tr { th { "日期" } td.date { (date_zh(d.issued_at)) } }
            tr { th { "结果" } td.outcome { (d.outcome) } }
            tr { th { "状态" } td { @if d.revoked_at.is_some() { "已撤销" } @else { "有效" } } }
            tr { th { "内容摘要（SHA-256）" } td { code.hash { (d.sha256) } } }
            @if let Some(head) = &d.chain_head {
                tr { th { "出具时办理记录的链头哈希" } td { code.hash { (head) } } }
            }
        } }
        p.note { "核验时请比对纸质或电子文件上的文号、日期与内容摘要是否与本页一致。" }
    };
    chrome::page("公文核验", None, None, body).into_response()
}
