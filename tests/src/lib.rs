//! The end-to-end harness: starts real processes (Viceroy running the release edge wasm) and
//! in-process servers (the sample origin) and the real coordinator binary on 127.0.0.1 free ports, and tears every one of
//! them down — by the PID it started, on drop, so also when a test fails or panics.
//!
//! Used by the integration tests in `tests/it/` and by `cargo xtask demo`.

pub mod browser;
pub mod checker;
pub mod coordinator;
pub mod demo_origin;
pub mod fastly_api;
pub mod haproxy;
pub mod origin;
pub mod postgres;
pub mod process;
pub mod server;
pub mod viceroy;
pub mod workspace;
