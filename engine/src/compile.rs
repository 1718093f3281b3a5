//! Compilation: a validated [`Workflow`] becomes a [`Definition`], the form the runtime walks.
//!
//! A definition is built once per published version and then only read. The state graph is a
//! petgraph `DiGraph` whose node weights are node ids; the runtime keeps node *ids* (strings) in
//! instance state, never graph indices, so a state stays meaningful across recompilation.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::diag::Diagnostic;
use crate::model::{Node, Workflow};
use crate::validate::{ValidateContext, validate};

/// Why one node leads to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// `next:` of a task, parallel step, wait or notify node.
    Next,
    /// A gateway route; `None` is the default route.
    Route(Option<String>),
    /// A 驳回 target (goes backwards).
    RejectTo,
    /// Where a final rejection goes.
    OnReject,
}

/// A compiled, validated workflow version.
#[derive(Debug, Clone)]
pub struct Definition {
    pub workflow: Workflow,
    pub graph: DiGraph<String, Edge>,
    pub index: HashMap<String, NodeIndex>,
}

impl Definition {
    pub fn id(&self) -> &str {
        &self.workflow.id.value
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        let ix = self.index.get(id)?;
        self.workflow.nodes.get(ix.index())
    }
}

/// Validates and compiles. Returns every error found; warnings alone do not stop compilation.
pub fn compile(workflow: Workflow, ctx: &ValidateContext) -> Result<Definition, Vec<Diagnostic>> {
    let diags = validate(&workflow, ctx);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    Ok(build(workflow))
}

/// Builds the graph; node `i` of the workflow is graph index `i`.
fn build(workflow: Workflow) -> Definition {
    let mut graph = DiGraph::with_capacity(workflow.nodes.len(), workflow.nodes.len() * 2);
    let mut index = HashMap::with_capacity(workflow.nodes.len());
    for n in &workflow.nodes {
        let ix = graph.add_node(n.id.value.clone());
        index.insert(n.id.value.clone(), ix);
    }
    for (i, n) in workflow.nodes.iter().enumerate() {
        let from = NodeIndex::new(i);
        let mut link = |to: &str, e: Edge| {
            if let Some(&t) = index.get(to) {
                graph.add_edge(from, t, e);
            }
        };
        if let Some(next) = &n.next {
            link(next, Edge::Next);
        }
        for r in &n.routes {
            link(&r.to, Edge::Route(r.when.as_ref().map(|w| w.value.clone())));
        }
        for r in &n.reject_to {
            link(r, Edge::RejectTo);
        }
        if let Some(r) = &n.on_reject {
            link(r, Edge::OnReject);
        }
    }
    Definition {
        workflow,
        graph,
        index,
    }
}
