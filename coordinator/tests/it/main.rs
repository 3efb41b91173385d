//! Coordinator integration tests (one binary): handlers through `Router::oneshot` on a real
//! SQLite file, a real socket, the real binary killed with SIGKILL, and the CLI.

mod api;
mod browser;
mod cli;
mod crash;
mod examples;
mod fastly;
mod openapi;
mod live_check;
mod support;
