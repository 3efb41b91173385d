//! Coordinator integration tests (one binary): handlers through `Router::oneshot` on a real
//! SQLite file and on a real PostgreSQL database (the API suite runs once per store), a real socket, the real binary killed with SIGKILL, the CLI, and the tidy
//! checks of the source tree.

mod browser;
/// The API suite against SQLite.
mod api_sqlite {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    include!("api.rs");
}
/// The same suite against PostgreSQL (three replicas on one database).
mod api_postgres {
    const BACKEND: crate::support::Backend = crate::support::Backend::Postgres;
    include!("api.rs");
}
mod cli;
mod crash;
mod examples;
mod fastly;
mod host_outbox;
mod leases;
mod live_check;
mod openapi;
mod shards;
mod sqlite;
mod support;
mod tidy;
