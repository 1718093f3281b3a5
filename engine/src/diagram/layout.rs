//! Where every box, line and label of a workflow diagram goes: a layered (Sugiyama-style) layout
//! of a compiled definition, as plain data that any renderer draws without deciding anything.
//!
//! The steps, each its own function:
//!
//! 1. **Boxes.** Each node's full name is wrapped over lines ([`super::text`]), never cut; a line
//!    or two of detail (time limit, departments of a parallel step, outcome) go under it. The box
//!    is as large as its text needs, by shape (a diamond needs twice the room of its text).
//! 2. **Ranks.** Edges are oriented top to bottom for ranking only: 驳回 edges point back by
//!    nature and are reversed, then a depth-first search from the start reverses whatever still
//!    closes a cycle (a gateway looping back). Each node's rank is its longest path from a source.
//! 3. **Rows.** Ranks are doubled: nodes sit on even rows, odd rows are the gaps between them. An
//!    edge that spans more than one row gets a placeholder on every row it crosses; an edge with a
//!    label gets its label as the placeholder on the first gap after its source, so a label takes
//!    room like a node does and nothing can be drawn over it.
//! 4. **Order.** Barycentre sweeps, down and up, reorder each row to reduce crossings; the order
//!    with the fewest crossings wins.
//! 5. **Coordinates.** Each row is placed as close as possible to its neighbours in the rows above
//!    and below (weighted so long edges run straight) while keeping its order and spacing: an
//!    exact least-squares fit under ordering constraints (pool-adjacent-violators), repeated.
//! 6. **Routes.** An edge runs vertically through every row it crosses, at its own placeholder or
//!    port, and diagonally only through the empty bands between rows. That is why no edge can
//!    pass through a box or a label other than its own: inside a row, every x belongs to exactly
//!    one item.
//!
//! Everything is integer pixels and every tie is broken by definition order, so the same
//! definition always gives the same picture.

use petgraph::visit::EdgeRef;

use super::text;
use crate::compile::{Definition, Edge};
use crate::limit::{Limit, Unit};
use crate::model::{JoinPolicy, Node, NodeType, Outcome, RawLimit, Workflow};

/// Font size of a node's name.
pub const NAME_SIZE: i32 = 14;
/// Font size of detail lines and edge labels.
pub const DETAIL_SIZE: i32 = 12;
const NAME_LEAD: i32 = 19;
const DETAIL_LEAD: i32 = 16;
/// Widest a name line may be, in pixels (twelve Chinese characters: most names of a step fit on
/// one line, and a longer one breaks before its bracket).
const NAME_MAX: i32 = 12 * NAME_SIZE;
/// A gateway's name sits inside a diamond, which needs twice its text's width: keep it narrow.
const GATEWAY_NAME_MAX: i32 = 7 * NAME_SIZE;
const DETAIL_MAX: i32 = 13 * DETAIL_SIZE;
const LABEL_MAX: i32 = 14 * DETAIL_SIZE;
const PAD_X: i32 = 12;
const PAD_Y: i32 = 8;
const MIN_BOX_W: i32 = 120;
/// Space between a box and its neighbour in the same row.
const SEP: i32 = 24;
/// Space between two edges passing side by side.
const SEP_LINES: i32 = 14;
/// Space between an edge and its label.
const LABEL_GAP: i32 = 6;
/// Height of the empty band between rows, where edges change lanes.
const ROW_GAP: i32 = 22;
const MARGIN: i32 = 20;
/// A loop from a node back to itself goes out of its right side this far (per loop).
const LOOP_OUT: i32 = 16;
/// Space between labels stacked one above the other.
const STACK_GAP: i32 = 2;
const SWEEPS: usize = 24;
const PLACEMENT_ROUNDS: usize = 40;

/// An axis-aligned rectangle; `x`, `y` is the top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn right(&self) -> i32 {
        self.x + self.w
    }

    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }

    pub fn center(&self) -> Point {
        Point {
            x: self.x + self.w / 2,
            y: self.y + self.h / 2,
        }
    }

    /// Whether the two rectangles share any point (touching edges count).
    pub fn meets(&self, o: &Rect) -> bool {
        self.x <= o.right() && o.x <= self.right() && self.y <= o.bottom() && o.y <= self.bottom()
    }

    /// Whether `o` lies wholly inside this rectangle.
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }

    /// Whether the segment from `a` to `b` shares any point with this rectangle (Liang–Barsky
    /// clipping: the segment's parameter ranges inside the two slabs must overlap).
    pub fn meets_segment(&self, a: Point, b: Point) -> bool {
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        let slabs = [
            (a.x, b.x, self.x, self.right()),
            (a.y, b.y, self.y, self.bottom()),
        ];
        for (p, q, min, max) in slabs {
            let (p, q, min, max) = (f64::from(p), f64::from(q), f64::from(min), f64::from(max));
            let d = q - p;
            if d == 0.0 {
                if p < min || p > max {
                    return false;
                }
                continue;
            }
            let (t1, t2) = ((min - p) / d, (max - p) / d);
            lo = lo.max(t1.min(t2));
            hi = hi.min(t1.max(t2));
            if lo > hi {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

/// Whether a line of text is a name (larger, bold) or a detail (smaller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRole {
    Name,
    Detail,
}

/// Where a line's `x` is: its middle, or its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Middle,
    Start,
}

/// One line of text at its place: `y` is the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLine {
    pub text: String,
    pub x: i32,
    pub y: i32,
    pub size: i32,
    pub role: LineRole,
    pub anchor: Anchor,
}

/// A node as drawn: its shape fills `rect` (a gateway's diamond touches the middle of each side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBox {
    /// The node's id in the workflow.
    pub node: String,
    /// The full name (the id when the node has none).
    pub name: String,
    pub kind: NodeType,
    pub rect: Rect,
    pub lines: Vec<TextLine>,
}

/// What an edge means, which decides how it is drawn and what its label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// `next`: the flow goes on.
    Next,
    /// A gateway route with a condition.
    Condition,
    /// A gateway's default route (否则).
    Otherwise,
    /// A 驳回 target: back to an earlier node.
    RejectTo,
    /// Where a final rejection goes (不予通过).
    OnReject,
}

/// An edge's label: its text lines inside `rect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLabel {
    pub rect: Rect,
    pub lines: Vec<TextLine>,
}

/// An edge as drawn: a polyline from the source box's outline to the target box's outline (the
/// arrow goes at the last point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePath {
    /// Index into [`Layout::boxes`] of the source.
    pub from: usize,
    /// Index into [`Layout::boxes`] of the target.
    pub to: usize,
    pub kind: EdgeKind,
    pub points: Vec<Point>,
    pub label: Option<EdgeLabel>,
}

/// A laid-out diagram: a `width` × `height` canvas with its boxes (in definition order) and edges
/// (in the definition graph's edge order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub width: i32,
    pub height: i32,
    pub boxes: Vec<NodeBox>,
    pub edges: Vec<EdgePath>,
}

/// A node to lay out, before any geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: String,
    pub name: String,
    pub kind: NodeType,
    /// Smaller lines under the name.
    pub details: Vec<String>,
}

/// An edge to lay out, between positions in the node list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpec {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    pub label: Option<String>,
}

/// Lays out a compiled definition.
pub fn layout(def: &Definition) -> Layout {
    let (nodes, edges) = describe(def);
    let start = def.node_ix(&def.workflow.start.value).unwrap_or(0);
    layout_graph(&nodes, &edges, start)
}

// ---------------------------------------------------------------------------------------------
// What the boxes and labels say

/// The nodes and edges of a definition as the diagram shows them, in definition and graph order.
pub fn describe(def: &Definition) -> (Vec<NodeSpec>, Vec<EdgeSpec>) {
    let w = &def.workflow;
    let nodes = w
        .nodes
        .iter()
        .map(|n| NodeSpec {
            id: n.id.value.clone(),
            name: n.name.clone().unwrap_or_else(|| n.id.value.clone()),
            kind: n.ty.value,
            details: details(w, n),
        })
        .collect();
    let edges = def
        .graph
        .edge_references()
        .map(|e| {
            let (kind, label) = match e.weight() {
                Edge::Next => (EdgeKind::Next, None),
                Edge::Route(Some(c)) => (EdgeKind::Condition, Some(readable_condition(w, c))),
                Edge::Route(None) => (EdgeKind::Otherwise, Some("否则".to_string())),
                Edge::RejectTo => (EdgeKind::RejectTo, Some("驳回".to_string())),
                Edge::OnReject => (EdgeKind::OnReject, Some("不予通过".to_string())),
            };
            EdgeSpec {
                from: e.source().index(),
                to: e.target().index(),
                kind,
                label,
            }
        })
        .collect();
    (nodes, edges)
}

/// A limit as people say it: 10个工作日, 5天, 8小时 (the notation as written if it does not read).
fn limit_words(raw: &RawLimit) -> String {
    match Limit::parse(raw, true) {
        Ok(l) => {
            let unit = match l.unit {
                Unit::WorkingDays => "个工作日",
                Unit::Days => "天",
                Unit::Hours => "小时",
            };
            format!("{}{unit}", l.amount)
        }
        Err(_) => match raw {
            RawLimit::Days(n) => format!("{n}个工作日"),
            RawLimit::Text(t) => t.clone(),
        },
    }
}

/// The smaller lines under a node's name: its time limit, a parallel step's join and
/// departments, a wait's length, an end's outcome.
fn details(w: &Workflow, n: &Node) -> Vec<String> {
    let limit = n
        .limit
        .as_ref()
        .map(|l| format!("时限 {}", limit_words(&l.value)));
    let mut out = Vec::new();
    match n.ty.value {
        NodeType::Task => out.extend(limit),
        NodeType::Parallel => {
            let join = match n.join.as_ref().map(|j| j.policy.value) {
                Some(JoinPolicy::Any) => "或签".to_string(),
                Some(JoinPolicy::Vote) => match n.join.as_ref().and_then(|j| j.share.as_ref()) {
                    Some(s) => format!("票签 {}", s.value),
                    None => "票签".to_string(),
                },
                Some(JoinPolicy::All) | None => "会签".to_string(),
            };
            out.push(format!("并联 {} 部门 · {join}", n.branches.len()));
            out.extend(limit);
            // Branches of one department (several experts of one panel) are one line with a
            // count, so that the box says who takes part rather than repeating a name.
            let mut seen: Vec<(String, usize)> = Vec::new();
            for b in &n.branches {
                let mut line = w
                    .departments
                    .iter()
                    .find(|d| d.id.value == b.department.value)
                    .and_then(|d| d.name.clone())
                    .unwrap_or_else(|| b.department.value.clone());
                if n.lead.as_ref().is_some_and(|l| l.value == b.id.value) {
                    line.push_str("（牵头）");
                }
                if b.when.is_some() {
                    line.push_str("（视情况）");
                }
                match seen.iter_mut().find(|(l, _)| *l == line) {
                    Some((_, count)) => *count += 1,
                    None => seen.push((line, 1)),
                }
            }
            out.extend(seen.into_iter().map(|(line, count)| {
                if count > 1 {
                    format!("{line} ×{count}")
                } else {
                    line
                }
            }));
        }
        NodeType::Gateway => {}
        NodeType::Wait => {
            if let Some(wt) = &n.wait {
                out.push(format!("等待 {}", limit_words(&wt.value)));
            }
        }
        NodeType::Notify => out.push("发送通知".to_string()),
        NodeType::End => {
            let o = n.outcome.as_ref().map_or(Outcome::Approved, |o| o.value);
            out.push(
                match o {
                    Outcome::Approved => "结束：通过",
                    Outcome::Rejected => "结束：不予通过",
                    Outcome::Withdrawn => "结束：撤回",
                    Outcome::Revoked => "结束：撤销",
                }
                .to_string(),
            );
        }
    }
    out
}

/// A gateway condition with `project.<field>` written as the field's label, so that people read
/// `总投资（万元） >= 500000` rather than `project.investment >= 500000`. Everything else stays
/// as written.
fn readable_condition(w: &Workflow, cond: &str) -> String {
    const PREFIX: &str = "project.";
    let mut out = String::with_capacity(cond.len());
    let mut rest = cond;
    while let Some(at) = rest.find(PREFIX) {
        let (head, tail) = rest.split_at(at);
        // `xproject.a` or `a.project.b` are not field references.
        let starts_word = head
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        out.push_str(head);
        let after = tail.get(PREFIX.len()..).unwrap_or("");
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let (ident, after_ident) = after.split_at(end);
        let label = w
            .fields
            .iter()
            .find(|f| f.id.value == ident)
            .and_then(|f| f.label.as_deref());
        match label {
            Some(l) if starts_word && !ident.is_empty() => {
                out.push_str(l);
                rest = after_ident;
            }
            _ => {
                out.push_str(PREFIX);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// The layout proper

/// One item of a row: a node's box, or where an edge crosses the row (with its label, on one of
/// them).
#[derive(Debug, Clone)]
struct Slot {
    row: usize,
    /// Width of the room the item takes in its row.
    w: i32,
    h: i32,
    /// Where, from the left of that room, lines attach (a box's middle, a crossing's line).
    anchor: i32,
    item: Item,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Node,
    /// Where an edge crosses a row; `label` when its label is drawn here, right of the line.
    Crossing {
        label: bool,
    },
}

/// A node's box before it is placed: size, and text relative to the box's top-left.
struct Sized {
    w: i32,
    h: i32,
    lines: Vec<TextLine>,
}

/// A label before it is placed.
struct SizedLabel {
    w: i32,
    h: i32,
    lines: Vec<String>,
}

/// Lays out any graph: `nodes` in order, `edges` between their positions (an edge naming a
/// position out of range is drawn nowhere), `start` the node to rank and order first.
pub fn layout_graph(nodes: &[NodeSpec], edges: &[EdgeSpec], start: usize) -> Layout {
    let n = nodes.len();
    // Edges out of range are kept as loops on nothing so that indices still match the input.
    let valid: Vec<bool> = edges.iter().map(|e| e.from < n && e.to < n).collect();
    let sized: Vec<Sized> = nodes.iter().map(size_node).collect();
    let labels: Vec<Option<SizedLabel>> = edges
        .iter()
        .map(|e| e.label.as_deref().map(size_label))
        .collect();

    let (ranked, reversed) = orient(n, edges, &valid, start);
    let rank = longest_path_ranks(n, &ranked);

    // Slots: nodes first (slot i is node i), then the crossings of each edge in turn.
    let mut slots: Vec<Slot> = sized
        .iter()
        .enumerate()
        .map(|(i, s)| Slot {
            row: rank.get(i).copied().unwrap_or(0) * 2,
            w: s.w,
            h: s.h,
            anchor: s.w / 2,
            item: Item::Node,
        })
        .collect();
    // Self-loops widen their node's room to the right, for the loops (nested) and their labels
    // (stacked).
    let loops = self_loops(n, edges);
    for (i, list) in loops.iter().enumerate() {
        if list.is_empty() {
            continue;
        }
        let (lw, lh) = list
            .iter()
            .filter_map(|&k| labels.get(k).and_then(Option::as_ref))
            .fold((0, 0), |(w, h), l| {
                (w.max(l.w + LABEL_GAP), h + l.h + STACK_GAP)
            });
        if let Some(slot) = slots.get_mut(i) {
            slot.w += LOOP_OUT * i32::try_from(list.len()).unwrap_or(1) + lw + SEP_LINES;
            slot.h = slot.h.max(lh);
        }
    }
    // chains[k]: the slots edge k passes through, top to bottom (empty for a self-loop).
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for (k, e) in edges.iter().enumerate() {
        if e.from == e.to || !valid.get(k).copied().unwrap_or(false) {
            chains.push(Vec::new());
            continue;
        }
        let is_reversed = reversed.get(k).copied().unwrap_or(false);
        let (top, bottom) = if is_reversed {
            (e.to, e.from)
        } else {
            (e.from, e.to)
        };
        let r0 = slots.get(top).map_or(0, |s| s.row);
        let r1 = slots.get(bottom).map_or(0, |s| s.row);
        // The label goes on the gap row next to where the edge leaves its source.
        let label_row = if is_reversed {
            r1.saturating_sub(1)
        } else {
            r0 + 1
        };
        let label = labels.get(k).and_then(Option::as_ref);
        let mut chain = vec![top];
        for row in r0 + 1..r1 {
            let here = row == label_row && label.is_some();
            let w = match (here, label) {
                (true, Some(l)) => LABEL_GAP + l.w,
                _ => 0,
            };
            let h = match (here, label) {
                (true, Some(l)) => l.h,
                _ => 0,
            };
            chain.push(slots.len());
            slots.push(Slot {
                row,
                w,
                h,
                anchor: 0,
                item: Item::Crossing { label: here },
            });
        }
        chain.push(bottom);
        chains.push(chain);
    }

    let row_count = slots.iter().map(|s| s.row + 1).max().unwrap_or(0);
    // Links between slots on adjacent rows, each as (upper, lower, weight).
    let links: Vec<(usize, usize, f64)> = chains
        .iter()
        .flat_map(|c| c.windows(2))
        .filter_map(|w| match w {
            [a, b] => Some((*a, *b, link_weight(&slots, *a, *b))),
            _ => None,
        })
        .collect();
    let rows = order_rows(&slots, row_count, &links, start);
    let xs = place_rows(&slots, &rows, &links);
    let plan = Plan {
        slots: &slots,
        rows: &rows,
        xs: &xs,
        chains: &chains,
        reversed: &reversed,
        loops: &loops,
        labels: &labels,
    };
    build(nodes, edges, &sized, &plan)
}

/// Long edges should run straight: a link between two crossings pulls hardest.
fn link_weight(slots: &[Slot], a: usize, b: usize) -> f64 {
    let crossing = |s: usize| matches!(slots.get(s).map(|s| s.item), Some(Item::Crossing { .. }));
    match (crossing(a), crossing(b)) {
        (true, true) => 8.0,
        (false, false) => 1.0,
        _ => 2.0,
    }
}

fn size_node(n: &NodeSpec) -> Sized {
    let name_max = if n.kind == NodeType::Gateway {
        GATEWAY_NAME_MAX
    } else {
        NAME_MAX
    };
    let mut texts: Vec<(String, LineRole)> = text::wrap(&n.name, NAME_SIZE, name_max)
        .into_iter()
        .map(|l| (l, LineRole::Name))
        .collect();
    for d in &n.details {
        texts.extend(
            text::wrap(d, DETAIL_SIZE, DETAIL_MAX)
                .into_iter()
                .map(|l| (l, LineRole::Detail)),
        );
    }
    let size_of = |r: LineRole| match r {
        LineRole::Name => (NAME_SIZE, NAME_LEAD),
        LineRole::Detail => (DETAIL_SIZE, DETAIL_LEAD),
    };
    let text_w = texts
        .iter()
        .map(|(t, r)| text::width(t, size_of(*r).0))
        .max()
        .unwrap_or(0);
    let text_h: i32 = texts.iter().map(|(_, r)| size_of(*r).1).sum();
    let (w, h) = match n.kind {
        // A rectangle of half-size (p, q) fits in a diamond of half-size (2p, 2q).
        NodeType::Gateway => (2 * text_w + 4 * PAD_X, 2 * text_h + 2 * PAD_Y),
        // The rounded ends of a stadium take half its height on each side.
        NodeType::End => {
            let h = text_h + 2 * PAD_Y;
            (text_w + 2 * PAD_X + h, h)
        }
        // The inner border of a parallel step takes a few pixels more.
        NodeType::Parallel => (text_w + 2 * PAD_X + 8, text_h + 2 * PAD_Y + 8),
        _ => (text_w + 2 * PAD_X, text_h + 2 * PAD_Y),
    };
    // Even sizes keep the middle on a whole pixel.
    let w = even(w.max(MIN_BOX_W));
    let h = even(h);
    let mut y = (h - text_h) / 2;
    let lines = texts
        .into_iter()
        .map(|(t, role)| {
            let (size, lead) = size_of(role);
            // The baseline sits below the middle of the line by about a third of the size.
            let baseline = y + lead / 2 + size / 3;
            y += lead;
            TextLine {
                text: t,
                x: w / 2,
                y: baseline,
                size,
                role,
                anchor: Anchor::Middle,
            }
        })
        .collect();
    Sized { w, h, lines }
}

fn even(v: i32) -> i32 {
    v + v.rem_euclid(2)
}

fn size_label(t: &str) -> SizedLabel {
    let lines = text::wrap(t, DETAIL_SIZE, LABEL_MAX);
    let w = lines
        .iter()
        .map(|l| text::width(l, DETAIL_SIZE))
        .max()
        .unwrap_or(0)
        + 6;
    let h = DETAIL_LEAD * i32::try_from(lines.len()).unwrap_or(1) + 2;
    SizedLabel { w, h, lines }
}

/// Edges as ranking sees them: each as (upper, lower), and whether that reverses it. 驳回 edges
/// are reversed up front; a depth-first search from `start` (then from every node not yet seen,
/// in order) reverses any edge that still closes a cycle. Self-loops are left out.
fn orient(
    n: usize,
    edges: &[EdgeSpec],
    valid: &[bool],
    start: usize,
) -> (Vec<(usize, usize)>, Vec<bool>) {
    let mut reversed: Vec<bool> = edges.iter().map(|e| e.kind == EdgeKind::RejectTo).collect();
    let ends = |k: usize, rev: &[bool]| {
        let e = edges.get(k)?;
        Some(if rev.get(k).copied().unwrap_or(false) {
            (e.to, e.from)
        } else {
            (e.from, e.to)
        })
    };
    let ranked_edge = |k: usize| {
        valid.get(k).copied().unwrap_or(false) && edges.get(k).is_some_and(|e| e.from != e.to)
    };
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for k in (0..edges.len()).filter(|&k| ranked_edge(k)) {
        if let Some((u, _)) = ends(k, &reversed)
            && let Some(list) = out_edges.get_mut(u)
        {
            list.push(k);
        }
    }
    // 0 unseen, 1 on the stack, 2 finished.
    let mut state = vec![0u8; n];
    for root in std::iter::once(start).chain(0..n) {
        if state.get(root).copied() != Some(0) {
            continue;
        }
        // (node, how many of its outgoing edges have been looked at)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        if let Some(s) = state.get_mut(root) {
            *s = 1;
        }
        while let Some(top) = stack.last_mut() {
            let (u, seen) = *top;
            let Some(&k) = out_edges.get(u).and_then(|l| l.get(seen)) else {
                if let Some(s) = state.get_mut(u) {
                    *s = 2;
                }
                stack.pop();
                continue;
            };
            top.1 += 1;
            // The edge's direction is still the one it was listed under: it is only ever
            // flipped here, when found closing a cycle, and then never looked at again.
            let Some((_, v)) = ends(k, &reversed) else {
                continue;
            };
            match state.get(v).copied() {
                Some(0) => {
                    if let Some(s) = state.get_mut(v) {
                        *s = 1;
                    }
                    stack.push((v, 0));
                }
                Some(1) => {
                    if let Some(r) = reversed.get_mut(k) {
                        *r = !*r;
                    }
                }
                _ => {}
            }
        }
    }
    let ranked = (0..edges.len())
        .filter(|&k| ranked_edge(k))
        .filter_map(|k| ends(k, &reversed))
        .collect();
    (ranked, reversed)
}

/// Each node's rank: the length of the longest path to it from a node with no edge coming in.
/// `edges` must be acyclic (as [`orient`] makes them); should they not be, the nodes on a cycle
/// keep the rank they had reached rather than loop.
fn longest_path_ranks(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(u, v) in edges {
        if let (Some(d), Some(o)) = (indegree.get_mut(v), out.get_mut(u)) {
            *d += 1;
            o.push(v);
        }
    }
    let mut rank = vec![0usize; n];
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&v| indegree.get(v) == Some(&0)).collect();
    while let Some(u) = ready.pop_front() {
        let ru = rank.get(u).copied().unwrap_or(0);
        for &v in out.get(u).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(r) = rank.get_mut(v) {
                *r = (*r).max(ru + 1);
            }
            if let Some(d) = indegree.get_mut(v) {
                *d -= 1;
                if *d == 0 {
                    ready.push_back(v);
                }
            }
        }
    }
    rank
}

/// The order of the slots in each row: a first order by depth-first search from the start, then
/// barycentre sweeps down and up; the order with the fewest crossings is kept.
fn order_rows(
    slots: &[Slot],
    row_count: usize,
    links: &[(usize, usize, f64)],
    start: usize,
) -> Vec<Vec<usize>> {
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); slots.len()];
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); slots.len()];
    for &(a, b, _) in links {
        if let Some(d) = down.get_mut(a) {
            d.push(b);
        }
        if let Some(u) = up.get_mut(b) {
            u.push(a);
        }
    }
    // First order: slots as a depth-first walk down from the start meets them, so that a chain
    // of nodes stays in one column; then the rest in slot order.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); row_count];
    let mut seen = vec![false; slots.len()];
    for root in std::iter::once(start).chain(0..slots.len()) {
        let mut stack = vec![root];
        while let Some(s) = stack.pop() {
            if seen.get(s).copied() != Some(false) {
                continue;
            }
            if let Some(f) = seen.get_mut(s) {
                *f = true;
            }
            if let Some(row) = slots.get(s).and_then(|sl| rows.get_mut(sl.row)) {
                row.push(s);
            }
            // Pushed in reverse so that the first link is walked first.
            for &t in down.get(s).map(Vec::as_slice).unwrap_or(&[]).iter().rev() {
                stack.push(t);
            }
        }
    }
    let mut best = rows.clone();
    let mut best_crossings = crossings(&rows, links);
    for sweep in 0..SWEEPS {
        if best_crossings == 0 {
            break;
        }
        let going_down = sweep % 2 == 0;
        let order: Vec<usize> = if going_down {
            (1..row_count).collect()
        } else {
            (0..row_count.saturating_sub(1)).rev().collect()
        };
        for r in order {
            let fixed = if going_down { r - 1 } else { r + 1 };
            let pos = positions(slots.len(), rows.get(fixed));
            let adj = if going_down { &up } else { &down };
            if let Some(row) = rows.get_mut(r) {
                sort_by_barycentre(row, adj, &pos);
            }
        }
        let c = crossings(&rows, links);
        if c < best_crossings {
            best_crossings = c;
            best = rows.clone();
        }
    }
    best
}

/// Each slot's index in `row` (only those in it are set).
fn positions(n: usize, row: Option<&Vec<usize>>) -> Vec<Option<f64>> {
    let mut pos = vec![None; n];
    for (i, &s) in row.map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        if let Some(p) = pos.get_mut(s) {
            *p = Some(i as f64);
        }
    }
    pos
}

/// Sorts a row by the mean position of each slot's neighbours in the fixed row; a slot with no
/// neighbour there keeps its place. The sort is stable, so ties keep the current order.
fn sort_by_barycentre(row: &mut [usize], adj: &[Vec<usize>], pos: &[Option<f64>]) {
    let mut keyed: Vec<(usize, f64)> = row
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let ps: Vec<f64> = adj
                .get(s)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter_map(|&t| pos.get(t).copied().flatten())
                .collect();
            let key = if ps.is_empty() {
                i as f64
            } else {
                ps.iter().sum::<f64>() / ps.len() as f64
            };
            (s, key)
        })
        .collect();
    keyed.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (dst, (s, _)) in row.iter_mut().zip(keyed) {
        *dst = s;
    }
}

/// How many pairs of links between adjacent rows cross.
fn crossings(rows: &[Vec<usize>], links: &[(usize, usize, f64)]) -> usize {
    let n = rows.iter().map(Vec::len).sum::<usize>();
    let mut at = vec![0usize; n];
    let mut row_of = vec![usize::MAX; n];
    for (r, row) in rows.iter().enumerate() {
        for (i, &s) in row.iter().enumerate() {
            if let (Some(a), Some(ro)) = (at.get_mut(s), row_of.get_mut(s)) {
                *a = i;
                *ro = r;
            }
        }
    }
    let mut by_row: Vec<Vec<(usize, usize)>> = vec![Vec::new(); rows.len()];
    for &(a, b, _) in links {
        if let (Some(&r), Some(&pa), Some(&pb)) = (row_of.get(a), at.get(a), at.get(b))
            && let Some(list) = by_row.get_mut(r)
        {
            list.push((pa, pb));
        }
    }
    let mut count = 0;
    for list in &by_row {
        for (i, &(a1, b1)) in list.iter().enumerate() {
            for &(a2, b2) in list.iter().skip(i + 1) {
                if (a1 < a2 && b1 > b2) || (a1 > a2 && b1 < b2) {
                    count += 1;
                }
            }
        }
    }
    count
}

/// The least room between the anchors of two slots side by side, `a` left of `b`.
fn min_distance(a: &Slot, b: &Slot) -> i32 {
    let bare = |s: &Slot| s.w == 0;
    let sep = if bare(a) && bare(b) { SEP_LINES } else { SEP };
    (a.w - a.anchor) + sep + b.anchor
}

/// The x of each slot's anchor. Rows start packed; then, repeatedly, each row is moved as close
/// as it can be to where its neighbours pull it, keeping its order and spacing.
fn place_rows(slots: &[Slot], rows: &[Vec<usize>], links: &[(usize, usize, f64)]) -> Vec<i32> {
    let mut x = vec![0.0_f64; slots.len()];
    for row in rows {
        let mut at = 0.0;
        let mut prev: Option<&Slot> = None;
        for &s in row {
            let Some(slot) = slots.get(s) else { continue };
            at = match prev {
                Some(p) => at + f64::from(min_distance(p, slot)),
                None => f64::from(slot.anchor),
            };
            if let Some(v) = x.get_mut(s) {
                *v = at;
            }
            prev = Some(slot);
        }
    }
    let mut pulls: Vec<Vec<(usize, f64)>> = vec![Vec::new(); slots.len()];
    for &(a, b, w) in links {
        if let Some(p) = pulls.get_mut(a) {
            p.push((b, w));
        }
        if let Some(p) = pulls.get_mut(b) {
            p.push((a, w));
        }
    }
    for round in 0..PLACEMENT_ROUNDS {
        let order: Vec<&Vec<usize>> = if round % 2 == 0 {
            rows.iter().collect()
        } else {
            rows.iter().rev().collect()
        };
        for row in order {
            let wanted: Vec<(f64, f64)> = row
                .iter()
                .map(|&s| {
                    let ps = pulls.get(s).map(Vec::as_slice).unwrap_or(&[]);
                    let total: f64 = ps.iter().map(|p| p.1).sum();
                    let here = x.get(s).copied().unwrap_or(0.0);
                    if total == 0.0 {
                        // Nothing pulls it: it stays, and gives way easily.
                        (here, 0.25)
                    } else {
                        let sum: f64 = ps
                            .iter()
                            .map(|&(t, w)| w * x.get(t).copied().unwrap_or(0.0))
                            .sum();
                        (sum / total, total)
                    }
                })
                .collect();
            let gaps: Vec<f64> = row
                .windows(2)
                .map(|w| match w {
                    [a, b] => match (slots.get(*a), slots.get(*b)) {
                        (Some(a), Some(b)) => f64::from(min_distance(a, b)),
                        _ => 0.0,
                    },
                    _ => 0.0,
                })
                .collect();
            for (&s, v) in row.iter().zip(fit_in_order(&wanted, &gaps)) {
                if let Some(slot_x) = x.get_mut(s) {
                    *slot_x = v;
                }
            }
        }
    }
    // Shift so the leftmost room starts at the margin, then round: spacing survives rounding
    // because every minimum distance is a whole number of pixels.
    let left = slots
        .iter()
        .zip(&x)
        .map(|(s, &v)| v - f64::from(s.anchor))
        .fold(f64::INFINITY, f64::min);
    let shift = if left.is_finite() {
        f64::from(MARGIN) - left
    } else {
        0.0
    };
    x.iter()
        .map(|v| {
            // Saturates rather than wraps; a diagram's coordinates are far inside the range.
            (v + shift)
                .round()
                .clamp(f64::from(i32::MIN / 4), f64::from(i32::MAX / 4)) as i32
        })
        .collect()
}

/// Positions for the items of a row, as close as possible (weighted least squares) to where each
/// wants to be, with at least `gaps[i]` between item `i` and `i + 1`. Subtracting the running
/// sum of the gaps turns the constraints into "non-decreasing", which pool-adjacent-violators
/// solves exactly.
fn fit_in_order(wanted: &[(f64, f64)], gaps: &[f64]) -> Vec<f64> {
    let mut offset = Vec::with_capacity(wanted.len());
    let mut acc = 0.0;
    for i in 0..wanted.len() {
        if i > 0 {
            acc += gaps.get(i - 1).copied().unwrap_or(0.0);
        }
        offset.push(acc);
    }
    // Blocks of (mean, weight, count).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
    for (&(want, w), &o) in wanted.iter().zip(&offset) {
        blocks.push((want - o, w, 1));
        while let [.., a, b] = blocks.as_slice() {
            if a.0 <= b.0 {
                break;
            }
            let w = a.1 + b.1;
            let merged = ((a.0 * a.1 + b.0 * b.1) / w, w, a.2 + b.2);
            blocks.truncate(blocks.len() - 2);
            blocks.push(merged);
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (mean, _, count) in blocks {
        for _ in 0..count {
            let o = offset.get(out.len()).copied().unwrap_or(0.0);
            out.push(mean + o);
        }
    }
    out
}

/// What [`build`] turns into geometry.
struct Plan<'a> {
    slots: &'a [Slot],
    rows: &'a [Vec<usize>],
    xs: &'a [i32],
    chains: &'a [Vec<usize>],
    reversed: &'a [bool],
    loops: &'a [Vec<usize>],
    labels: &'a [Option<SizedLabel>],
}

/// Turns slots, rows and x positions into boxes, labels and polylines.
fn build(nodes: &[NodeSpec], edges: &[EdgeSpec], sized: &[Sized], p: &Plan<'_>) -> Layout {
    // Row bands: top and height.
    let mut band: Vec<(i32, i32)> = Vec::with_capacity(p.rows.len());
    let mut y = MARGIN;
    for row in p.rows {
        let h = row
            .iter()
            .filter_map(|&s| p.slots.get(s))
            .map(|s| s.h)
            .max()
            .unwrap_or(0);
        band.push((y, h));
        y += h + ROW_GAP;
    }
    let height = (y - ROW_GAP + MARGIN).max(2 * MARGIN);
    let left_of =
        |s: usize| p.xs.get(s).copied().unwrap_or(0) - p.slots.get(s).map_or(0, |sl| sl.anchor);
    let width = (0..p.slots.len())
        .map(|s| left_of(s) + p.slots.get(s).map_or(0, |sl| sl.w))
        .max()
        .unwrap_or(0)
        + MARGIN;
    let band_of = |s: usize| -> (i32, i32) {
        p.slots
            .get(s)
            .and_then(|sl| band.get(sl.row))
            .copied()
            .unwrap_or((0, 0))
    };

    let boxes: Vec<NodeBox> = nodes
        .iter()
        .zip(sized)
        .enumerate()
        .map(|(i, (n, s))| {
            let (top, h) = band_of(i);
            let rect = Rect {
                x: left_of(i),
                y: top + (h - s.h) / 2,
                w: s.w,
                h: s.h,
            };
            let lines = s
                .lines
                .iter()
                .map(|l| TextLine {
                    x: rect.x + l.x,
                    y: rect.y + l.y,
                    ..l.clone()
                })
                .collect();
            NodeBox {
                node: n.id.clone(),
                name: n.name.clone(),
                kind: n.kind,
                rect,
                lines,
            }
        })
        .collect();

    let (leave, enter) = ports(&boxes, edges.len(), p);
    let mut paths = Vec::with_capacity(edges.len());
    for (k, e) in edges.iter().enumerate() {
        let chain = p.chains.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let label = p.labels.get(k).and_then(Option::as_ref);
        let (mut points, placed) = if e.from == e.to {
            self_loop(boxes.get(e.from), k, p.loops.get(e.from), p.labels)
        } else {
            let ends = (
                leave.get(k).copied().unwrap_or(0),
                enter.get(k).copied().unwrap_or(0),
            );
            route(chain, &boxes, p, &band_of, ends, label)
        };
        if p.reversed.get(k).copied().unwrap_or(false) {
            points.reverse();
        }
        paths.push(EdgePath {
            from: e.from,
            to: e.to,
            kind: e.kind,
            points,
            label: placed,
        });
    }
    Layout {
        width,
        height,
        boxes,
        edges: paths,
    }
}

/// Where each edge leaves its upper box and enters its lower one (x of each, by edge): spread
/// along the side it uses, in the order of where the edge goes next, so that edges leaving one
/// box do not cross at once.
fn ports(boxes: &[NodeBox], edge_count: usize, p: &Plan<'_>) -> (Vec<i32>, Vec<i32>) {
    let mut bottom: Vec<Vec<(i32, usize)>> = vec![Vec::new(); boxes.len()];
    let mut top: Vec<Vec<(i32, usize)>> = vec![Vec::new(); boxes.len()];
    let x_of = |s: usize| p.xs.get(s).copied().unwrap_or(0);
    for (k, chain) in p.chains.iter().enumerate() {
        let (Some(&first), Some(&second)) = (chain.first(), chain.get(1)) else {
            continue;
        };
        let (Some(&last), Some(&before)) = (chain.last(), chain.iter().rev().nth(1)) else {
            continue;
        };
        if let Some(list) = bottom.get_mut(first) {
            list.push((x_of(second), k));
        }
        if let Some(list) = top.get_mut(last) {
            list.push((x_of(before), k));
        }
    }
    let mut leave = vec![0i32; edge_count];
    let mut enter = vec![0i32; edge_count];
    for (b, (down, up)) in boxes.iter().zip(bottom.iter_mut().zip(top.iter_mut())) {
        for (list, out) in [(down, &mut leave), (up, &mut enter)] {
            list.sort_unstable();
            let count = i32::try_from(list.len()).unwrap_or(1);
            // The part of the side that is the shape's own outline, not a corner of its rect.
            let span = match b.kind {
                NodeType::Gateway => b.rect.w / 2,
                NodeType::End => (b.rect.w - b.rect.h).max(0),
                _ => b.rect.w * 3 / 4,
            };
            let cx = b.rect.center().x;
            for (i, &(_, k)) in list.iter().enumerate() {
                let i = i32::try_from(i).unwrap_or(0);
                // (i + 1) / (count + 1) of the way along the span.
                let dx = span * (2 * (i + 1) - (count + 1)) / (2 * (count + 1));
                if let Some(v) = out.get_mut(k) {
                    *v = cx + dx;
                }
            }
        }
    }
    (leave, enter)
}

/// Where a vertical line at `x` meets the top or bottom of a box's shape.
fn outline_y(b: &NodeBox, x: i32, top: bool) -> i32 {
    let r = b.rect;
    let c = r.center();
    let half_w = r.w / 2;
    let dy = match b.kind {
        // On a diamond's outline, |dx| / (w/2) + |dy| / (h/2) = 1.
        NodeType::Gateway if half_w > 0 => {
            let dx = (x - c.x).abs().min(half_w);
            (r.h / 2) * (half_w - dx) / half_w
        }
        _ => r.h / 2,
    };
    if top { c.y - dy } else { c.y + dy }
}

/// The polyline of an edge along its chain of slots (top to bottom): out of the upper box at its
/// port, down through each row it crosses at its crossing, into the lower box at its port. Inside
/// a row it only runs vertically; it changes lanes in the empty bands between rows.
fn route(
    chain: &[usize],
    boxes: &[NodeBox],
    p: &Plan<'_>,
    band_of: &dyn Fn(usize) -> (i32, i32),
    (leave_x, enter_x): (i32, i32),
    label: Option<&SizedLabel>,
) -> (Vec<Point>, Option<EdgeLabel>) {
    let mut pts: Vec<Point> = Vec::new();
    let mut placed = None;
    let mut push = |p: Point| {
        if pts.last() != Some(&p) {
            pts.push(p);
        }
    };
    let last = chain.len().saturating_sub(1);
    for (i, &s) in chain.iter().enumerate() {
        let (top, h) = band_of(s);
        if i == 0 {
            if let Some(b) = boxes.get(s) {
                push(Point {
                    x: leave_x,
                    y: outline_y(b, leave_x, false),
                });
                push(Point {
                    x: leave_x,
                    y: top + h,
                });
            }
        } else if i == last {
            if let Some(b) = boxes.get(s) {
                push(Point { x: enter_x, y: top });
                push(Point {
                    x: enter_x,
                    y: outline_y(b, enter_x, true),
                });
            }
        } else {
            let x = p.xs.get(s).copied().unwrap_or(0);
            push(Point { x, y: top });
            push(Point { x, y: top + h });
            let here = matches!(
                p.slots.get(s).map(|sl| sl.item),
                Some(Item::Crossing { label: true })
            );
            if let (true, Some(l)) = (here, label) {
                let rect = Rect {
                    x: x + LABEL_GAP,
                    y: top + (h - l.h) / 2,
                    w: l.w,
                    h: l.h,
                };
                placed = Some(place_label(l, rect));
            }
        }
    }
    (pts, placed)
}

/// A label's lines inside its rectangle, left-aligned.
fn place_label(l: &SizedLabel, rect: Rect) -> EdgeLabel {
    let lines = l
        .lines
        .iter()
        .enumerate()
        .map(|(i, t)| TextLine {
            text: t.clone(),
            x: rect.x + 3,
            y: rect.y
                + 1
                + DETAIL_LEAD * i32::try_from(i).unwrap_or(0)
                + DETAIL_LEAD / 2
                + DETAIL_SIZE / 3,
            size: DETAIL_SIZE,
            role: LineRole::Detail,
            anchor: Anchor::Start,
        })
        .collect();
    EdgeLabel { rect, lines }
}

/// For each node, its self-loops (edge positions), in edge order.
fn self_loops(n: usize, edges: &[EdgeSpec]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n];
    for (k, e) in edges.iter().enumerate() {
        if e.from == e.to
            && let Some(list) = out.get_mut(e.from)
        {
            list.push(k);
        }
    }
    out
}

/// Loop `edge`, one of a node's self-loops `all`: out of its right side and back in, nested
/// inside the room its slot was given (the later loop outside the earlier), with the labels
/// stacked to the right of the outermost loop.
fn self_loop(
    b: Option<&NodeBox>,
    edge: usize,
    all: Option<&Vec<usize>>,
    labels: &[Option<SizedLabel>],
) -> (Vec<Point>, Option<EdgeLabel>) {
    let (Some(b), Some(all)) = (b, all) else {
        return (Vec::new(), None);
    };
    let r = b.rect;
    let c = r.center();
    let count = i32::try_from(all.len()).unwrap_or(1);
    let j = i32::try_from(all.iter().position(|&k| k == edge).unwrap_or(0)).unwrap_or(0);
    // Half the height of loop j: inside the box's side, growing outwards.
    let d = ((r.h / 2 - 2) * (j + 1) / (count + 1)).max(1);
    let out = r.right() + LOOP_OUT * (j + 1);
    let points = vec![
        Point {
            x: r.right(),
            y: c.y - d,
        },
        Point { x: out, y: c.y - d },
        Point { x: out, y: c.y + d },
        Point {
            x: r.right(),
            y: c.y + d,
        },
    ];
    let stacked: Vec<(usize, &SizedLabel)> = all
        .iter()
        .filter_map(|&k| labels.get(k).and_then(Option::as_ref).map(|l| (k, l)))
        .collect();
    let total: i32 = stacked.iter().map(|(_, l)| l.h + STACK_GAP).sum();
    let mut y = c.y - total / 2;
    let mut placed = None;
    for (k, l) in stacked {
        if k == edge {
            let rect = Rect {
                x: r.right() + LOOP_OUT * count + LABEL_GAP,
                y,
                w: l.w,
                h: l.h,
            };
            placed = Some(place_label(l, rect));
        }
        y += l.h + STACK_GAP;
    }
    (points, placed)
}
