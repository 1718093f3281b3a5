//! Material files (材料文件): uploading one or more files for a material (the API and the
//! instance page's form), the versions of each material, and downloading or previewing a file.
//!
//! An upload is asked of the engine first, without files (a dry run of the same
//! `SupplyMaterial` through the machine the bus uses): a material the workflow does not list,
//! one nobody is waiting for, or a caller who is not the applicant side is refused before a
//! byte of the body is read, so a refused upload stores nothing. Each file is then streamed to
//! an unnamed temporary file while it is hashed and measured, recognised by its first bytes
//! (`kinds`), and stored by its SHA-256 (`shenpi_adapters::store::files`) before the command
//! that names it goes through the one command path (`commands::run_command_with`): an event
//! never names content that is not stored whole. Who supplied which file, when, under which
//! name, is the `material_supplied` event; the versions of a material are its events.
//!
//! Reading a file takes exactly the instance's read rights (`policy::can_read_instance`, as the
//! instance page), and only files the instance's own events name: a hash from elsewhere is 404.
//! Every upload and download is in the audit trail.

pub mod kinds;
mod paced;

use paced::{Part, Parts};

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shenpi_adapters::machine::Machine;
use shenpi_adapters::store::files::{CHUNK, StoredFile};
use shenpi_engine::runtime::{Command, CommandEnvelope, Event, MaterialFile};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, PageUser, policy};
use super::chrome::fail;
use super::commands::{CommandResult, idempotency_key, page_caller, run_command_with};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Path, Query};
use super::refusals::{self, Names};
use super::routes::{Routes, operation};
use super::state::App;
use kinds::FileKind;

/// Files one request may carry.
pub const MAX_FILES: usize = 20;

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(upload_files).with_layer(DefaultBodyLimit::disable()))
        .api(operation!(list_files))
        .api(operation!(get_file))
        .page(
            "/instances/{id}/materials/{material}/files",
            axum::routing::post(upload_page).layer(DefaultBodyLimit::disable()),
        )
}

/// One file of a version, as the API answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileEntry {
    /// SHA-256 of the content, lower-case hex: the file's address.
    pub sha256: String,
    pub name: String,
    pub size: u64,
}

/// One supply of a material with files: the first upload is version 1, each re-upload (after a
/// 补正, or against a promise) the next; earlier versions are kept.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileVersion {
    pub material: String,
    pub version: u32,
    /// The event that recorded it.
    pub seq: i64,
    /// When (ms since the epoch).
    pub at: i64,
    pub by: String,
    /// Supplied against a 容缺 promise (its number), rather than for a 补正.
    pub promise: Option<u32>,
    pub files: Vec<FileEntry>,
}

/// The versions of every material of an instance, from its events, oldest first.
pub fn versions(events: &[(i64, i64, Event)]) -> Vec<FileVersion> {
    let mut out: Vec<FileVersion> = Vec::new();
    for (seq, at, e) in events {
        if let Event::MaterialSupplied {
            material,
            promise,
            by,
            files,
        } = e
            && !files.is_empty()
        {
            let version = out.iter().filter(|v| v.material == *material).count() as u32 + 1;
            out.push(FileVersion {
                material: material.to_string(),
                version,
                seq: *seq,
                at: *at,
                by: by.to_string(),
                promise: promise.map(|p| p.0),
                files: files
                    .iter()
                    .map(|f| FileEntry {
                        sha256: f.sha256.to_string(),
                        name: f.name.clone(),
                        size: f.size,
                    })
                    .collect(),
            });
        }
    }
    out
}

/// What an upload answers: the command's result and the files recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResult {
    pub command: CommandResult,
    pub files: Vec<FileEntry>,
}

fn no_rights() -> ApiError {
    ApiError::forbidden("无权查看或提交本项目的材料文件。")
}

/// The instance if the caller may read it, refused as the instance page refuses.
async fn readable(
    app: &App,
    caller: &Caller,
    id: &str,
) -> ApiResult<(
    shenpi_adapters::store::InstanceRow,
    shenpi_engine::runtime::InstanceState,
    Vec<(i64, i64, Event)>,
    std::sync::Arc<super::engine::EngineCtx>,
)> {
    let Some((row, st, events, ctx)) = app.instance(id).await? else {
        return Err(ApiError::not_found(format!("没有编号为「{id}」的办件。")));
    };
    let project = app
        .accounts
        .project_of(id)
        .await
        .map_err(ApiError::internal)?;
    if !policy::can_read_instance(&caller.user, project.as_ref(), &ctx.def) {
        return Err(no_rights());
    }
    Ok((row, st, events, ctx))
}

/// The name a file keeps: its last path segment, without control characters, at most 200
/// characters.
fn clean_name(raw: Option<&str>) -> String {
    let base = raw
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>();
    let base = base.trim();
    if base.is_empty() {
        "未命名文件".to_string()
    } else {
        base.to_string()
    }
}

/// Streams one file part to a temporary file while hashing it; checks its size and kind and
/// stores it by its hash.
async fn receive(app: &App, field: &mut Part, name: &str) -> ApiResult<MaterialFile> {
    let max = app.security.max_file_bytes;
    let std_file = tempfile::tempfile().map_err(ApiError::internal)?;
    let mut temp = tokio::fs::File::from_std(std_file);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(paced::refused)? {
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!(
                    "文件「{name}」超过了每个文件 {} MB 的上限，未保存。",
                    max.div_ceil(1 << 20)
                ),
            ));
        }
        if head.len() < kinds::HEAD {
            let take = (kinds::HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        temp.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    if size == 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "file_empty",
            format!("文件「{name}」是空文件（0 字节），未保存：请选择有内容的文件。"),
        ));
    }
    let kind = kinds::sniff(&head).map_err(|what| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "file_kind_refused",
            format!(
                "文件「{name}」的内容是{what}，不是允许的材料类型（PDF、OFD、PNG、JPEG 图片、Word、Excel）；系统按文件内容而非扩展名判断，未保存。"
            ),
        )
    })?;
    temp.flush().await.map_err(ApiError::internal)?;
    temp.rewind().await.map_err(ApiError::internal)?;
    let sha256 = format!("{:x}", hasher.finalize());
    let stored = StoredFile {
        sha256: sha256.clone(),
        size: i64::try_from(size).map_err(ApiError::internal)?,
        kind: kind.code().to_string(),
        stored_at: app.now(),
    };
    app.files
        .put(&stored, &mut temp)
        .await
        .map_err(ApiError::internal)?;
    Ok(MaterialFile {
        sha256: sha256.into(),
        name: name.to_string(),
        size,
    })
}

/// An upload, for the API and the page: `csrf` is the session's token the page's form must
/// carry (in a field before the files); the API checks its own.
async fn upload(
    app: &App,
    caller: &Caller,
    id: &str,
    material: &str,
    mut mp: Parts,
    key: Option<String>,
    csrf: Option<&str>,
) -> ApiResult<(CommandResult, Vec<FileEntry>)> {
    let (row, st, _, ctx) = readable(app, caller, id).await?;
    // Ask the engine whether it would take this supply now, before reading any file.
    let dry = CommandEnvelope {
        actor: caller.user.actor(),
        command: Command::SupplyMaterial {
            material: material.into(),
            files: Vec::new(),
        },
    };
    if let Err(r) = app.machine.decide(&ctx, &row.meta, &st, &dry, app.now()) {
        return Err(refusals::refused(&r, &Names::of(&ctx.def, Some(&st))));
    }
    let mut files: Vec<MaterialFile> = Vec::new();
    let mut csrf_ok = csrf.is_none();
    while let Some(mut field) = mp.next_field().await.map_err(paced::refused)? {
        match field.name() {
            Some("csrf") => {
                let sent = field.text().await.map_err(paced::refused)?;
                csrf_ok = csrf_ok || Some(sent.as_str()) == csrf;
            }
            Some("file") | Some("files") => {
                if !csrf_ok {
                    return Err(ApiError::forbidden(
                        "表单已过期（CSRF 令牌不正确）：请刷新页面后重新上传。",
                    ));
                }
                if field.file_name().is_some_and(str::is_empty) {
                    // A form submitted with no file chosen sends an empty, nameless part.
                    continue;
                }
                if files.len() == MAX_FILES {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "too_many_files",
                        format!("一次最多上传 {MAX_FILES} 个文件。"),
                    ));
                }
                let name = clean_name(field.file_name());
                files.push(receive(app, &mut field, &name).await?);
            }
            _ => {}
        }
    }
    if files.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_file",
            "没有收到文件：请在 `file` 字段中选择至少一个文件上传。",
        ));
    }
    let entries = files
        .iter()
        .map(|f| FileEntry {
            sha256: f.sha256.to_string(),
            name: f.name.clone(),
            size: f.size,
        })
        .collect();
    let cmd = Command::SupplyMaterial {
        material: material.into(),
        files,
    };
    let r = run_command_with(app, caller, id, cmd, key, None).await?;
    Ok((r, entries))
}

/// `failed`: the refusal, if the request was refused.
async fn audit_outcome(
    app: &App,
    caller: &Caller,
    action: &str,
    id: &str,
    failed: Option<&ApiError>,
    what: &str,
) {
    let outcome = match failed {
        None => format!("ok {what}"),
        Some(e) => e.body.error.clone(),
    };
    app.audit(
        &caller.user.name,
        caller.remote.clone(),
        action,
        Some(id),
        outcome.trim(),
    )
    .await;
}

/// Upload one or more files for a material (`multipart/form-data`, each file in a part named
/// `file`): the applicant supplies the material with them (against a 容缺 promise or a 补正).
/// Each file is at most `serve --max-file-mb` (50 MB by default) and must be a PDF, OFD, PNG,
/// JPEG, Word or Excel document by its content.
#[utoipa::path(post, path = "/api/instances/{id}/materials/{material}/files", tag = "materials",
    request_body(content_type = "multipart/form-data", description = "one or more parts named `file`"),
    params(("id" = String, Path, description = "the instance"), ("material" = String, Path, description = "the material id, as the workflow names it"),
        ("Idempotency-Key" = Option<String>, Header, description = "retries are applied once")),
    responses((status = 201, body = UploadResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody, description = "`file_too_large`"),
        (status = 415, body = ErrorBody, description = "`file_kind_refused`, `bad_multipart`"),
        (status = 422, body = ErrorBody, description = "`no_file`, `file_empty`, `material_not_listed`, `material_not_expected`")))]
pub async fn upload_files(
    State(app): State<App>,
    caller: Caller,
    Path((id, material)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<UploadResult>)> {
    let res = async {
        let mp = paced::parts(&headers, body, app.security.max_file_bytes)?;
        let key = idempotency_key(&headers, &caller.user.name)?;
        upload(&app, &caller, &id, &material, mp, key, None).await
    }
    .await;
    let what = res
        .as_ref()
        .map(|(_, f)| {
            f.iter()
                .map(|f| format!("{} {}", f.sha256, f.name))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    audit_outcome(
        &app,
        &caller,
        "upload_file",
        &id,
        res.as_ref().err(),
        &format!("{material}: {what}"),
    )
    .await;
    let (command, files) = res?;
    Ok((StatusCode::CREATED, Json(UploadResult { command, files })))
}

/// The page's upload form (and the script that sends it with a progress bar): back to the
/// instance page, or the refusal's page.
pub async fn upload_page(
    State(app): State<App>,
    user: PageUser,
    Path((id, material)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = page_caller(&user);
    let res = match paced::parts(&headers, body, app.security.max_file_bytes) {
        Ok(mp) => upload(&app, &caller, &id, &material, mp, None, Some(&user.csrf)).await,
        Err(e) => Err(e),
    };
    audit_outcome(
        &app,
        &caller,
        "upload_file",
        &id,
        res.as_ref().err(),
        &material,
    )
    .await;
    match res {
        Ok(_) => Redirect::to(&format!("/instances/{id}?done=supply_material")).into_response(),
        Err(e) => fail(&user, e),
    }
}

/// The versions of one material's files, oldest first.
#[utoipa::path(get, path = "/api/instances/{id}/materials/{material}/files", tag = "materials",
    params(("id" = String, Path, description = "the instance"), ("material" = String, Path, description = "the material id")),
    responses((status = 200, body = Vec<FileVersion>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_files(
    State(app): State<App>,
    caller: Caller,
    Path((id, material)): Path<(String, String)>,
) -> ApiResult<Json<Vec<FileVersion>>> {
    let (_, _, events, _) = readable(&app, &caller, &id).await?;
    Ok(Json(
        versions(&events)
            .into_iter()
            .filter(|v| v.material == material)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Download it (`Content-Disposition: attachment`) even when it could be shown inline.
    #[serde(default)]
    pub download: Option<bool>,
}

/// `Content-Disposition` with the file's name: an ASCII fallback and the UTF-8 name (RFC 5987).
pub fn disposition(inline: bool, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}",
        if inline { "inline" } else { "attachment" }
    )
}

/// A material file of the instance: PDF and images shown inline (unless `download=true`),
/// others downloaded, with the name it was uploaded under.
#[utoipa::path(get, path = "/api/instances/{id}/files/{sha256}", tag = "materials",
    params(("id" = String, Path, description = "the instance"), ("sha256" = String, Path, description = "the file's SHA-256, as its versions list it"), FileQuery),
    responses((status = 200, description = "the file's content"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_file(
    State(app): State<App>,
    caller: Caller,
    Path((id, sha256)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    let res = serve_file(&app, &caller, &id, &sha256, q.download.unwrap_or(false)).await;
    audit_outcome(
        &app,
        &caller,
        "download_file",
        &id,
        res.as_ref().err(),
        &sha256,
    )
    .await;
    res
}

async fn serve_file(
    app: &App,
    caller: &Caller,
    id: &str,
    sha256: &str,
    download: bool,
) -> ApiResult<Response> {
    let (_, _, events, _) = readable(app, caller, id).await?;
    let not_here = || ApiError::not_found("本办件没有这个材料文件。");
    let name = versions(&events)
        .into_iter()
        .flat_map(|v| v.files)
        .find(|f| f.sha256 == sha256)
        .map(|f| f.name)
        .ok_or_else(not_here)?;
    let (stored, place) = app
        .files
        .file(sha256)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_here)?;
    let kind = FileKind::from_code(&stored.kind).unwrap_or(FileKind::Ole);
    let inline = kind.inline() && !download;
    let files = app.files.clone();
    let chunks = (stored.size as u64).div_ceil(CHUNK as u64) as i64;
    let size = stored.size;
    let stream = futures_util::stream::unfold(0i64, move |n| {
        let files = files.clone();
        let stored = stored.clone();
        async move {
            if n >= chunks {
                return None;
            }
            match files.chunk(&stored, place, n).await {
                Ok(Some(data)) => Some((Ok(axum::body::Bytes::from(data)), n + 1)),
                Ok(None) => Some((Err(std::io::Error::other("chunk missing")), chunks)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), chunks)),
            }
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind.mime()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size as u64));
    if let Ok(v) = HeaderValue::from_str(&disposition(inline, &name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        "x-content-sha256",
        HeaderValue::from_str(sha256).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

/// A size for people: 字节, KB, MB.
pub fn size_zh(n: u64) -> String {
    if n < 1024 {
        format!("{n} 字节")
    } else if n < 1 << 20 {
        format!("{:.1} KB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MB", n as f64 / f64::from(1u32 << 20))
    }
}

/// The versions of materials, each with who, when, size and hash, and links to preview and
/// download (for the instance page and the verification task page).
pub fn versions_block(
    names: &super::names::WorkflowNames<'_>,
    inst: &str,
    versions: &[FileVersion],
) -> maud::Markup {
    maud::html! {
        @if versions.is_empty() { p.empty { "尚未上传材料文件。" } } @else {
            div.table-wrap.cards { table.files {
                thead { tr { th { "材料" } th { "版本" } th { "文件" } th { "大小" } th { "SHA-256" } th { "上传人" } th { "时间" } } }
                tbody {
                    @for v in versions { @for f in &v.files {
                        tr {
                            td data-label="材料" { (names.material(&v.material)) }
                            td data-label="版本" { "第 " (v.version) " 版" }
                            td data-label="文件" {
                                a href={"/api/instances/" (inst) "/files/" (f.sha256)} target="_blank" rel="noopener" { (f.name) }
                                " · " a href={"/api/instances/" (inst) "/files/" (f.sha256) "?download=true"} { "下载" }
                            }
                            td data-label="大小" { (size_zh(f.size)) }
                            td data-label="SHA-256" { code title=(f.sha256) { (f.sha256[..12.min(f.sha256.len())]) "…" } }
                            td data-label="上传人" { (v.by) }
                            td data-label="时间" { (super::chrome::datetime(v.at)) }
                        }
                    } }
                }
            } }
        }
    }
}

/// The upload form of one material: a file picker that also takes files dropped on it, sent
/// as a plain multipart form; with script, sent by `XMLHttpRequest` with a progress bar.
pub fn upload_form(
    user: &PageUser,
    inst: &str,
    material: &str,
    label: &str,
    max_mb: u64,
) -> maud::Markup {
    maud::html! {
        form.upload method="post" enctype="multipart/form-data"
            action={"/instances/" (inst) "/materials/" (material) "/files"} {
            input type="hidden" name="csrf" value=(user.csrf);
            label.drop {
                "上传材料「" (label) "」（可多选，或把文件拖到这里；PDF、OFD、图片、Word、Excel，每个不超过 " (max_mb) " MB）"
                input type="file" name="file" multiple required
                    accept=".pdf,.ofd,.png,.jpg,.jpeg,.doc,.docx,.xls,.xlsx";
            }
            progress hidden max="100" value="0" {}
            button type="submit" { "上传并补交" }
        }
    }
}
