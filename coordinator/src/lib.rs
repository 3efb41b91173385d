//! `edgegen-coordinator`: the origin-side generation authority and the `edgegen` CLI.
//!
//! So far it holds the CLI's offline commands ([`cli`]); the HTTP service (`edgegen serve`),
//! its store and the release workflow arrive with the coordinator issue.

pub mod cli;
