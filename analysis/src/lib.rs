//! `edgegen-analysis`: what a release changes, decided before anything ships. Pure: inputs
//! are SQL texts and settings, outputs are findings and a deterministic plan; no I/O.
//!
//! - [`sql`]: parsing with sqlparser, statement by statement with source locations; anything
//!   unparsable or not understood fails closed ([`Blocked`]);
//! - [`model`]: the schema model (tables, columns, keys, indexes, enums, RLS, policies) and
//!   how each DDL statement changes it;
//! - [`diff`]: classified changes between two models;
//! - [`isolation`]: the tenant-isolation lint;
//! - [`contract`]: API-contract compatibility, backward and forward;
//! - [`plan`]: findings, exit code and the deterministic plan with its hash.

pub mod contract;
pub mod diff;
pub mod isolation;
pub mod model;
pub mod plan;
pub mod sql;

pub use plan::{Finding, Location, Severity};
pub use sql::{Blocked, Dialect};
