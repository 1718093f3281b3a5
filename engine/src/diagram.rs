//! Diagrams of a compiled workflow: Mermaid (`flowchart TD`) and Graphviz DOT text, and the
//! engine's own layout ([`layout`]) that the web UI draws as SVG.
//!
//! This module owns how a [`Definition`] is drawn: one shape per node type, labelled edges,
//! lifecycle stages as groups, and an optional highlight of where an instance stands. It only
//! produces text; turning it into pictures is the job of Mermaid or Graphviz in the browser or on
//! the command line.
//!
//! Shapes:
//!
//! | node | Mermaid | DOT |
//! |---|---|---|
//! | start marker | small circle | point |
//! | task | rectangle | box |
//! | parallel step | double-edged box (`[[…]]`) listing its branches | box with two borders |
//! | gateway | diamond | diamond |
//! | wait | hexagon | hexagon |
//! | notify | flag (`>…]`) | cds |
//! | end | stadium with the outcome | double octagon |
//!
//! Edges: `next` is plain (labelled `approve` from a task, the join policy from a parallel step);
//! gateway routes carry their condition (`otherwise` for the default); 驳回 (`reject_to`) edges are
//! dashed and point back; `on_reject` edges are labelled `reject`.
//!
//! Nodes are named `n0`, `n1` … by position rather than by workflow id, so that no id (Mermaid
//! reserves `end`, DOT reserves `node`, `edge`, `graph` …) can break the diagram; the real id is
//! in the label. Every label is escaped for its format, so conditions with quotes, `|`, `<`, `#`
//! or backslashes come out as written.

pub mod layout;
pub mod text;

use std::collections::HashSet;
use std::fmt::Write as _;

use petgraph::visit::EdgeRef;

use crate::compile::{Definition, Edge};
use crate::model::{JoinPolicy, Node, NodeType, Outcome, RawLimit, Workflow};
use crate::runtime::state::{Status, StepStatus};
use crate::runtime::{Event, InstanceState};

/// Which diagram language to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    Dot,
}

/// Nodes to mark: where an instance stands (`current`), what it has passed (`done`), what its
/// channel skips (`skipped`) and what it has passed by on a branch it did not take and can no
/// longer reach (`not_taken`). Ids not in the workflow are ignored; a node in more than one is
/// drawn as the first of current, done, skipped, not taken. Mermaid and DOT mark current and done
/// only. An instance's marks come from [`Marks::of`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Highlight<'a> {
    pub current: &'a [&'a str],
    pub done: &'a [&'a str],
    pub skipped: &'a [&'a str],
    pub not_taken: &'a [&'a str],
}

impl Highlight<'_> {
    /// No highlight: the bare workflow.
    pub const NONE: Highlight<'static> = Highlight {
        current: &[],
        done: &[],
        skipped: &[],
        not_taken: &[],
    };
}

/// The state of each node of one instance's diagram: the one place that says which nodes are
/// current, done, skipped by the channel or not taken, for every picture of an instance (the
/// instance and task pages, `GET …/diagram` in every format). Each list holds the workflow's own
/// node ids, in definition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks<'d> {
    /// Where the instance stands: the nodes of its open tasks, or the node it is at.
    pub current: Vec<&'d str>,
    /// Passed: entered (a gateway, a notify node, an end …) or with a task that closed.
    pub done: Vec<&'d str>,
    /// Skipped by the instance's channel (绿色通道).
    pub skipped: Vec<&'d str>,
    /// Not taken (未走的分支): never entered, not skipped, and no longer reachable going forward
    /// from where the instance stands, such as the other route of a gateway it is past, or
    /// everything it did not pass once its flow has ended. A 驳回 (`reject_to`) does not count as
    /// a way forward: should one send the instance back, these nodes are reachable again and are
    /// no longer marked.
    pub not_taken: Vec<&'d str>,
}

impl<'d> Marks<'d> {
    /// The marks of an instance in state `st`, whose events so far are `history` (its
    /// `NodeEntered` events say which nodes without a task it passed).
    pub fn of<'e>(
        def: &'d Definition,
        st: &InstanceState,
        history: impl IntoIterator<Item = &'e Event>,
    ) -> Marks<'d> {
        let n = def.workflow.nodes.len();
        let pos = |id: &str| def.index.get(id).map(|ix| ix.index()).filter(|i| *i < n);
        let mut current = vec![false; n];
        let mut done = vec![false; n];
        for t in &st.tasks {
            if let Some(i) = pos(&t.spec.node) {
                if t.is_open() {
                    current[i] = true;
                } else {
                    done[i] = true;
                }
            }
        }
        if !current.iter().any(|c| *c)
            && let Some(i) = st.at.as_deref().and_then(pos)
        {
            current[i] = true;
        }
        for e in history {
            if let Event::NodeEntered { node } = e
                && let Some(i) = pos(node)
            {
                done[i] = true;
            }
        }
        for s in &st.steps {
            if let Some(i) = pos(&s.node)
                && s.status != StepStatus::Open
            {
                done[i] = true;
            }
        }
        let mut skipped = vec![false; n];
        for id in skipped_by_channel(def, st.channel.as_deref()) {
            if let Some(i) = pos(id) {
                skipped[i] = true;
            }
        }
        // Where the flow may still go: forward from where it stands, while it runs.
        let mut reachable = vec![false; n];
        let flowing = st.status == Status::Running && st.path_end.is_none();
        if flowing {
            let mut stack: Vec<usize> = (0..n).filter(|i| current[*i]).collect();
            stack.extend(
                st.steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Open)
                    .filter_map(|s| pos(&s.node)),
            );
            while let Some(i) = stack.pop() {
                if std::mem::replace(&mut reachable[i], true) {
                    continue;
                }
                for e in def.graph.edges(petgraph::graph::NodeIndex::new(i)) {
                    if *e.weight() != Edge::RejectTo {
                        stack.push(e.target().index());
                    }
                }
            }
        }
        let started = st.status != Status::NotStarted;
        let name = |i: usize| def.workflow.nodes[i].id.value.as_str();
        let pick = |f: &dyn Fn(usize) -> bool| -> Vec<&'d str> {
            (0..n).filter(|i| f(*i)).map(name).collect()
        };
        Marks {
            current: pick(&|i| current[i]),
            done: pick(&|i| done[i] && !current[i]),
            skipped: pick(&|i| skipped[i] && !done[i] && !current[i]),
            not_taken: pick(&|i| {
                started && !current[i] && !done[i] && !skipped[i] && !reachable[i]
            }),
        }
    }

    /// These marks, for drawing.
    pub fn highlight(&self) -> Highlight<'_> {
        Highlight {
            current: &self.current,
            done: &self.done,
            skipped: &self.skipped,
            not_taken: &self.not_taken,
        }
    }
}

/// The ids of the nodes an instance on `channel` (绿色通道 …) skips, in definition order.
pub fn skipped_by_channel<'d>(def: &'d Definition, channel: Option<&str>) -> Vec<&'d str> {
    let Some(ch) = channel.and_then(|c| def.plan.channels.iter().find(|p| p.id == c)) else {
        return Vec::new();
    };
    let mut ix = ch.skip.clone();
    ix.sort_unstable();
    ix.dedup();
    ix.into_iter()
        .filter_map(|i| def.workflow.nodes.get(i))
        .map(|n| n.id.value.as_str())
        .collect()
}

/// Renders a definition in the chosen format.
pub fn render(def: &Definition, format: Format, highlight: &Highlight<'_>) -> String {
    match format {
        Format::Mermaid => mermaid(def, highlight),
        Format::Dot => dot(def, highlight),
    }
}

/// How a node is drawn, independent of format.
struct Shape {
    ty: NodeType,
    /// Label lines, unescaped.
    lines: Vec<String>,
}

fn limit_text(l: &RawLimit) -> String {
    match l {
        RawLimit::Days(n) => format!("{n}wd"),
        RawLimit::Text(t) => t.clone(),
    }
}

fn department_name<'w>(w: &'w Workflow, id: &'w str) -> &'w str {
    w.departments
        .iter()
        .find(|d| d.id.value == id)
        .and_then(|d| d.name.as_deref())
        .unwrap_or(id)
}

fn shape(w: &Workflow, n: &Node) -> Shape {
    let mut lines = Vec::new();
    let id = n.id.value.as_str();
    match &n.name {
        Some(name) if name != id => {
            lines.push(name.clone());
            lines.push(format!("[{id}]"));
        }
        _ => lines.push(id.to_string()),
    }
    let limit = n.limit.as_ref().map(|l| limit_text(&l.value));
    match n.ty.value {
        NodeType::Task => {
            if let Some(l) = limit {
                lines.push(format!("limit {l}"));
            }
        }
        NodeType::Parallel => {
            let mut head = String::from("并联");
            if let Some(j) = &n.join {
                head.push(' ');
                head.push_str(&join_text(
                    j.policy.value,
                    j.share.as_ref().map(|s| s.value.as_str()),
                ));
            }
            if let Some(l) = limit {
                let _ = write!(head, " · limit {l}");
            }
            lines.push(head);
            for b in &n.branches {
                let mut line = format!("• {}", department_name(w, &b.department.value));
                if n.lead.as_ref().is_some_and(|l| l.value == b.id.value) {
                    line.push_str(" (牵头)");
                }
                if let Some(l) = &b.limit {
                    let _ = write!(line, " {}", limit_text(&l.value));
                }
                if b.when.is_some() {
                    line.push_str(" [if]");
                }
                lines.push(line);
            }
        }
        NodeType::Gateway => {}
        NodeType::Wait => {
            if let Some(wt) = &n.wait {
                lines.push(format!("wait {}", limit_text(&wt.value)));
            }
        }
        NodeType::Notify => {
            if let Some(spec) = &n.notify {
                lines.push(format!("notify: {}", spec.template.value));
            }
        }
        NodeType::End => {
            let o = n
                .outcome
                .as_ref()
                .map(|o| o.value)
                .unwrap_or(Outcome::Approved);
            lines.push(format!("end: {}", outcome_text(o)));
        }
    }
    Shape {
        ty: n.ty.value,
        lines,
    }
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
        Outcome::Withdrawn => "withdrawn",
        Outcome::Revoked => "revoked",
    }
}

fn join_text(p: JoinPolicy, share: Option<&str>) -> String {
    match p {
        JoinPolicy::All => "all 会签".into(),
        JoinPolicy::Any => "any 或签".into(),
        JoinPolicy::Vote => format!("vote {} 票签", share.unwrap_or("?")),
    }
}

/// One edge as drawn, independent of format.
struct Line {
    from: usize,
    to: usize,
    label: Option<String>,
    dashed: bool,
}

fn lines_of(def: &Definition) -> Vec<Line> {
    def.graph
        .edge_references()
        .map(|e| {
            let from = e.source().index();
            let from_ty = def.workflow.nodes.get(from).map(|n| n.ty.value);
            let (label, dashed) = match e.weight() {
                Edge::Next => match from_ty {
                    Some(NodeType::Task) => (Some("approve".to_string()), false),
                    Some(NodeType::Parallel) => (
                        def.workflow
                            .nodes
                            .get(from)
                            .and_then(|n| n.join.as_ref())
                            .map(|j| {
                                format!(
                                    "join: {}",
                                    join_text(
                                        j.policy.value,
                                        j.share.as_ref().map(|s| s.value.as_str())
                                    )
                                )
                            })
                            .or_else(|| Some("join".to_string())),
                        false,
                    ),
                    _ => (None, false),
                },
                Edge::Route(Some(cond)) => (Some(cond.clone()), false),
                Edge::Route(None) => (Some("otherwise".to_string()), false),
                Edge::RejectTo => (Some("驳回".to_string()), true),
                Edge::OnReject => (Some("reject".to_string()), false),
            };
            Line {
                from,
                to: e.target().index(),
                label,
                dashed,
            }
        })
        .collect()
}

/// Stage groups in drawing order: declared stages first, then stage ids used by nodes but not
/// declared (an invalid workflow is never compiled, but the renderer does not rely on that).
/// Each group is (stage id, title, node positions). Nodes without a stage are not in any group.
fn groups(w: &Workflow) -> Vec<(String, String, Vec<usize>)> {
    let mut out: Vec<(String, String, Vec<usize>)> = w
        .stages
        .iter()
        .map(|s| {
            let title = s.name.clone().unwrap_or_else(|| s.id.value.clone());
            (s.id.value.clone(), title, Vec::new())
        })
        .collect();
    for (i, n) in w.nodes.iter().enumerate() {
        let Some(stage) = &n.stage else { continue };
        match out.iter_mut().find(|g| g.0 == stage.value) {
            Some(g) => g.2.push(i),
            None => out.push((stage.value.clone(), stage.value.clone(), vec![i])),
        }
    }
    out.retain(|g| !g.2.is_empty());
    out
}

/// Positions of highlighted nodes: (current, done-and-not-current).
fn marked(def: &Definition, h: &Highlight<'_>) -> (Vec<usize>, Vec<usize>) {
    let pick = |ids: &[&str]| -> Vec<usize> {
        let mut v: Vec<usize> = ids
            .iter()
            .filter_map(|id| def.index.get(*id).map(|ix| ix.index()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let current = pick(h.current);
    let cur: HashSet<usize> = current.iter().copied().collect();
    let done = pick(h.done)
        .into_iter()
        .filter(|i| !cur.contains(i))
        .collect();
    (current, done)
}

fn start_position(def: &Definition) -> Option<usize> {
    def.index
        .get(&def.workflow.start.value)
        .map(|ix| ix.index())
}

// ---------------------------------------------------------------------------------------------
// Mermaid

/// Escapes text for a double-quoted Mermaid label. Mermaid has no backslash escapes; it takes
/// HTML-like entity codes `#name;` / `#NNN;`, so `"` and `#` itself (which would start one) are
/// written as codes, as are characters that mean something in labels or HTML.
pub fn escape_mermaid(text: &str) -> String {
    escaped(text, |c| match c {
        '"' => Some("#quot;"),
        '#' => Some("#35;"),
        '<' => Some("#lt;"),
        '>' => Some("#gt;"),
        '&' => Some("#amp;"),
        '|' => Some("#124;"),
        '`' => Some("#96;"),
        '\n' | '\r' => Some(" "),
        _ => None,
    })
}

fn mermaid_label(lines: &[String]) -> String {
    label(lines, escape_mermaid, "<br/>")
}

/// `text` with each character `code` names written as that text instead.
fn escaped(text: &str, code: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match code(c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
        }
    }
    out
}

/// A box's lines as one label: each escaped, joined with the dialect's line break.
fn label(lines: &[String], escape: fn(&str) -> String, line_break: &str) -> String {
    lines
        .iter()
        .map(|l| escape(l))
        .collect::<Vec<_>>()
        .join(line_break)
}

fn mermaid_node(i: usize, s: &Shape) -> String {
    let l = mermaid_label(&s.lines);
    match s.ty {
        NodeType::Task => format!("n{i}[\"{l}\"]"),
        NodeType::Parallel => format!("n{i}[[\"{l}\"]]"),
        NodeType::Gateway => format!("n{i}{{\"{l}\"}}"),
        NodeType::Wait => format!("n{i}{{{{\"{l}\"}}}}"),
        NodeType::Notify => format!("n{i}>\"{l}\"]"),
        NodeType::End => format!("n{i}([\"{l}\"])"),
    }
}

/// The workflow as a Mermaid `flowchart TD`.
pub fn mermaid(def: &Definition, highlight: &Highlight<'_>) -> String {
    let w = &def.workflow;
    let mut out = String::new();
    let _ = writeln!(out, "%% {} ({})", one_line(&w.name), one_line(&w.id.value));
    out.push_str("flowchart TD\n");
    out.push_str("  start_((\"start\"))\n");

    let grouped = groups(w);
    let in_group: HashSet<usize> = grouped.iter().flat_map(|g| g.2.iter().copied()).collect();
    for (k, (_, title, members)) in grouped.iter().enumerate() {
        let _ = writeln!(out, "  subgraph stage{k}[\"{}\"]", escape_mermaid(title));
        out.push_str("    direction TB\n");
        for &i in members {
            if let Some(n) = w.nodes.get(i) {
                let _ = writeln!(out, "    {}", mermaid_node(i, &shape(w, n)));
            }
        }
        out.push_str("  end\n");
    }
    for (i, n) in w.nodes.iter().enumerate() {
        if !in_group.contains(&i) {
            let _ = writeln!(out, "  {}", mermaid_node(i, &shape(w, n)));
        }
    }

    if let Some(s) = start_position(def) {
        let _ = writeln!(out, "  start_ --> n{s}");
    }
    let mut dashed = Vec::new();
    for (k, e) in lines_of(def).iter().enumerate() {
        let arrow = if e.dashed { "-.->" } else { "-->" };
        match &e.label {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  n{} {arrow}|\"{}\"| n{}",
                    e.from,
                    escape_mermaid(l),
                    e.to
                );
            }
            None => {
                let _ = writeln!(out, "  n{} {arrow} n{}", e.from, e.to);
            }
        }
        if e.dashed {
            // +1: the start arrow is link 0 when present.
            dashed.push(k + usize::from(start_position(def).is_some()));
        }
    }
    if !dashed.is_empty() {
        let ids: Vec<String> = dashed.iter().map(|k| k.to_string()).collect();
        let _ = writeln!(
            out,
            "  linkStyle {} stroke:#b91c1c,color:#b91c1c",
            ids.join(",")
        );
    }

    let (current, done) = marked(def, highlight);
    if !current.is_empty() || !done.is_empty() {
        out.push_str("  classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px\n");
        out.push_str("  classDef done fill:#dcfce7,stroke:#15803d\n");
        for (class, set) in [("current", &current), ("done", &done)] {
            if !set.is_empty() {
                let ids: Vec<String> = set.iter().map(|i| format!("n{i}")).collect();
                let _ = writeln!(out, "  class {} {class}", ids.join(","));
            }
        }
    }
    out
}

/// Text for a `%%` comment line: no line breaks, and no braces (`%%{` would start a directive).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace(['{', '}'], "")
}

// ---------------------------------------------------------------------------------------------
// DOT

/// Escapes text for a double-quoted DOT string: `\` and `"` get a backslash (Graphviz reads
/// `\l`, `\N` … inside labels, so a literal backslash must be doubled), line breaks become `\n`.
pub fn escape_dot(text: &str) -> String {
    escaped(text, |c| match c {
        '\\' => Some("\\\\"),
        '"' => Some("\\\""),
        '\n' => Some("\\n"),
        '\r' => Some(""),
        _ => None,
    })
}

fn dot_label(lines: &[String]) -> String {
    label(lines, escape_dot, "\\n")
}

fn dot_node(i: usize, s: &Shape, mark: Option<&str>) -> String {
    let l = dot_label(&s.lines);
    let attrs = match s.ty {
        NodeType::Task => "shape=box, style=\"rounded\"",
        NodeType::Parallel => "shape=box, peripheries=2",
        NodeType::Gateway => "shape=diamond",
        NodeType::Wait => "shape=hexagon",
        NodeType::Notify => "shape=cds",
        NodeType::End => "shape=doubleoctagon",
    };
    let mark = match mark {
        Some("current") => {
            ", style=\"filled,bold\", fillcolor=\"#fde68a\", color=\"#b45309\", penwidth=3"
        }
        Some(_) => ", style=\"filled\", fillcolor=\"#dcfce7\", color=\"#15803d\"",
        None => "",
    };
    // A later `style` overrides the shape's own; keep rounded tasks rounded when marked.
    let mark = if s.ty == NodeType::Task {
        mark.replace("style=\"filled", "style=\"rounded,filled")
    } else {
        mark.to_string()
    };
    format!("n{i} [label=\"{l}\", {attrs}{mark}];")
}

/// The workflow as a Graphviz `digraph`.
pub fn dot(def: &Definition, highlight: &Highlight<'_>) -> String {
    let w = &def.workflow;
    let (current, done) = marked(def, highlight);
    let mark_of = |i: usize| {
        if current.contains(&i) {
            Some("current")
        } else if done.contains(&i) {
            Some("done")
        } else {
            None
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape_dot(&w.id.value));
    let _ = writeln!(out, "  label=\"{}\";", escape_dot(&w.name));
    out.push_str("  labelloc=t;\n  rankdir=TB;\n  compound=true;\n");
    out.push_str("  node [fontname=\"sans-serif\", fontsize=11];\n");
    out.push_str("  edge [fontname=\"sans-serif\", fontsize=10];\n");
    out.push_str("  start_ [shape=point, width=0.2, label=\"\"];\n");

    let grouped = groups(w);
    let in_group: HashSet<usize> = grouped.iter().flat_map(|g| g.2.iter().copied()).collect();
    for (k, (_, title, members)) in grouped.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_stage{k} {{");
        let _ = writeln!(out, "    label=\"{}\";", escape_dot(title));
        out.push_str("    style=\"rounded,dashed\";\n    color=\"#64748b\";\n");
        for &i in members {
            if let Some(n) = w.nodes.get(i) {
                let _ = writeln!(out, "    {}", dot_node(i, &shape(w, n), mark_of(i)));
            }
        }
        out.push_str("  }\n");
    }
    for (i, n) in w.nodes.iter().enumerate() {
        if !in_group.contains(&i) {
            let _ = writeln!(out, "  {}", dot_node(i, &shape(w, n), mark_of(i)));
        }
    }

    if let Some(s) = start_position(def) {
        let _ = writeln!(out, "  start_ -> n{s};");
    }
    for e in lines_of(def) {
        let mut attrs = Vec::new();
        if let Some(l) = &e.label {
            attrs.push(format!("label=\"{}\"", escape_dot(l)));
        }
        if e.dashed {
            // Back-edges must not pull their target below the source.
            attrs.push(
                "style=dashed, color=\"#b91c1c\", fontcolor=\"#b91c1c\", constraint=false".into(),
            );
        }
        if attrs.is_empty() {
            let _ = writeln!(out, "  n{} -> n{};", e.from, e.to);
        } else {
            let _ = writeln!(out, "  n{} -> n{} [{}];", e.from, e.to, attrs.join(", "));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::parse::parse_workflow;
    use crate::validate::ValidateContext;

    /// A small workflow with every node type, a stage-less node, a 驳回 edge and conditions
    /// that need escaping.
    const SRC: &str = r#"
id: demo
name: 演示 "审批" 流程
calendar: cn-mainland
start: intake
fields:
  - { id: tier, type: enum, values: ["重中之重", "一般"] }
  - { id: amount, type: number }
departments:
  - { id: fgw, name: 发改委 }
  - { id: zrzy, name: 自然资源局 }
  - { id: sthj, name: 生态环境局 }
roles:
  - { id: clerk, name: 受理员, department: fgw }
stages:
  - { id: apply, name: 生成 }
  - { id: review, name: 审批 }
nodes:
  - id: intake
    type: task
    name: 受理
    stage: apply
    assignee: { role: clerk }
    actions: [approve, reject]
    limit: 2wd
    next: route
  - id: route
    type: gateway
    stage: apply
    routes:
      - when: 'project.tier == "重中之重" || project.amount > 1000'
        to: joint
      - to: cool
  - id: cool
    type: wait
    wait: 5wd
    next: joint
  - id: joint
    type: parallel
    name: 并联审批
    stage: review
    lead: b1
    limit: 10wd
    branches:
      - { id: b1, department: fgw, limit: 5wd }
      - { id: b2, department: zrzy }
      - { id: b3, department: sthj, when: 'project.amount > 1000' }
    join: { policy: vote, share: 2/3 }
    next: final
  - id: final
    type: task
    name: 决定 <签发>
    stage: review
    assignee: { role: clerk }
    actions: [approve, reject]
    reject_to: [intake]
    on_reject: denied
    next: tell
  - id: tell
    type: notify
    notify: { to: [{ role: clerk }], template: approved }
    next: ok
  - id: ok
    type: end
    outcome: approved
  - id: denied
    type: end
    outcome: rejected
"#;

    fn def() -> Definition {
        let w = match parse_workflow(SRC) {
            Ok(w) => w,
            Err(d) => panic!("fixture does not parse: {d:#?}"),
        };
        let ctx = ValidateContext {
            calendars: vec!["cn-mainland".into()],
            templates: Vec::new(),
            ..Default::default()
        };
        match compile(w, &ctx) {
            Ok(d) => d,
            Err(d) => panic!("fixture does not validate: {d:#?}"),
        }
    }

    #[test]
    fn mermaid_has_every_node_and_edge() {
        let d = def();
        let m = mermaid(&d, &Highlight::NONE);
        assert!(m.contains("flowchart TD\n"), "{m}");
        // Every node, with its type's shape.
        assert!(m.contains("n0[\"受理<br/>[intake]<br/>limit 2wd\"]"), "{m}");
        assert!(m.contains("n1{\"route\"}"), "{m}");
        assert!(m.contains("n2{{\"cool<br/>wait 5wd\"}}"), "{m}");
        assert!(
            m.contains(
                "n3[[\"并联审批<br/>[joint]<br/>并联 vote 2/3 票签 · limit 10wd<br/>• 发改委 (牵头) 5wd<br/>• 自然资源局<br/>• 生态环境局 [if]\"]]"
            ),
            "{m}"
        );
        assert!(m.contains("n4[\"决定 #lt;签发#gt;<br/>[final]\"]"), "{m}");
        assert!(m.contains("n5>\"tell<br/>notify: approved\"]"), "{m}");
        assert!(m.contains("n6([\"ok<br/>end: approved\"])"), "{m}");
        assert!(m.contains("n7([\"denied<br/>end: rejected\"])"), "{m}");
        // Every edge.
        let edges = [
            "start_ --> n0",
            "n0 -->|\"approve\"| n1",
            "n1 -->|\"project.tier == #quot;重中之重#quot; #124;#124; project.amount #gt; 1000\"| n3",
            "n1 -->|\"otherwise\"| n2",
            "n2 --> n3",
            "n3 -->|\"join: vote 2/3 票签\"| n4",
            "n4 -->|\"approve\"| n5",
            "n4 -.->|\"驳回\"| n0",
            "n4 -->|\"reject\"| n7",
            "n5 --> n6",
        ];
        for e in edges {
            assert!(m.contains(&format!("  {e}\n")), "missing `{e}` in\n{m}");
        }
        let arrows = m
            .lines()
            .filter(|l| l.contains("-->") || l.contains("-.->"))
            .count();
        assert_eq!(arrows, edges.len(), "{m}");
        // Stages group their nodes; stage-less nodes stay outside.
        let stage0 = m.find("subgraph stage0[\"生成\"]").expect("stage 生成");
        let stage1 = m.find("subgraph stage1[\"审批\"]").expect("stage 审批");
        let pos = |s: &str| m.find(s).expect(s);
        assert!(stage0 < pos("n0[") && pos("n1{") < stage1, "{m}");
        assert!(stage1 < pos("n3[[") && pos("n4[") < pos("n2{{"), "{m}");
        // The back-edge is coloured: it is link 7 (the start arrow is 0).
        assert!(m.contains("linkStyle 7 stroke:#b91c1c"), "{m}");
        assert!(!m.contains("classDef"), "no highlight asked: {m}");
        // The header comment escapes nothing but stays on one line.
        assert!(m.starts_with("%% 演示 \"审批\" 流程 (demo)\n"), "{m}");
    }

    #[test]
    fn mermaid_highlight() {
        let d = def();
        let h = Highlight {
            current: &["joint", "nope"],
            done: &["intake", "route", "joint"],
            skipped: &[],
            not_taken: &[],
        };
        let m = mermaid(&d, &h);
        assert!(m.contains("  class n3 current\n"), "{m}");
        assert!(m.contains("  class n0,n1 done\n"), "{m}");
        assert!(m.contains("classDef current"), "{m}");
    }

    #[test]
    fn dot_has_every_node_and_edge() {
        let d = def();
        let g = dot(&d, &Highlight::NONE);
        assert!(g.starts_with("digraph \"demo\" {\n"), "{g}");
        assert!(g.contains("  label=\"演示 \\\"审批\\\" 流程\";"), "{g}");
        assert!(g.trim_end().ends_with('}'), "{g}");
        for (node, shape) in [
            ("n0", "shape=box, style=\"rounded\""),
            ("n1", "shape=diamond"),
            ("n2", "shape=hexagon"),
            ("n3", "shape=box, peripheries=2"),
            ("n4", "shape=box"),
            ("n5", "shape=cds"),
            ("n6", "shape=doubleoctagon"),
            ("n7", "shape=doubleoctagon"),
        ] {
            let line = g
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{node} [")))
                .unwrap_or_else(|| panic!("no {node} in\n{g}"));
            assert!(line.contains(shape), "{line}");
        }
        assert!(
            g.contains("n0 [label=\"受理\\n[intake]\\nlimit 2wd\""),
            "{g}"
        );
        let edges = [
            "start_ -> n0;",
            "n0 -> n1 [label=\"approve\"];",
            "n1 -> n3 [label=\"project.tier == \\\"重中之重\\\" || project.amount > 1000\"];",
            "n1 -> n2 [label=\"otherwise\"];",
            "n2 -> n3;",
            "n3 -> n4 [label=\"join: vote 2/3 票签\"];",
            "n4 -> n5 [label=\"approve\"];",
            "n4 -> n0 [label=\"驳回\", style=dashed, color=\"#b91c1c\", fontcolor=\"#b91c1c\", constraint=false];",
            "n4 -> n7 [label=\"reject\"];",
            "n5 -> n6;",
        ];
        for e in edges {
            assert!(g.contains(&format!("  {e}\n")), "missing `{e}` in\n{g}");
        }
        assert_eq!(g.matches(" -> ").count(), edges.len(), "{g}");
        assert_eq!(g.matches("subgraph cluster_stage").count(), 2, "{g}");
        assert!(g.contains("label=\"生成\";"), "{g}");
        // Braces balance.
        assert_eq!(g.matches('{').count(), g.matches('}').count(), "{g}");
    }

    /// An instance's marks: the other route of the gateway is not taken once the instance is
    /// past it; everything not passed is not taken once the flow has ended; a 驳回 back before
    /// the gateway makes both routes reachable again; an instance not started marks nothing.
    #[test]
    fn marks_of_an_instance() {
        let d = def();
        let entered = |ids: &[&str]| -> Vec<Event> {
            ids.iter()
                .map(|id| Event::NodeEntered { node: (*id).into() })
                .collect()
        };
        let state = |at: &str, status: Status| InstanceState {
            status,
            at: Some(at.into()),
            ..InstanceState::default()
        };

        let none = Marks::of(&d, &InstanceState::default(), &[]);
        assert_eq!(none, Marks::default());

        // At the start, every node is still ahead.
        let st = state("intake", Status::Running);
        let m = Marks::of(&d, &st, &entered(&["intake"]));
        assert_eq!(m.current, ["intake"]);
        assert!(m.not_taken.is_empty(), "{m:?}");

        // Past the gateway on its condition: its default route (cool) is not taken; the
        // rejection end is still ahead of final, so not marked.
        let st = state("joint", Status::Running);
        let m = Marks::of(&d, &st, &entered(&["intake", "route", "joint"]));
        assert_eq!(m.current, ["joint"]);
        assert_eq!(m.done, ["intake", "route"]);
        assert_eq!(m.not_taken, ["cool"]);
        let h = m.highlight();
        assert_eq!(h.not_taken, ["cool"]);

        // Ended approved: the route not taken and the rejection end.
        let mut st = state("ok", Status::Ended);
        st.path_end = Some(Outcome::Approved);
        let m = Marks::of(
            &d,
            &st,
            &entered(&["intake", "route", "joint", "final", "tell", "ok"]),
        );
        assert_eq!(m.current, ["ok"]);
        assert_eq!(m.done, ["intake", "route", "joint", "final", "tell"]);
        assert_eq!(m.not_taken, ["cool", "denied"]);

        // 驳回 from final back to intake: both routes are ahead again.
        let st = state("intake", Status::Running);
        let m = Marks::of(
            &d,
            &st,
            &entered(&["intake", "route", "joint", "final", "intake"]),
        );
        assert!(m.not_taken.is_empty(), "{m:?}");
    }

    #[test]
    fn dot_highlight() {
        let d = def();
        let h = Highlight {
            current: &["final"],
            done: &["intake"],
            skipped: &[],
            not_taken: &[],
        };
        let g = dot(&d, &h);
        let line = |n: &str| {
            g.lines()
                .find(|l| l.trim_start().starts_with(&format!("{n} [")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("n4").contains("fillcolor=\"#fde68a\""), "{g}");
        assert!(line("n4").contains("style=\"rounded,filled,bold\""), "{g}");
        assert!(line("n0").contains("fillcolor=\"#dcfce7\""), "{g}");
        assert!(!line("n1").contains("fillcolor"), "{g}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_mermaid(r#"a "b" #1 <x> | `c` & d"#),
            "a #quot;b#quot; #35;1 #lt;x#gt; #124; #96;c#96; #amp; d"
        );
        assert_eq!(escape_mermaid("两行\n文字"), "两行 文字");
        assert_eq!(escape_dot(r#"say "hi" \l"#), r#"say \"hi\" \\l"#);
        assert_eq!(escape_dot("a\nb"), "a\\nb");
        assert_eq!(escape_dot("中文"), "中文");
    }

    #[test]
    fn render_picks_the_format() {
        let d = def();
        assert!(render(&d, Format::Mermaid, &Highlight::NONE).contains("flowchart TD"));
        assert!(render(&d, Format::Dot, &Highlight::NONE).starts_with("digraph"));
    }
}
