//! Instances (实例): a project running through a workflow version. Starting one, reading it with
//! its diagram, any engine command on it, supplying materials and attaching elements, for the
//! API (`api`) and the instance page (`pages`, its forms in `forms`); `detail` is what an
//! instance is as both read it. Tasks of an instance are `tasks`'s.

pub mod api;
pub mod detail;
pub mod forms;
pub mod pages;

use axum::routing::get;

pub use api::{StartRequest, start};

use super::routes::{Routes, operation};

pub fn routes() -> Routes {
    Routes::new()
        .api(operation!(api::start_instance))
        .api(operation!(api::get_instance))
        .api(operation!(api::instance_command))
        .api(operation!(api::instance_diagram))
        .api(operation!(api::supply_material))
        .api(operation!(api::attach_element))
        .page(
            "/instances/{id}",
            get(pages::instance_page).post(pages::instance_act),
        )
}
