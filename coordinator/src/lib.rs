//! `edgegen-coordinator`: the origin-side generation authority and the `edgegen` CLI.
//!
//! - [`config`]: settings from flags, env and `edgegen.toml`;
//! - [`domain`]: pure decisions (release/rollback planning, report policy, convergence figures);
//! - [`convergence`]: pure convergence tracking and the manifest-fetch ledger acks are checked against;
//! - [`execlog`]: the execution log as values (which steps, what they say);
//! - [`hostmap`]: the edge's host map (`edgegen_hosts`) from the tenants, its drift and
//!   Fastly's Config Store limits; [`hostsync`]: reconciling a Config Store with it;
//! - [`analysis`]: a release's analysis as execution-log steps and a per-tenant plan;
//! - [`live_check`]: tenants' live responses validated against a release's new contract;
//! - [`engine`]: the release use case (analysis gate, shards, plan, commit, ack check), no SQL;
//! - [`outbox`]: durable post-commit effects (CDN purges) and their delivery worker;
//! - [`store`]: durable state behind the [`store::Store`] trait: SQLite (one process) or
//!   PostgreSQL (any number of replicas);
//! - [`server`]: the axum router, handlers and graceful run loop;
//! - [`listing`]: paginated listings (releases) for the dashboard and scripts;
//! - [`openapi`]: the OpenAPI 3.1 document generated from the handlers and wire types;
//! - [`ui`]: the release dashboard's static files;
//! - [`auth`], [`error`], [`rejection`], [`metrics`], [`clock`]: cross-cutting pieces of the
//!   HTTP layer;
//! - [`cli`]: the `edgegen` command line (server and client).

pub mod analysis;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod convergence;
pub mod domain;
pub mod engine;
pub mod error;
pub mod execlog;
pub mod fastly;
pub mod hostmap;
pub mod hostsync;
pub mod listing;
pub mod live_check;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod rejection;
pub mod server;
pub mod shards;
pub mod store;
pub mod ui;
