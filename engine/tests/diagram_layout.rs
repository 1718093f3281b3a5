//! The diagram layout keeps what a reader relies on, for every shipped workflow and for generated
//! graphs of any shape (cycles, self-loops, parallel edges, unreachable nodes):
//!
//! - no two boxes overlap, and every box and label lies on the canvas;
//! - no edge passes through a box other than its own two, nor through any label;
//! - every labelled edge (conditions, 否则, 驳回, 不予通过) shows its label, which overlaps no box
//!   and no other label;
//! - each edge starts on its source's box and ends on its target's;
//! - each node's full name is in its text lines, never cut;
//! - the same input always gives the same layout.

use std::fs;

use proptest::prelude::*;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::diagram::layout::{
    EdgeKind, EdgeSpec, Layout, LineRole, NodeSpec, Rect, layout, layout_graph,
};
use shenpi_engine::model::NodeType;
use shenpi_engine::parse::parse_workflow;

mod common;
use common::{shipped_context, stems, workflows_dir};

/// Every shipped workflow, compiled as the examples test does.
fn shipped() -> Vec<Definition> {
    let dir = workflows_dir();
    let ctx = shipped_context();
    let mut out = Vec::new();
    for stem in stems(&dir, "yaml") {
        let src = fs::read_to_string(dir.join(format!("{stem}.yaml")))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        match parse_workflow(&src).and_then(|w| compile(w, &ctx)) {
            Ok(d) => out.push(d),
            Err(d) => panic!("{stem} does not compile: {d:#?}"),
        }
    }
    assert!(out.len() >= 3, "expected the shipped workflows");
    out
}

fn no_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Everything wrong with a layout of `nodes` and `edges`, as sentences.
fn problems(l: &Layout, nodes: &[NodeSpec], edges: &[EdgeSpec]) -> Vec<String> {
    let mut bad = Vec::new();
    let canvas = Rect {
        x: 0,
        y: 0,
        w: l.width,
        h: l.height,
    };
    if l.boxes.len() != nodes.len() {
        bad.push(format!("{} boxes for {} nodes", l.boxes.len(), nodes.len()));
    }
    if l.edges.len() != edges.len() {
        bad.push(format!("{} paths for {} edges", l.edges.len(), edges.len()));
    }
    for (i, b) in l.boxes.iter().enumerate() {
        if !canvas.contains(&b.rect) {
            bad.push(format!("box {} {:?} off the canvas", b.node, b.rect));
        }
        for o in l.boxes.iter().skip(i + 1) {
            if b.rect.meets(&o.rect) {
                bad.push(format!("boxes {} and {} overlap", b.node, o.node));
            }
        }
        let name: String = b
            .lines
            .iter()
            .filter(|t| t.role == LineRole::Name)
            .map(|t| t.text.as_str())
            .collect();
        if let Some(n) = nodes.get(i)
            && no_spaces(&name) != no_spaces(&n.name)
        {
            bad.push(format!("box {} reads {name:?}, not {:?}", b.node, n.name));
        }
    }
    let labels: Vec<(usize, Rect)> = l
        .edges
        .iter()
        .enumerate()
        .filter_map(|(k, e)| e.label.as_ref().map(|lb| (k, lb.rect)))
        .collect();
    for (k, e) in l.edges.iter().enumerate() {
        let spec = edges.get(k);
        let what = format!("edge {k} ({} → {}, {:?})", e.from, e.to, e.kind);
        if spec.is_some_and(|s| s.label.is_some()) != e.label.is_some() {
            bad.push(format!("{what}: label missing or unexpected"));
        }
        if let Some(lb) = &e.label {
            if !canvas.contains(&lb.rect) {
                bad.push(format!("{what}: label {:?} off the canvas", lb.rect));
            }
            for b in &l.boxes {
                if lb.rect.meets(&b.rect) {
                    bad.push(format!("{what}: label overlaps box {}", b.node));
                }
            }
            for &(j, r) in &labels {
                if j > k && lb.rect.meets(&r) {
                    bad.push(format!("{what}: label overlaps the label of edge {j}"));
                }
            }
            let text: String = lb.lines.iter().map(|t| t.text.as_str()).collect();
            if let Some(want) = spec.and_then(|s| s.label.as_deref())
                && no_spaces(&text) != no_spaces(want)
            {
                bad.push(format!("{what}: label reads {text:?}, not {want:?}"));
            }
        }
        if e.points.len() < 2 {
            bad.push(format!("{what}: {} points", e.points.len()));
            continue;
        }
        let (Some(from), Some(to)) = (l.boxes.get(e.from), l.boxes.get(e.to)) else {
            bad.push(format!("{what}: no such box"));
            continue;
        };
        let on = |r: &Rect, p: &shenpi_engine::diagram::layout::Point| {
            r.contains(&Rect {
                x: p.x,
                y: p.y,
                w: 0,
                h: 0,
            })
        };
        if let (Some(first), Some(last)) = (e.points.first(), e.points.last())
            && !(on(&from.rect, first) && on(&to.rect, last))
        {
            bad.push(format!("{what}: does not join its boxes"));
        }
        for seg in e.points.windows(2) {
            let [a, b] = seg else { continue };
            if !(on(&canvas, a) && on(&canvas, b)) {
                bad.push(format!("{what}: leaves the canvas"));
            }
            for (i, bx) in l.boxes.iter().enumerate() {
                if i != e.from && i != e.to && bx.rect.meets_segment(*a, *b) {
                    bad.push(format!("{what}: passes through box {}", bx.node));
                }
            }
            for &(j, r) in &labels {
                if r.meets_segment(*a, *b) {
                    bad.push(format!("{what}: passes through the label of edge {j}"));
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn shipped_workflows_lay_out_cleanly() {
    let mut all = Vec::new();
    for def in shipped() {
        let l = layout(&def);
        let (nodes, edges) = shenpi_engine::diagram::layout::describe(&def);
        for p in problems(&l, &nodes, &edges) {
            all.push(format!("{}: {p}", def.id()));
        }
        assert_eq!(l, layout(&def), "{}: layout is not deterministic", def.id());
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn shipped_workflows_show_full_names_and_every_branch() {
    for def in shipped() {
        let l = layout(&def);
        for (n, b) in def.workflow.nodes.iter().zip(&l.boxes) {
            let name = n.name.clone().unwrap_or_else(|| n.id.value.clone());
            let text: String = b.lines.iter().map(|t| t.text.as_str()).collect();
            assert!(text.contains(&name) || no_spaces(&text).contains(&no_spaces(&name)));
        }
        // A gateway's default route carries 否则, and every 驳回 edge its word.
        // `layout` keeps the graph's edge order.
        for (e, p) in def.graph.edge_weights().zip(&l.edges) {
            let want = match e {
                shenpi_engine::compile::Edge::Route(None) => Some("否则"),
                shenpi_engine::compile::Edge::RejectTo => Some("驳回"),
                _ => None,
            };
            if let Some(w) = want {
                let text: String = p
                    .label
                    .as_ref()
                    .map(|lb| lb.lines.iter().map(|t| t.text.as_str()).collect())
                    .unwrap_or_default();
                assert_eq!(text, w, "{}", def.id());
            }
        }
    }
}

#[test]
fn conditions_read_with_field_labels() {
    let def = shipped()
        .into_iter()
        .find(|d| d.id() == "provincial-major")
        .expect("provincial-major ships");
    let l = layout(&def);
    let labels: Vec<String> = l
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Condition)
        .filter_map(|e| e.label.as_ref())
        .map(|lb| lb.lines.iter().map(|t| t.text.as_str()).collect())
        .collect();
    assert!(
        labels
            .iter()
            .any(|t| t.contains("总投资（万元）") && t.contains("500000")),
        "{labels:?}"
    );
}

const KINDS: [NodeType; 6] = [
    NodeType::Task,
    NodeType::Gateway,
    NodeType::Parallel,
    NodeType::Wait,
    NodeType::Notify,
    NodeType::End,
];

const EDGE_KINDS: [EdgeKind; 5] = [
    EdgeKind::Next,
    EdgeKind::Condition,
    EdgeKind::Otherwise,
    EdgeKind::RejectTo,
    EdgeKind::OnReject,
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[审批受理并联查验出具批复省市县（）、]{1,30}",
        "[a-z_]{1,12}",
        "[审批a-z (]{1,20}",
    ]
}

fn graph() -> impl Strategy<Value = (Vec<NodeSpec>, Vec<EdgeSpec>, usize)> {
    (1usize..12).prop_flat_map(|n| {
        let nodes = prop::collection::vec(
            (
                0..KINDS.len(),
                name(),
                prop::collection::vec("[0-9个工作日部门]{0,24}", 0..3),
            ),
            n,
        );
        let edges = prop::collection::vec(
            (0..n, 0..n, 0..EDGE_KINDS.len(), "[a-z.>= 0-9审批]{1,40}"),
            0..(n * 2 + 2),
        );
        (nodes, edges, 0..n).prop_map(|(nodes, edges, start)| {
            let nodes = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (k, name, details))| NodeSpec {
                    id: format!("n{i}"),
                    name,
                    kind: KINDS.get(k).copied().unwrap_or(NodeType::Task),
                    details,
                })
                .collect();
            let edges = edges
                .into_iter()
                .map(|(from, to, k, label)| {
                    let kind = EDGE_KINDS.get(k).copied().unwrap_or(EdgeKind::Next);
                    EdgeSpec {
                        from,
                        to,
                        kind,
                        label: (kind != EdgeKind::Next).then_some(label),
                    }
                })
                .collect();
            (nodes, edges, start)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_graphs_lay_out_cleanly((nodes, edges, start) in graph()) {
        let l = layout_graph(&nodes, &edges, start);
        let bad = problems(&l, &nodes, &edges);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
        prop_assert_eq!(&l, &layout_graph(&nodes, &edges, start));
    }
}
