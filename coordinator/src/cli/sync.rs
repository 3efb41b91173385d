//! `edgegen sync hosts --store-id ID [--dry-run]`: makes the edge's `edgegen_hosts` Config
//! Store hold exactly the coordinator's host map (each tenant's hosts → the tenant) through
//! the Fastly API, and prints the drift it found: hosts missing from the store, extra in it,
//! or pointing at another tenant. The decisions are [`crate::hostmap`]'s and the store I/O
//! [`crate::hostsync`]'s; this reads the tenants and prints.
//!
//! Reads the tenants from `EDGEGEN_URL` with `EDGEGEN_ADMIN_TOKEN`; writes with
//! `FASTLY_API_TOKEN` (`FASTLY_API_URL` for another API base).
//!
//! Exit codes: `0` in sync, nothing changed; `1` it changed the store (with `--dry-run`: it
//! would); `2` invalid input, or the tenants break a Config Store limit (nothing is
//! written); `5` the coordinator or the Fastly API failed, or the store still differs after
//! the repair (run it again: every repair is idempotent).

use std::process::ExitCode;
use std::time::Duration;

use edgegen_shared::api::Tenant;
use reqwest::Method;
use serde::Serialize;

use super::client::Api;
use super::{EXIT_INVALID, EXIT_SYNC_FAILED, Exit};
use crate::hostmap::{self, Drift};
use crate::hostsync::{self, Reconciled};

/// `edgegen sync ...`.
#[derive(clap::Subcommand)]
pub enum SyncCommand {
    /// Reconcile the edge's `edgegen_hosts` Config Store with the coordinator's tenants.
    Hosts(SyncHostsArgs),
}

/// `edgegen sync hosts` arguments.
#[derive(clap::Args)]
pub struct SyncHostsArgs {
    /// Id of the `edgegen_hosts` Config Store (`fastly config-store list`).
    #[arg(long, env = "EDGEGEN_HOSTS_STORE_ID")]
    store_id: String,
    /// Print the drift; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Entries the store may hold (Fastly: 500 on paid accounts, 100 on trials).
    #[arg(long, default_value_t = hostmap::DEFAULT_MAX_ENTRIES)]
    max_entries: usize,
    /// Give up on each Fastly API call after this many seconds.
    #[arg(long, default_value_t = 30)]
    deadline: u64,
}

#[derive(Serialize)]
struct Outcome<'a> {
    store_id: &'a str,
    dry_run: bool,
    in_sync: bool,
    /// Whether the repair was written.
    repaired: bool,
    hosts: usize,
    drift: &'a [Drift],
}

fn failed(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit { code: EXIT_SYNC_FAILED, message })
}

/// Runs `edgegen sync ...`.
///
/// # Errors
/// As the module's exit codes say.
pub fn run(command: SyncCommand, url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let SyncCommand::Hosts(args) = command;
    let invalid = |message: String| anyhow::Error::new(Exit { code: EXIT_INVALID, message });
    if args.store_id.is_empty() || !args.store_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(format!("--store-id: {:?} is not a Fastly Config Store id (alphanumeric)", args.store_id)));
    }
    let fastly = super::purge::client_from_env(Duration::from_secs(args.deadline))?;
    let api = Api::new(url)?;
    let none = None::<&()>;
    let (_, tenants): (_, Vec<Tenant>) =
        api.call(Method::GET, "/v1/tenants", none, &[]).map_err(|e| failed(format!("reading the tenants: {e:#}")))?;
    drop(api);
    let desired = hostmap::desired(&tenants, args.max_entries)
        .map_err(|e| invalid(format!("edgegen_hosts: {e}; nothing was written")))?;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let Reconciled { drift, repaired } = runtime
        .block_on(hostsync::reconcile(&fastly, &args.store_id, &desired, args.dry_run))
        .map_err(|e| failed(e.to_string()))?;

    if json {
        let outcome = Outcome {
            store_id: &args.store_id,
            dry_run: args.dry_run,
            in_sync: drift.is_empty(),
            repaired,
            hosts: desired.len(),
            drift: &drift,
        };
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        for d in &drift {
            println!("{d}");
        }
        let verdict = match (drift.is_empty(), args.dry_run) {
            (true, _) => "in sync".to_owned(),
            (false, true) => format!("{} difference(s); --dry-run: nothing changed", drift.len()),
            (false, false) => format!("{} difference(s) repaired", drift.len()),
        };
        println!("edgegen_hosts ({}): {} host(s), {verdict}", args.store_id, desired.len());
    }
    Ok(if drift.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
