//! The workflow diagram as SVG, drawn here because nothing may be downloaded at run time (no
//! Mermaid or Graphviz in the browser).
//!
//! A plain layered layout: each node's layer is its longest forward distance from the start
//! (驳回 edges, which point backwards, are left out of the layering and drawn dashed on the side),
//! nodes of a layer sit side by side in definition order. Good enough for the flows people write
//! (tens of nodes, mostly a spine with parallel steps and gateways); it makes no attempt to
//! minimise crossings.

use std::fmt::Write as _;

use petgraph::visit::EdgeRef;
use shenpi_engine::compile::{Definition, Edge};
use shenpi_engine::diagram::Highlight;
use shenpi_engine::model::{JoinPolicy, NodeType};

const W: i64 = 180;
const H: i64 = 46;
const GAP_X: i64 = 36;
const GAP_Y: i64 = 54;
const PAD: i64 = 40;

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

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Renders the definition as a standalone `<svg>` element.
pub fn render(def: &Definition, h: &Highlight<'_>) -> String {
    let nodes = &def.workflow.nodes;
    let n = nodes.len();
    let start = def.node_ix(&def.workflow.start.value).unwrap_or(0);
    // Longest forward distance from the start, bounded by n so loops terminate.
    let mut layer: Vec<Option<usize>> = vec![None; n];
    if n > 0 {
        if let Some(l) = layer.get_mut(start) {
            *l = Some(0);
        }
        for _ in 0..n {
            let mut changed = false;
            for e in def.graph.edge_references() {
                if matches!(e.weight(), Edge::RejectTo) {
                    continue;
                }
                let (u, v) = (e.source().index(), e.target().index());
                let Some(Some(lu)) = layer.get(u).copied() else {
                    continue;
                };
                let cand = lu + 1;
                if cand < n
                    && let Some(slot) = layer.get_mut(v)
                    && slot.is_none_or(|lv| cand > lv)
                {
                    *slot = Some(cand);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
    let max_layer = layer.iter().flatten().copied().max().unwrap_or(0);
    let layer: Vec<usize> = layer
        .into_iter()
        .map(|l| l.unwrap_or(max_layer + 1))
        .collect();
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, l) in layer.iter().enumerate() {
        if let Some(r) = rows.get_mut(*l) {
            r.push(i);
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as i64;
    let width = widest * (W + GAP_X) - GAP_X + 2 * PAD + 120;
    let height = layers as i64 * (H + GAP_Y) - GAP_Y + 2 * PAD;
    let mut pos: Vec<(i64, i64)> = vec![(0, 0); n];
    for (li, row) in rows.iter().enumerate() {
        let row_w = row.len() as i64 * (W + GAP_X) - GAP_X;
        let x0 = (width - 120 - row_w) / 2;
        for (k, i) in row.iter().enumerate() {
            if let Some(p) = pos.get_mut(*i) {
                *p = (x0 + k as i64 * (W + GAP_X), PAD + li as i64 * (H + GAP_Y));
            }
        }
    }
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="flow" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="13" role="img">"#
    );
    s.push_str(r##"<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/></marker><marker id="arrr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#c0392b"/></marker></defs>"##);
    // Edges first, so nodes paint over them.
    let mut back = 0i64;
    for e in def.graph.edge_references() {
        let (u, v) = (e.source().index(), e.target().index());
        let (Some(&(ux, uy)), Some(&(vx, vy))) = (pos.get(u), pos.get(v)) else {
            continue;
        };
        match e.weight() {
            Edge::RejectTo => {
                back += 1;
                let side = width - 110 + (back % 5) * 18;
                let _ = write!(
                    s,
                    r##"<path d="M{} {} C{side} {} {side} {} {} {}" fill="none" stroke="#c0392b" stroke-dasharray="5 4" marker-end="url(#arrr)"><title>驳回</title></path>"##,
                    ux + W,
                    uy + H / 2,
                    uy + H / 2,
                    vy + H / 2,
                    vx + W,
                    vy + H / 2
                );
            }
            w => {
                let (x1, y1) = (ux + W / 2, uy + H);
                let (x2, y2) = if vy > uy {
                    (vx + W / 2, vy)
                } else {
                    (vx, vy + H / 2)
                };
                let label = match w {
                    Edge::Route(Some(c)) => short(c, 22),
                    Edge::Route(None) => "否则".to_string(),
                    Edge::OnReject => "驳回/不予".to_string(),
                    _ => String::new(),
                };
                let _ = write!(
                    s,
                    r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555" marker-end="url(#arr)"/>"##
                );
                if !label.is_empty() {
                    let _ = write!(
                        s,
                        r##"<text x="{}" y="{}" font-size="11" fill="#444" text-anchor="middle">{}</text>"##,
                        (x1 + x2) / 2,
                        (y1 + y2) / 2 - 3,
                        esc(&label)
                    );
                }
            }
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let Some(&(x, y)) = pos.get(i) else { continue };
        let id = node.id.value.as_str();
        let current = h.current.contains(&id);
        let done = !current && h.done.contains(&id);
        let (fill, stroke, sw) = if current {
            ("#ffe58f", "#d48806", 3)
        } else if done {
            ("#d9f7be", "#389e0d", 2)
        } else {
            ("#ffffff", "#555555", 1)
        };
        let state = if current {
            "current"
        } else if done {
            "done"
        } else {
            "idle"
        };
        let _ = write!(s, r#"<g class="node {state}" data-node="{}">"#, esc(id));
        let title = node.name.clone().unwrap_or_else(|| id.to_string());
        let _ = write!(s, "<title>{} ({})</title>", esc(&title), esc(id));
        match node.ty.value {
            NodeType::Gateway => {
                let _ = write!(
                    s,
                    r#"<polygon points="{},{} {},{} {},{} {},{}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#,
                    x + W / 2,
                    y,
                    x + W,
                    y + H / 2,
                    x + W / 2,
                    y + H,
                    x,
                    y + H / 2
                );
            }
            NodeType::End => {
                let _ = write!(
                    s,
                    r#"<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="23" fill="{fill}" stroke="{stroke}" stroke-width="{}"/>"#,
                    sw + 1
                );
            }
            NodeType::Parallel => {
                let _ = write!(
                    s,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{stroke}"/><rect x="{x}" y="{y}" width="{W}" height="{H}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#,
                    x - 4,
                    y - 4,
                    W + 8,
                    H + 8
                );
            }
            NodeType::Wait | NodeType::Notify => {
                let _ = write!(
                    s,
                    r#"<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="{sw}" stroke-dasharray="4 3"/>"#
                );
            }
            NodeType::Task => {
                let _ = write!(
                    s,
                    r#"<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="4" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#
                );
            }
        }
        let sub = match node.ty.value {
            NodeType::Parallel => {
                let join = match node.join.as_ref().map(|j| j.policy.value) {
                    Some(JoinPolicy::All) => "会签",
                    Some(JoinPolicy::Any) => "或签",
                    Some(JoinPolicy::Vote) => "票签",
                    None => "并联",
                };
                format!("并联 {} 部门 · {join}", node.branches.len())
            }
            NodeType::Gateway => "分支".to_string(),
            NodeType::End => format!(
                "结束 · {}",
                node.outcome
                    .as_ref()
                    .map(|o| format!("{:?}", o.value).to_lowercase())
                    .unwrap_or_default()
            ),
            NodeType::Wait => "等待".to_string(),
            NodeType::Notify => "通知".to_string(),
            NodeType::Task => id.to_string(),
        };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-weight="600">{}</text><text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#555">{}</text></g>"##,
            x + W / 2,
            y + 19,
            esc(&short(&title, 13)),
            x + W / 2,
            y + 35,
            esc(&short(&sub, 24))
        );
    }
    s.push_str("</svg>");
    s
}
