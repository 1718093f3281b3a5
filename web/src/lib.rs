//! shenpi-web as a library: the HTTP server (API, UI, auth), so that the `shenpi` binary and the
//! in-process API tests (`tests/api_*.rs`) build the very same router.

pub mod server;
