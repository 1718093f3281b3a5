//! One module per subcommand; each exposes `Args` (or `Command`) and `run`.

pub mod calendar;
pub mod graph;
pub mod schema;
pub mod simulate;
pub mod validate;
