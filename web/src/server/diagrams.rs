//! Diagram responses, for a definition and for an instance: SVG drawn by the server (`svg.rs`),
//! or the engine's Mermaid / DOT text, with an instance's current nodes highlighted, the passed
//! ones marked and (in SVG) those its channel skips.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shenpi_engine::compile::Definition;
use shenpi_engine::diagram::{self, Highlight};
use shenpi_engine::runtime::InstanceState;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};
use super::svg;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiagramQuery {
    pub version: Option<i64>,
    /// `svg` (default), `mermaid` or `dot`.
    pub format: Option<String>,
}

/// The diagram in the format asked for (`svg` when none).
pub fn render_diagram(
    def: &Definition,
    format: Option<&str>,
    h: &Highlight<'_>,
) -> ApiResult<Response> {
    match format.unwrap_or("svg") {
        "svg" => Ok((
            [(header::CONTENT_TYPE, "image/svg+xml")],
            svg::render(def, h),
        )
            .into_response()),
        "mermaid" => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            diagram::render(def, diagram::Format::Mermaid, h),
        )
            .into_response()),
        "dot" => Ok((
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            diagram::render(def, diagram::Format::Dot, h),
        )
            .into_response()),
        other => Err(ApiError::invalid(format!(
            "format `{other}`: use svg, mermaid or dot"
        ))),
    }
}

/// Current and passed nodes of an instance, for highlighting.
fn highlight_of(st: &InstanceState) -> (Vec<String>, Vec<String>) {
    let mut current: Vec<String> = st.open_tasks().map(|t| t.spec.node.to_string()).collect();
    if current.is_empty()
        && let Some(a) = &st.at
    {
        current.push(a.to_string());
    }
    let mut done: Vec<String> = st
        .tasks
        .iter()
        .filter(|t| !t.is_open())
        .map(|t| t.spec.node.to_string())
        .collect();
    done.sort();
    done.dedup();
    current.sort();
    current.dedup();
    (current, done)
}

/// The SVG of an instance's diagram, for a page.
pub fn instance_svg(def: &Definition, st: &InstanceState) -> String {
    highlighted(def, st, |h| svg::render(def, h))
}

/// An instance's diagram in the format asked for.
pub fn instance_diagram(
    def: &Definition,
    st: &InstanceState,
    format: Option<&str>,
) -> ApiResult<Response> {
    highlighted(def, st, |h| render_diagram(def, format, h))
}

/// Runs `f` with the instance's current nodes highlighted, its passed ones marked and those its
/// channel skips marked skipped.
fn highlighted<R>(def: &Definition, st: &InstanceState, f: impl FnOnce(&Highlight<'_>) -> R) -> R {
    let (current, done) = highlight_of(st);
    let c: Vec<&str> = current.iter().map(String::as_str).collect();
    let d: Vec<&str> = done.iter().map(String::as_str).collect();
    let skipped = diagram::skipped_by_channel(def, st.channel.as_deref());
    f(&Highlight {
        current: &c,
        done: &d,
        skipped: &skipped,
    })
}
