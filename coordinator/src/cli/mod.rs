//! The `edgegen` command line. `--json` switches any subcommand to machine-readable output
//! on stdout; errors print one line on stderr.
//!
//! Exit codes:
//! - `0` success (for `release --wait`: the release converged);
//! - `1` the coordinator refused or failed the request, or could not be reached;
//! - `2` invalid input (bad flags, or values that break a field's rule; the field is named);
//! - `3` `release --wait`: the timeout passed before every live PoP acknowledged;
//! - `4` `release --wait`: the release was rolled back or failed while waiting.
//!
//! `sync hosts` uses its own: `0` in sync, `1` changed (or would), `2` invalid input or a
//! Config Store limit, `5` the coordinator or the Fastly API failed (see [`sync`]).
//!
//! `plan`, `lint-schema` and `release --plan-only` use the analysis codes instead: `0` safe,
//! `1` needs a release, `2` blocked.
//!
//! Client subcommands talk to `EDGEGEN_URL` (default `http://127.0.0.1:8080`) with
//! `EDGEGEN_ADMIN_TOKEN`.

mod analyze;
mod client;
mod key;
mod probe;
mod purge;
mod serve;
mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the coordinator refused or failed, or was unreachable.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: invalid input.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: `release --wait` timed out.
pub const EXIT_TIMEOUT: u8 = 3;
/// Exit code: `release --wait` saw the release rolled back or failed.
pub const EXIT_ROLLED_BACK: u8 = 4;
/// Exit code: `sync hosts` could not read or repair the host map.
pub const EXIT_SYNC_FAILED: u8 = 5;

#[derive(Parser)]
#[command(name = "edgegen", version, about = "Deterministic edge-cache invalidation for multi-tenant services")]
struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator (admin API, edge API, /healthz, /metrics).
    Serve(serve::ServeArgs),
    /// Register and inspect tenants.
    #[command(subcommand)]
    Tenant(client::TenantCommand),
    /// Commit a release: every listed tenant moves to its next generation, all or none.
    Release(client::ReleaseArgs),
    /// Show a release: status, per-tenant changes, execution log, convergence.
    Status(client::StatusArgs),
    /// Roll a release back: new generations carrying the previous schema and contract.
    Rollback(client::StatusArgs),
    /// Derive the cache key and surrogate keys the edge uses for a request (offline).
    Key(key::KeyArgs),
    /// Mint a debug probe token (EDGEGEN_PROBE_KEY); with a URL, show the edge's view of a request.
    Probe(probe::ProbeArgs),
    /// Analyse what a schema change does to cached data (offline; exit 0 safe, 1 needs a release, 2 blocked).
    Plan(analyze::PlanArgs),
    /// Lint a schema for tenant isolation (offline; exit 0 clean, 2 violations or unparsable input).
    LintSchema(analyze::LintArgs),
    /// Purge surrogate keys through the Fastly API (FASTLY_API_TOKEN, FASTLY_API_URL).
    Purge(purge::PurgeArgs),
    /// Make Fastly state match the coordinator (exit 0 in sync, 1 changed or would change).
    #[command(subcommand)]
    Sync(sync::SyncCommand),
}

/// An error that maps to a specific exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// The message.
    pub message: String,
}

/// Runs the CLI and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Key(args) => {
            key::run(args, json).map_err(|e| anyhow::Error::new(Exit { code: EXIT_INVALID, message: format!("{e:#}") }))
        }
        Command::Tenant(cmd) => client::tenant(cmd, json),
        Command::Release(args) => client::release(args, json),
        Command::Status(args) => client::status(args, json),
        Command::Rollback(args) => client::rollback(args, json),
        Command::Probe(args) => probe::run(args, json),
        Command::Plan(args) => analyze::plan(args, json),
        Command::LintSchema(args) => analyze::lint(args, json),
        Command::Purge(args) => purge::run(args, json),
        Command::Sync(cmd) => sync::run(cmd, json),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let code = err.downcast_ref::<Exit>().map_or(EXIT_FAILED, |e| e.code);
            eprintln!("edgegen: error: {err:#}");
            ExitCode::from(code)
        }
    }
}
