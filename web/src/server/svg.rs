//! The workflow diagram as SVG, drawn here because nothing may be downloaded at run time (no
//! Mermaid or Graphviz in the browser).
//!
//! Where everything goes is decided by the engine ([`shenpi_engine::diagram::layout`]); this
//! module only draws that layout: one shape per node type, the state of each node for an
//! instance (current, done, skipped by its channel, on a branch not taken, not reached; which is
//! which is the engine's `diagram::Marks`), edges by meaning (驳回 dashed
//! red, 不予通过 red, routes grey), labels on a white ground, and a legend. All text is escaped.

use std::fmt::Write as _;

use shenpi_engine::compile::Definition;
use shenpi_engine::diagram::Highlight;
use shenpi_engine::diagram::layout::{
    Anchor, EdgeKind, EdgePath, Layout, LineRole, NodeBox, TextLine, layout,
};
use shenpi_engine::model::NodeType;

/// Height of the legend above the diagram.
const LEGEND_H: i32 = 34;
/// The legend is this wide, so the canvas is never narrower.
const LEGEND_W: i32 = 560;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A node's state on an instance's diagram.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Current,
    Done,
    Skipped,
    /// On a branch the instance did not take and can no longer reach (未走的分支).
    NotTaken,
    Idle,
}

impl State {
    fn of(id: &str, h: &Highlight<'_>) -> State {
        if h.current.contains(&id) {
            State::Current
        } else if h.done.contains(&id) {
            State::Done
        } else if h.skipped.contains(&id) {
            State::Skipped
        } else if h.not_taken.contains(&id) {
            State::NotTaken
        } else {
            State::Idle
        }
    }

    fn class(self) -> &'static str {
        match self {
            State::Current => "current",
            State::Done => "done",
            State::Skipped => "skipped",
            State::NotTaken => "not-taken",
            State::Idle => "idle",
        }
    }

    /// The dash pattern of the outline: skipped nodes dashed, nodes not taken dotted.
    fn dashes(self) -> Option<&'static str> {
        match self {
            State::Skipped => Some("4 3"),
            State::NotTaken => Some("2 3"),
            State::Current | State::Done | State::Idle => None,
        }
    }

    /// (fill, stroke, stroke width, text colour)
    fn colours(self) -> (&'static str, &'static str, i32, &'static str) {
        match self {
            State::Current => ("#ffe58f", "#d48806", 3, "#222"),
            State::Done => ("#d9f7be", "#389e0d", 2, "#222"),
            State::Skipped => ("#f5f5f5", "#bfbfbf", 1, "#8c8c8c"),
            State::NotTaken => ("#fafafa", "#d9d9d9", 1, "#a6a6a6"),
            State::Idle => ("#ffffff", "#595959", 1, "#222"),
        }
    }
}

/// Renders the definition as a standalone `<svg>` element.
pub fn render(def: &Definition, h: &Highlight<'_>) -> String {
    draw(&layout(def), &def.workflow.name, h)
}

/// Draws a layout, with `title` as the picture's accessible name.
fn draw(l: &Layout, title: &str, h: &Highlight<'_>) -> String {
    let width = l.width.max(LEGEND_W);
    let height = l.height + LEGEND_H;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="flow" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="'Noto Sans CJK SC','WenQuanYi Micro Hei','Microsoft YaHei','PingFang SC',sans-serif" font-size="14" role="img" aria-label="{}">"#,
        esc(title)
    );
    s.push_str(concat!(
        r##"<defs>"##,
        r##"<marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0L10,5L0,10z" fill="#595959"/></marker>"##,
        r##"<marker id="arr-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0L10,5L0,10z" fill="#cf1322"/></marker>"##,
        r##"</defs>"##
    ));
    legend(&mut s);
    let _ = write!(s, r#"<g transform="translate(0,{LEGEND_H})">"#);
    // Edges first, so that boxes paint over their ends.
    for e in &l.edges {
        edge(&mut s, e, l);
    }
    for b in &l.boxes {
        node(&mut s, b, State::of(&b.node, h));
    }
    s.push_str("</g></svg>");
    s
}

fn legend(s: &mut String) {
    let mut x = 20;
    for st in [
        State::Current,
        State::Done,
        State::Skipped,
        State::NotTaken,
        State::Idle,
    ] {
        let (fill, stroke, sw, _) = st.colours();
        let text = match st {
            State::Current => "当前环节",
            State::Done => "已办结",
            State::Skipped => "已跳过",
            State::NotTaken => "未走的分支",
            State::Idle => "未到达",
        };
        let dashed = st.dashes().map(|d| format!(r#" stroke-dasharray="{d}""#));
        let _ = write!(
            s,
            r##"<rect x="{x}" y="9" width="16" height="14" rx="2" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{}/><text x="{}" y="21" font-size="12" fill="#434343">{text}</text>"##,
            dashed.unwrap_or_default(),
            x + 22
        );
        x += if st == State::NotTaken { 100 } else { 90 };
    }
    let _ = write!(
        s,
        r##"<line x1="{x}" y1="16" x2="{}" y2="16" stroke="#cf1322" stroke-dasharray="5 4" stroke-width="1.5" marker-end="url(#arr-red)"/><text x="{}" y="21" font-size="12" fill="#434343">驳回</text>"##,
        x + 30,
        x + 36
    );
}

fn points(e: &EdgePath) -> String {
    e.points
        .iter()
        .map(|p| format!("{},{}", p.x, p.y))
        .collect::<Vec<_>>()
        .join(" ")
}

fn edge(s: &mut String, e: &EdgePath, l: &Layout) {
    let (stroke, dash, marker, label_colour) = match e.kind {
        EdgeKind::RejectTo => (
            "#cf1322",
            r#" stroke-dasharray="6 4""#,
            "arr-red",
            "#cf1322",
        ),
        EdgeKind::OnReject => ("#cf1322", "", "arr-red", "#cf1322"),
        EdgeKind::Otherwise => ("#595959", "", "arr", "#434343"),
        EdgeKind::Condition => ("#595959", "", "arr", "#1d39c4"),
        EdgeKind::Next => ("#595959", "", "arr", "#434343"),
    };
    let name = |i: usize| l.boxes.get(i).map_or("", |b| b.name.as_str());
    let _ = write!(
        s,
        r#"<g class="edge {}"><title>{} → {}</title><polyline points="{}" fill="none" stroke="{stroke}" stroke-width="1.5" stroke-linejoin="round"{dash} marker-end="url(#{marker})"/>"#,
        edge_class(e.kind),
        esc(name(e.from)),
        esc(name(e.to)),
        points(e)
    );
    if let Some(lb) = &e.label {
        let r = lb.rect;
        let _ = write!(
            s,
            r##"<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="#ffffff" fill-opacity="0.92"/>"##,
            r.x, r.y, r.w, r.h
        );
        for t in &lb.lines {
            text(s, t, label_colour);
        }
    }
    s.push_str("</g>");
}

fn edge_class(k: EdgeKind) -> &'static str {
    match k {
        EdgeKind::Next => "next",
        EdgeKind::Condition => "condition",
        EdgeKind::Otherwise => "otherwise",
        EdgeKind::RejectTo => "reject-to",
        EdgeKind::OnReject => "on-reject",
    }
}

fn text(s: &mut String, t: &TextLine, colour: &str) {
    let anchor = match t.anchor {
        Anchor::Middle => "middle",
        Anchor::Start => "start",
    };
    let weight = match t.role {
        LineRole::Name => r#" font-weight="600""#,
        LineRole::Detail => "",
    };
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="{colour}"{weight}>{}</text>"#,
        t.x,
        t.y,
        t.size,
        esc(&t.text)
    );
}

fn node(s: &mut String, b: &NodeBox, st: State) {
    let (fill, stroke, sw, ink) = st.colours();
    let r = b.rect;
    let _ = write!(
        s,
        r#"<g class="node {}" data-node="{}"><title>{}{}</title>"#,
        st.class(),
        esc(&b.node),
        esc(&b.name),
        // The tooltip a person reads: the node's name and its state, not its id.
        match st {
            State::Current => "（当前环节）",
            State::Done => "（已办结）",
            State::Skipped => "（已跳过）",
            State::NotTaken => "（未走的分支）",
            State::Idle => "",
        }
    );
    let dashed = st
        .dashes()
        .map(|d| format!(r#" stroke-dasharray="{d}""#))
        .unwrap_or_default();
    match b.kind {
        NodeType::Gateway => {
            let c = r.center();
            let _ = write!(
                s,
                r#"<polygon points="{},{} {},{} {},{} {},{}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dashed}/>"#,
                c.x,
                r.y,
                r.right(),
                c.y,
                c.x,
                r.bottom(),
                r.x,
                c.y
            );
        }
        NodeType::End => {
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" rx="{}" fill="{fill}" stroke="{stroke}" stroke-width="{}"{dashed}/>"#,
                r.x,
                r.y,
                r.w,
                r.h,
                r.h / 2,
                sw + 1
            );
        }
        NodeType::Parallel => {
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dashed}/><rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{stroke}"/>"#,
                r.x,
                r.y,
                r.w,
                r.h,
                r.x + 4,
                r.y + 4,
                r.w - 8,
                r.h - 8
            );
        }
        NodeType::Wait | NodeType::Notify => {
            let dash = if dashed.is_empty() {
                r#" stroke-dasharray="5 3""#
            } else {
                &dashed
            };
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" rx="10" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dash}/>"#,
                r.x, r.y, r.w, r.h
            );
        }
        NodeType::Task => {
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" rx="4" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dashed}/>"#,
                r.x, r.y, r.w, r.h
            );
        }
    }
    for t in &b.lines {
        let colour = match t.role {
            LineRole::Name => ink,
            LineRole::Detail => "#595959",
        };
        text(s, t, colour);
    }
    s.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use shenpi_engine::diagram::layout::{EdgeSpec, NodeSpec, layout_graph};

    /// The text from `start` to the next `end`, or "" when `start` is missing.
    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let Some(i) = text.find(start) else {
            return "";
        };
        let rest = &text[i..];
        &rest[..rest.find(end).unwrap_or(rest.len())]
    }

    #[test]
    fn text_is_escaped_and_states_are_marked() {
        let nodes = vec![
            NodeSpec {
                id: "a".into(),
                name: "受理 <审查> & \"登记\"".into(),
                kind: NodeType::Task,
                details: vec![],
            },
            NodeSpec {
                id: "b".into(),
                name: "跳过的环节".into(),
                kind: NodeType::Task,
                details: vec![],
            },
            NodeSpec {
                id: "c".into(),
                name: "另一分支".into(),
                kind: NodeType::End,
                details: vec![],
            },
        ];
        let edges = vec![EdgeSpec {
            from: 0,
            to: 1,
            kind: EdgeKind::Condition,
            label: Some("x < 1 && y > 2".into()),
        }];
        let l = layout_graph(&nodes, &edges, 0);
        let h = Highlight {
            current: &["a"],
            done: &[],
            skipped: &["b"],
            not_taken: &["c", "a"],
        };
        let svg = draw(&l, "t<", &h);
        assert!(
            svg.contains("受理 &lt;审查&gt; &amp; &quot;登记&quot;"),
            "{svg}"
        );
        assert!(svg.contains("x &lt; 1 &amp;&amp; y &gt; 2"), "{svg}");
        assert!(svg.contains(r#"aria-label="t&lt;""#), "{svg}");
        assert!(
            svg.contains(r#"class="node current" data-node="a""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"class="node skipped" data-node="b""#),
            "{svg}"
        );
        // Not taken: its own class, dotted outline and tooltip; current wins over it.
        let c = between(&svg, r#"class="node not-taken" data-node="c""#, "</g>");
        assert!(c.contains("<title>另一分支（未走的分支）</title>"), "{c}");
        assert!(c.contains(r#"stroke-dasharray="2 3""#), "{c}");
        assert!(!svg.contains(r#"class="node not-taken" data-node="a""#));
        for word in [
            "当前环节",
            "已办结",
            "已跳过",
            "未走的分支",
            "未到达",
            "驳回",
        ] {
            assert!(svg.contains(word), "legend lacks {word}");
        }
        assert!(!svg.contains("<审查>"));
    }
}
