//! One module per subcommand; each exposes `Args` (or `Command`) and `run`.

pub mod audit;
pub mod bench;
pub mod calendar;
pub mod files;
pub mod graph;
pub mod loadgen;
pub mod login_flood;
pub mod migrate;
pub mod openapi;
pub mod schema;
pub mod server;
pub mod simulate;
pub mod validate;
pub mod whatif;
pub mod workflows;
