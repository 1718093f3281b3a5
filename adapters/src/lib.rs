//! shenpi-adapters: everything that touches the outside world on behalf of the pure engine.
