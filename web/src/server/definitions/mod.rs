//! Definitions (流程规则): the workflows as published versions, for the API (`api`) and the
//! policy staff's pages (`pages`: the list, the editor, the diffs; their forms in `forms`).

pub mod api;
pub mod forms;
pub mod pages;

use axum::routing::{get, post};

use super::routes::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .api(
            "/definitions",
            get(api::list_definitions).post(api::publish_definition),
        )
        .api("/definitions/validate", post(api::validate_definition))
        .api("/definitions/{id}/versions", get(api::list_versions))
        .api(
            "/definitions/{id}/versions/{version}",
            get(api::get_version),
        )
        .api("/definitions/{id}/diff", get(api::diff_versions))
        .api("/definitions/{id}/diagram", get(api::diagram))
        .page("/workflows", get(pages::workflows_page))
        .page(
            "/workflows/editor",
            get(pages::editor_page).post(pages::editor_submit),
        )
        .page("/workflows/{id}/diff", get(pages::diff_page))
}
