//! shenpi-engine: the pure core of the shenpi approval engine.
//!
//! It owns the YAML workflow language ([`model`]), its validation ([`validate`]) and compilation
//! to a state graph ([`compile`]), the working-day calendar ([`calendar`]) and the instance
//! runtime ([`runtime`]): `decide(definition, state, command, now) -> events` and
//! `evolve(state, event) -> state`.
//!
//! **Architecture invariant:** nothing here does I/O, reads a clock, or spawns a thread. Time
//! comes in as a parameter; files come in as strings.

pub mod calendar;
pub mod compile;
pub mod cron;
pub mod diag;
pub mod diagram;
pub mod documents;
pub mod expr;
pub mod limit;
pub mod model;
pub mod parse;
pub mod runtime;
pub mod simulate;
pub mod span;
pub mod template;
pub mod validate;
pub mod whatif;
