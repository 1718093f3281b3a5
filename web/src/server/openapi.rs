//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::accounts::{AuditEntry, Project, ReportRun, User};
use super::api::*;
use super::error::ErrorBody;

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
            `POST /api/login`). Errors are `{error, message, details}` with 401/403/404/409/422.",
    ),
    paths(
        login, logout, me,
        create_project, list_projects, get_project,
        start_instance, get_instance, instance_command, instance_diagram,
        inbox, task_action,
        supply_material, verify_material, attach_element,
        list_definitions, validate_definition, publish_definition, list_versions, get_version,
        diff_versions, diagram,
        dashboard, run_report, list_reports, dead_letters,
    ),
    components(schemas(
        ErrorBody, User, Project, AuditEntry, ReportRun, LoginRequest, LoginResponse, NewProject,
        StartRequest, CommandResult, VerifyRequest, AttachRequest, HistoryEntry, MaterialStatus,
        InstanceDetail, InboxItem, DefinitionSummary, ValidationResult, Published, VersionInfo,
        DiffResult, DashboardData, RunReport, DeadLetter,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "auth"), (name = "projects"), (name = "instances"), (name = "tasks"),
        (name = "materials"), (name = "elements"), (name = "definitions"), (name = "reports"),
        (name = "outbox"),
    )
)]
pub struct ApiDoc;
