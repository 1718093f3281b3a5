//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::accounts::{AuditEntry, Project, ReportRun, User};
use super::calendars::{self, CalendarInfo, ImportBody, RevisionInfo};
use super::commands::CommandResult;
use super::definitions::api::{
    self as definitions, DefinitionSummary, DiffResult, Published, ValidationResult, VersionInfo,
};
use super::error::ErrorBody;
use super::inbox::{self, InboxItem};
use super::instances::api::{self as instances, AttachRequest, StartRequest};
use super::instances::detail::{HistoryEntry, InstanceDetail, MaterialStatus};
use super::login::{self, LoginRequest, LoginResponse};
use super::outbox::{self, DeadLetter};
use super::projects::{self, NewProject};
use super::reports::api::{self as reports, DashboardData, RunReport};
use super::tasks::api::{self as tasks, VerifyRequest};

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
        login::login, login::logout, login::me,
        projects::create_project, projects::list_projects, projects::get_project,
        instances::start_instance, instances::get_instance, instances::instance_command,
        instances::instance_diagram, instances::supply_material, instances::attach_element,
        inbox::inbox, tasks::task_action, tasks::verify_material,
        definitions::list_definitions, definitions::validate_definition,
        definitions::publish_definition, definitions::list_versions, definitions::get_version,
        definitions::diff_versions, definitions::diagram,
        reports::dashboard, reports::run_report, reports::list_reports, outbox::dead_letters,
        calendars::api_list, calendars::api_import,
    ),
    components(schemas(
        ErrorBody, User, Project, AuditEntry, ReportRun, LoginRequest, LoginResponse, NewProject,
        StartRequest, CommandResult, VerifyRequest, AttachRequest, HistoryEntry, MaterialStatus,
        InstanceDetail, InboxItem, DefinitionSummary, ValidationResult, Published, VersionInfo,
        DiffResult, DashboardData, RunReport, DeadLetter, CalendarInfo, RevisionInfo, ImportBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "auth"), (name = "projects"), (name = "instances"), (name = "tasks"),
        (name = "materials"), (name = "elements"), (name = "definitions"), (name = "reports"),
        (name = "outbox"), (name = "calendars"),
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The document and the route table name the same API paths: a route added without its
    /// OpenAPI entry, or an entry left behind by a removed route, fails here.
    #[test]
    fn every_api_route_is_documented_and_every_documented_path_is_routed() {
        let routed: BTreeSet<String> = crate::server::resources()
            .api_paths
            .iter()
            .map(|p| format!("/api{p}"))
            .collect();
        let documented: BTreeSet<String> = ApiDoc::openapi().paths.paths.into_keys().collect();
        assert_eq!(routed, documented);
    }
}
