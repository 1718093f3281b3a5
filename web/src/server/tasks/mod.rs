//! Tasks (任务) of an instance: acting on one and verifying a supplied material, for the API
//! (`api`) and the task page (`pages`, its forms in `forms`). The inbox, which lists them, is
//! `inbox`'s.

pub mod api;
pub mod forms;
pub mod pages;

use axum::routing::get;

use super::routes::{Routes, operation};

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(api::task_action))
        .api(operation!(api::verify_material))
        .page(
            "/instances/{id}/tasks/{task}",
            get(pages::task_page).post(pages::task_act),
        )
}
