//! Reports and the 督办看板 (dashboard) of supervisors: the counts and lists the board shows, for
//! the API (`api`) and the page (`pages`), and the weekly, half-monthly and monthly reports run
//! from them.

pub mod api;
pub mod pages;

use axum::routing::get;

use super::routes::{Routes, operation};

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(api::dashboard))
        .api(operation!(api::list_reports))
        .api(operation!(api::run_report))
        .page("/dashboard", get(pages::dashboard_page))
}
