//! Coordinator integration tests (one binary): handlers through `Router::oneshot` on a real
//! SQLite file, a real socket, the real binary killed with SIGKILL, the CLI, and the tidy
//! checks of the source tree.

mod api;
mod cli;
mod crash;
mod fastly;
mod support;
mod tidy;
