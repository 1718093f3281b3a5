//! Definitions (流程规则): the workflows as published versions, for the API (`api`) and the
//! policy staff's pages (`pages`: the list, the editor, the diffs; their forms in `forms`).

pub mod api;
pub mod forms;
pub mod pages;

use axum::routing::get;

use super::routes::{Routes, operation};

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(api::list_definitions))
        .api(operation!(api::publish_definition))
        .api(operation!(api::validate_definition))
        .api(operation!(api::list_versions))
        .api(operation!(api::get_version))
        .api(operation!(api::diff_versions))
        .api(operation!(api::diagram))
        .page("/workflows", get(pages::workflows_page))
        .page(
            "/workflows/editor",
            get(pages::editor_page).post(pages::editor_submit),
        )
        .page("/workflows/{id}/diff", get(pages::diff_page))
}
