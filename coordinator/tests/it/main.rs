//! Coordinator integration tests (one binary): handlers through `Router::oneshot` on a real
//! SQLite file, a real socket, the real binary killed with SIGKILL, and the CLI.

mod api;
mod cli;
mod crash;
mod fastly;
mod live_check;
mod support;
