//! The route table, as each resource contributes to it: its API routes (mounted under `/api`)
//! and its pages. `router` in `mod.rs` merges every resource's [`Routes`]; the list of API paths
//! kept beside the routes is what the OpenAPI test compares the document with, so a route added
//! without its OpenAPI entry (or the other way round) fails a test.

use axum::Router;
use axum::routing::MethodRouter;

use super::state::App;

/// What one resource serves.
#[derive(Default)]
pub struct Routes {
    /// Paths relative to `/api`.
    pub api: Router<App>,
    pub pages: Router<App>,
    /// The API paths of `api`, relative to `/api`, in the router's `{param}` syntax.
    pub api_paths: Vec<&'static str>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// An API route; `path` is relative to `/api` (`/tasks` serves `/api/tasks`).
    pub fn api(mut self, path: &'static str, handler: MethodRouter<App>) -> Routes {
        self.api = self.api.route(path, handler);
        self.api_paths.push(path);
        self
    }

    /// A page (or any route outside `/api`).
    pub fn page(mut self, path: &'static str, handler: MethodRouter<App>) -> Routes {
        self.pages = self.pages.route(path, handler);
        self
    }

    /// This resource's routes and another's.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.api = self.api.merge(other.api);
        self.pages = self.pages.merge(other.pages);
        self.api_paths.extend(other.api_paths);
        self
    }
}
