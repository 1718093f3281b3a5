//! Diagram responses, for a definition and for an instance: SVG drawn by the server (`svg.rs`),
//! or the engine's Mermaid / DOT text, with an instance's current nodes highlighted, the passed
//! ones marked and (in SVG) those its channel skips and the branches it did not take, as the
//! engine's `diagram::Marks` says.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shenpi_engine::compile::Definition;
use shenpi_engine::diagram::{self, Highlight, Marks};
use shenpi_engine::runtime::{Event, InstanceState};
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
            "不支持的流程图格式「{other}」：可选 svg、mermaid 或 dot。"
        ))
        .in_english(format!("format `{other}`: use svg, mermaid or dot"))),
    }
}

/// The SVG of an instance's diagram, for a page; `history` is its events so far.
pub fn instance_svg<'e>(
    def: &Definition,
    st: &InstanceState,
    history: impl IntoIterator<Item = &'e Event>,
) -> String {
    let marks = Marks::of(def, st, history);
    svg::render(def, &marks.highlight())
}

/// An instance's diagram in the format asked for; `history` is its events so far.
pub fn instance_diagram<'e>(
    def: &Definition,
    st: &InstanceState,
    history: impl IntoIterator<Item = &'e Event>,
    format: Option<&str>,
) -> ApiResult<Response> {
    let marks = Marks::of(def, st, history);
    render_diagram(def, format, &marks.highlight())
}
