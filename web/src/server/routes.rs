//! The route table, as each resource contributes to it: its API operations (mounted under
//! `/api`) and its pages.
//!
//! An API operation is declared once, by its handler's `#[utoipa::path]` (method, path,
//! parameters, request body, responses): [`operation!`] reads the method and path off it to
//! route the handler, and keeps the operation for the OpenAPI document (`openapi::document`),
//! so the router and the document cannot name different paths or methods.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::openapi::path::{HttpMethod, ParameterIn, Paths, PathsBuilder};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use super::state::App;

/// One API operation: the handler routed at its documented method and path.
pub struct Operation {
    /// Relative to `/api`, in the router's `{param}` syntax.
    path: String,
    handler: MethodRouter<App>,
    doc: Paths,
}

impl Operation {
    /// The operation `P` (the type `#[utoipa::path]` generates) served by `handler`. Use
    /// [`operation!`], which names both from the handler.
    pub fn new<P: utoipa::Path, H: Handler<T, App>, T: 'static>(handler: H) -> Operation {
        let full = P::path();
        let filter = P::methods()
            .into_iter()
            .map(method_filter)
            .reduce(MethodFilter::or)
            .unwrap_or(MethodFilter::GET);
        Operation {
            path: full.strip_prefix("/api").unwrap_or(&full).to_string(),
            handler: on(filter, handler),
            doc: with_common_refusals(PathsBuilder::new().path_from::<P>().build()),
        }
    }

    /// The operation with a layer of its own (e.g. the upload's body limit).
    pub fn with_layer<L>(mut self, layer: L) -> Operation
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Response:
            axum::response::IntoResponse + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Error:
            Into<std::convert::Infallible> + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.handler = self.handler.layer(layer);
        self
    }
}

/// Adds to each operation the refusals that come from the request's form rather than from the
/// handler (the extractors of `server::extract`, the login check, the server's own fault), so
/// that no handler has to list them and none forgets to: 400 for a malformed body, query or
/// path parameter, 401 unless the operation is public, 413 and 415 when it takes a JSON body,
/// 500. What a handler documents itself is kept.
fn with_common_refusals(mut paths: Paths) -> Paths {
    for item in paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let has_params = op.parameters.as_ref().is_some_and(|p| {
                p.iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
            });
            let json_body = op
                .request_body
                .as_ref()
                .is_some_and(|b| b.content.contains_key("application/json"));
            let public = op
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| r == &SecurityRequirement::default()));
            let mut add = |status: &str, what: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| refusal(what));
            };
            if has_params || op.request_body.is_some() {
                add(
                    "400",
                    "`malformed_json`, `invalid_query` or `invalid_path`: the request cannot be read",
                );
            }
            if !public {
                add("401", "`unauthenticated`: log in first");
            }
            if json_body {
                add("413", "`payload_too_large`: the body is over the limit");
                add(
                    "415",
                    "`unsupported_media_type`: the body is not `application/json`",
                );
            }
            add(
                "500",
                "`internal`: the server's own fault; its log has the details",
            );
        }
    }
    paths
}

fn refusal(what: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn method_filter(m: HttpMethod) -> MethodFilter {
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

/// The [`Operation`] of a handler annotated with `#[utoipa::path]`:
/// `operation!(api::get_instance)`.
macro_rules! operation {
    ($handler:ident) => {
        ::pastey::paste! {
            $crate::server::routes::Operation::new::<[<__path_ $handler>], _, _>($handler)
        }
    };
    ($module:ident :: $handler:ident) => {
        ::pastey::paste! {
            $crate::server::routes::Operation::new::<$module::[<__path_ $handler>], _, _>(
                $module::$handler,
            )
        }
    };
}
pub(crate) use operation;

/// What one resource serves.
#[derive(Default)]
pub struct Routes {
    /// Paths relative to `/api`.
    pub api: Router<App>,
    pub pages: Router<App>,
    /// The API operations of `api`, as the OpenAPI document has them (paths under `/api`).
    pub api_doc: Paths,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// An API operation, routed and documented from its one declaration.
    pub fn api(mut self, op: Operation) -> Routes {
        self.api = self.api.route(&op.path, op.handler);
        self.api_doc.merge(op.doc);
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
        self.api_doc.merge(other.api_doc);
        self
    }
}
