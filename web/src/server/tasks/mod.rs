//! Tasks (任务) of an instance: acting on one and verifying a supplied material, for the API
//! (`api`) and the task page (`pages`, its forms in `forms`). The inbox, which lists them, is
//! `inbox`'s; approving several of them at once (批量审批) is `batch`.

pub mod api;
pub mod batch;
pub mod forms;
pub mod pages;

use axum::routing::{get, post};

use super::routes::{Routes, operation};

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(api::task_action))
        .api(operation!(api::verify_material))
        .api(operation!(api::batch_approve))
        .page("/inbox/batch", post(batch::batch_page))
        .page(
            "/instances/{id}/tasks/{task}",
            get(pages::task_page).post(pages::task_act),
        )
}
