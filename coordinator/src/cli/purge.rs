//! `edgegen purge --service ID [--soft] KEY...`: purges surrogate keys through the Fastly
//! API (`FASTLY_API_TOKEN`; `FASTLY_API_URL` for another base, default Fastly's public API),
//! in batches of at most 256, with retries until the deadline.
//!
//! Exit codes: 0 every key purged; 1 some key failed (each is listed); 2 invalid input
//! (missing token, a key that breaks Fastly's rules).

use std::process::ExitCode;
use std::time::Duration;

use edgegen_shared::surrogate::SurrogateKey;

use super::{EXIT_FAILED, EXIT_INVALID, Exit};
use crate::fastly::{DEFAULT_API_URL, FastlyClient};

/// `edgegen purge` arguments.
#[derive(clap::Args)]
pub struct PurgeArgs {
    /// Fastly service id.
    #[arg(long)]
    service: String,
    /// Mark objects stale instead of removing them.
    #[arg(long)]
    soft: bool,
    /// Give up on each API call after this many seconds.
    #[arg(long, default_value_t = 30)]
    deadline: u64,
    /// Surrogate keys (e.g. t/acme/g/41).
    #[arg(required = true)]
    keys: Vec<String>,
}

/// A Fastly API client from `FASTLY_API_TOKEN` and `FASTLY_API_URL` (default Fastly's
/// public API); each call gives up after `deadline`.
///
/// # Errors
/// Exit code 2 when the token is not set.
pub(super) fn client_from_env(deadline: Duration) -> anyhow::Result<FastlyClient> {
    let invalid = |message: String| anyhow::Error::new(Exit { code: EXIT_INVALID, message });
    let token = std::env::var("FASTLY_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("FASTLY_API_TOKEN is not set".into()))?;
    let base = std::env::var("FASTLY_API_URL").unwrap_or_else(|_| DEFAULT_API_URL.into());
    FastlyClient::new(&base, &token, deadline).map_err(|e| invalid(e.0))
}

/// Runs `edgegen purge`.
///
/// # Errors
/// As the module's exit codes say.
pub fn run(args: PurgeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let invalid = |message: String| anyhow::Error::new(Exit { code: EXIT_INVALID, message });
    for key in &args.keys {
        SurrogateKey::new(key.clone()).map_err(|e| invalid(e.to_string()))?;
    }
    if args.service.is_empty() || !args.service.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(format!("--service: {:?} is not a Fastly service id (alphanumeric)", args.service)));
    }
    let client = client_from_env(Duration::from_secs(args.deadline))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(client.purge(&args.service, &args.keys, args.soft));
    let failed = report.failed().count();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for r in &report.results {
            match (&r.purge_id, &r.error) {
                (Some(id), _) => println!("purged  {}  (purge id {id})", r.key),
                (None, Some(e)) => println!("FAILED  {}  {e}", r.key),
                (None, None) => println!("FAILED  {}", r.key),
            }
        }
        println!(
            "{} key(s), {} purged, {failed} failed, {} API call(s)",
            report.results.len(),
            report.results.len() - failed,
            report.calls
        );
    }
    if failed > 0 {
        return Err(anyhow::Error::new(Exit {
            code: EXIT_FAILED,
            message: format!("{failed} key(s) were not purged"),
        }));
    }
    Ok(ExitCode::SUCCESS)
}
