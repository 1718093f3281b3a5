//! shenpi-adapters: everything that touches the outside world on behalf of the pure engine.

pub mod bench;
pub mod bus;
pub mod engine_machine;
pub mod loader;
pub mod machine;
pub mod migrate;
pub mod outbox;
pub mod reports;
pub mod retime;
pub mod store;
pub mod testkit;
pub mod timers;
pub mod whatif;
