//! The engine as the server uses it: the durable layer's [`EngineMachine`] (which runs
//! decide/evolve behind the command bus), and the few conversions the pages need.

pub use shenpi_adapters::engine_machine::{
    CalendarFile, EngineContext as EngineCtx, EngineMachine, WorkflowDir, millis, timestamp,
};
use shenpi_engine::runtime::Colour;

pub fn colour_name(c: Colour) -> &'static str {
    match c {
        Colour::Green => "green",
        Colour::Yellow => "yellow",
        Colour::Red => "red",
    }
}

/// An inbox assignee as the projection writes it (`user:NAME`, `role:ID`, `dept:ID`), for people.
pub fn assignee_label(a: &str) -> String {
    match a.split_once(':') {
        Some(("user", u)) => u.to_string(),
        Some(("role", r)) => format!("角色 {r}"),
        Some(("dept", d)) => format!("部门 {d}"),
        _ => a.to_string(),
    }
}
