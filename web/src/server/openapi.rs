//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::accounts::{AuditEntry, Project, ReportRun, User};
use super::calendars::{CalendarInfo, ImportBody, RevisionInfo};
use super::commands::CommandResult;
use super::definitions::api::{
    DefinitionSummary, DiffResult, Published, ValidationResult, VersionInfo,
};
use super::demo_time::{Advance, ClockState};
use super::documents::DocumentEntry;
use super::error::{ApiError, ErrorBody};
use super::files::{FileEntry, FileVersion, UploadResult};
use super::inbox::InboxItem;
use super::instances::api::{AttachRequest, StartRequest};
use super::instances::detail::{HistoryEntry, InstanceDetail, MaterialStatus};
use super::login::{LoginRequest, LoginResponse};
use super::messages::{MarkRead, Message, Unread};
use super::migrations::{DryRun, DryRunRow, MigrationBody, ResultRow, RunInfo, Said};
use super::outbox::DeadLetter;
use super::projects::NewProject;
use super::reports::api::{DashboardData, RunReport};
use super::routes::{Routes, operation};
use super::tasks::api::VerifyRequest;
use super::tasks::batch::{BatchRequest, BatchResult, BatchTask};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shenpi API",
        description = "Workflow engine for government investment-project approval (审批). \
            Authenticate with `Authorization: Bearer <token>` (`shenpi token create NAME`, or \
            `POST /api/login`). Every error is `{error, message, details}`: `error` a stable code, \
            `message` a sentence in Chinese, `details` what the code needs (docs/server.md has \
            the table).",
    ),
    components(schemas(
        ErrorBody, User, Project, AuditEntry, ReportRun, LoginRequest, LoginResponse, NewProject,
        StartRequest, CommandResult, VerifyRequest, AttachRequest, HistoryEntry, MaterialStatus,
        InstanceDetail, InboxItem, DefinitionSummary, ValidationResult, Published, VersionInfo,
        DiffResult, DashboardData, RunReport, DeadLetter, CalendarInfo, RevisionInfo, ImportBody,
        BatchRequest, BatchTask, BatchResult,
        Message, MarkRead, Unread, Advance, ClockState,
        MigrationBody, DryRun, DryRunRow, Said, RunInfo, ResultRow,
        UploadResult, FileVersion, FileEntry, DocumentEntry,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "auth"), (name = "projects"), (name = "instances"), (name = "tasks"),
        (name = "materials"), (name = "elements"), (name = "definitions"), (name = "reports"),
        (name = "outbox"), (name = "calendars"), (name = "messages"), (name = "clock"),
        (name = "documents"), (name = "meta"),
    )
)]
pub struct ApiDoc;

/// The document: the info, schemas and security above, and every operation the router serves
/// (`routes::Routes::api_doc`, read off the handlers' `#[utoipa::path]`).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.paths.merge(super::resources().api_doc);
    doc
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default())
}

pub fn routes() -> Routes {
    Routes::new().api(operation!(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    let json = document_json();
    if json.is_empty() {
        return ApiError::internal("the OpenAPI document does not serialise").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::openapi::path::ParameterIn;

    use super::*;

    /// Every `{param}` of every path is declared as a path parameter of each of its
    /// operations, and nothing that is not in the path is declared as one: a generated client
    /// fills the path from these declarations, and puts query parameters in the query.
    #[test]
    fn path_parameters_are_exactly_the_braces_of_the_path() {
        let doc = document();
        let mut problems = Vec::new();
        for (path, item) in &doc.paths.paths {
            let braces: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_string)
                .collect();
            let ops = [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let declared: BTreeSet<String> = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| p.parameter_in == ParameterIn::Path)
                    .map(|p| p.name.clone())
                    .collect();
                if declared != braces {
                    problems.push(format!(
                        "{method} {path}: path parameters {declared:?}, the path has {braces:?}"
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// The router serves the operations the document lists: each document path is routed
    /// (the two come from one declaration, `routes::operation!`; this guards the mount point).
    #[test]
    fn the_document_lists_every_api_operation_under_api() {
        let doc = document();
        assert!(doc.paths.paths.len() >= 25, "{:?}", doc.paths.paths.keys());
        assert!(doc.paths.paths.keys().all(|p| p.starts_with("/api/")));
        assert!(
            doc.paths
                .paths
                .contains_key("/api/instances/{id}/tasks/{task}/actions")
        );
    }
}
