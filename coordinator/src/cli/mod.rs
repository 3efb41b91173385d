//! The `edgegen` command line. `--json` switches any subcommand to machine-readable output
//! on stdout; errors print one line on stderr.
//!
//! Exit codes:
//! - `0` success (for `release --wait`: the release converged);
//! - `1` the coordinator refused or failed the request, or could not be reached;
//! - `2` invalid input (bad flags, or values that break a field's rule; the field is named);
//! - `3` `release --wait` / `status --watch`: the timeout passed before every live PoP
//!   acknowledged;
//! - `4` `release --wait` / `status --watch`: the release was rolled back or failed while
//!   waiting.
//!
//! `sync hosts` uses its own: `0` in sync, `1` changed (or would), `2` invalid input or a
//! Config Store limit, `5` the coordinator or the Fastly API failed (see [`sync`]).
//!
//! `plan`, `lint-schema` and `release --plan-only` use the analysis codes instead: `0` safe,
//! `1` needs a release, `2` blocked.
//!
//! Client subcommands talk to `--url` (or `EDGEGEN_URL`; default `http://127.0.0.1:8080`)
//! with `EDGEGEN_ADMIN_TOKEN`. `edgegen completions bash|zsh|fish` prints a completion script.

mod analyze;
mod client;
mod key;
mod probe;
mod purge;
mod serve;
mod sync;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

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
    /// Base URL of the coordinator, for the client subcommands (tenant, release, status, rollback).
    #[arg(long, global = true, env = "EDGEGEN_URL", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator (admin API, edge API, /healthz, /metrics).
    Serve(serve::ServeArgs),
    /// Register, inspect, re-host and remove tenants.
    #[command(subcommand)]
    Tenant(client::TenantCommand),
    /// Commit a release: every listed tenant moves to its next generation, all or none.
    Release(client::ReleaseArgs),
    /// Show a release: status, per-tenant changes, execution log, convergence.
    Status(client::StatusArgs),
    /// Roll a release back: new generations carrying the previous schema and contract.
    Rollback(client::RollbackArgs),
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
    /// Print a shell completion script, e.g. `edgegen completions bash > /etc/bash_completion.d/edgegen`.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// Shells `edgegen completions` writes scripts for.
#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
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
        Command::Tenant(cmd) => client::tenant(cmd, &cli.url, json),
        Command::Release(args) => client::release(args, &cli.url, json),
        Command::Status(args) => client::status(args, &cli.url, json),
        Command::Rollback(args) => client::rollback(args, &cli.url, json),
        Command::Completions { shell } => {
            clap_complete::generate(
                clap_complete::Shell::from(shell),
                &mut Cli::command(),
                "edgegen",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(args) => probe::run(args, json),
        Command::Plan(args) => analyze::plan(args, json),
        Command::LintSchema(args) => analyze::lint(args, json),
        Command::Purge(args) => purge::run(args, json),
        Command::Sync(cmd) => sync::run(cmd, &cli.url, json),
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
