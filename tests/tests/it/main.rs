//! End-to-end tests over real processes on 127.0.0.1 (one test binary; one module per area).

mod demo;
mod edge_cache;
mod edge_http;
mod edge_skeleton;
mod host_sync;
mod push;
mod replicas;
mod scenarios;
