//! Client subcommands (`tenant`, `release`, `status`, `rollback`): talk to a running
//! coordinator's admin API at `--url` (or `EDGEGEN_URL`) with `EDGEGEN_ADMIN_TOKEN`.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edgegen_shared::api::{
    Convergence, ExecutionLog, NewTenant, Release, ReleasePlan, ReleaseRequest, ReleaseStatus, Tenant, TenantHosts,
};
use edgegen_shared::{ContractHash, ReleaseId, SchemaVersion, TenantId};
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_ROLLED_BACK, EXIT_TIMEOUT, Exit};

/// `edgegen tenant ...`.
#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// Register a tenant at generation 1.
    Add(TenantAddArgs),
    /// List tenants.
    List,
    /// Show one tenant.
    Show {
        /// Tenant id.
        id: TenantId,
    },
    /// Replace a tenant's hosts with the listed ones (the same list again changes nothing);
    /// hosts left out stop routing to it.
    Hosts {
        /// Tenant id.
        id: TenantId,
        /// Every host name routed to the tenant from now on (repeat, or separate with commas).
        #[arg(long = "host", value_delimiter = ',', required = true)]
        hosts: Vec<String>,
    },
    /// Remove a tenant: its hosts stop routing and its manifest answers 404; its releases
    /// stay as history and its id is not reused. Refused while its last release converges.
    Remove {
        /// Tenant id.
        id: TenantId,
    },
}

/// `edgegen tenant add` arguments.
#[derive(clap::Args)]
pub struct TenantAddArgs {
    /// Tenant id (1-63 of a-z, 0-9, '-').
    #[arg(long)]
    id: TenantId,
    /// Host names routed to the tenant (repeat, or separate with commas).
    #[arg(long = "host", value_delimiter = ',', required = true)]
    hosts: Vec<String>,
    /// Initial schema version.
    #[arg(long)]
    schema_version: SchemaVersion,
    /// Initial contract hash.
    #[arg(long)]
    contract_hash: ContractHash,
    /// JSON Schema file the contract hash must match.
    #[arg(long)]
    contract_schema: Option<PathBuf>,
}

/// `edgegen release` arguments.
#[derive(clap::Args)]
pub struct ReleaseArgs {
    /// Tenants to release, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    tenants: Vec<TenantId>,
    /// Schema version after the release.
    #[arg(long)]
    schema_version: SchemaVersion,
    /// Contract hash after the release.
    #[arg(long)]
    contract_hash: ContractHash,
    /// JSON Schema file the contract hash must match.
    #[arg(long)]
    contract_schema: Option<PathBuf>,
    /// Schema before the release (full DDL): with --schema-to, the coordinator analyses the
    /// release first and refuses it when the analysis blocks.
    #[arg(long, requires = "schema_to")]
    schema_from: Option<PathBuf>,
    /// Schema after the release (full DDL).
    #[arg(long, requires = "schema_from")]
    schema_to: Option<PathBuf>,
    /// Contract JSON Schema before the release (compared with --contract-schema).
    #[arg(long, requires_all = ["schema_from", "contract_schema"])]
    contract_from: Option<PathBuf>,
    /// SQL dialect of the schema files.
    #[arg(long)]
    dialect: Option<String>,
    /// Makes retries safe: the same key returns the original release and bumps nothing.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Recorded as the execution log's task.
    #[arg(long)]
    description: Option<String>,
    /// Wait until every live PoP acknowledged (exit 3 on timeout, 4 if rolled back).
    #[arg(long, conflicts_with = "plan_only")]
    wait: bool,
    /// Only plan: print the analysis and per-tenant invalidation plan; nothing changes
    /// (exit 0 safe, 1 needs a release, 2 blocked).
    #[arg(long)]
    plan_only: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 60.0, requires = "wait")]
    timeout: f64,
}

/// `edgegen status ID`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Release id.
    id: ReleaseId,
    /// Follow convergence per PoP live until the release converges (exit 0), is rolled back
    /// or fails (exit 4), or --timeout passes (exit 3): the exit codes of `release --wait`.
    #[arg(long)]
    watch: bool,
    /// With --watch: give up after this many seconds.
    #[arg(long, default_value_t = 60.0, requires = "watch")]
    timeout: f64,
}

/// `edgegen rollback ID`.
#[derive(clap::Args)]
pub struct RollbackArgs {
    /// Release id.
    id: ReleaseId,
}

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit { code, message: message.into() })
}

/// A blocking client of the admin API.
pub(super) struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    pub(super) fn new(base: &str) -> anyhow::Result<Api> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(fail(EXIT_INVALID, format!("--url: must start with http:// or https:// (got {base:?})")));
        }
        let token = std::env::var("EDGEGEN_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail(EXIT_INVALID, "EDGEGEN_ADMIN_TOKEN is not set"))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Api { base: base.trim_end_matches('/').to_owned(), token, http, runtime })
    }

    pub(super) fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(reqwest::StatusCode, T)> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.token);
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| fail(EXIT_FAILED, format!("cannot reach the coordinator at {}: {e}", self.base)))?;
            let status = resp.status();
            let text = resp.text().await.context("reading the response")?;
            if !status.is_success() {
                let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
                let (code, message) = parsed
                    .as_ref()
                    .map(|v| {
                        (v["error"]["code"].as_str().unwrap_or("?"), v["error"]["message"].as_str().unwrap_or(&text))
                    })
                    .unwrap_or(("?", text.as_str()));
                return Err(fail(EXIT_FAILED, format!("{message} ({code}, HTTP {})", status.as_u16())));
            }
            // An answer without a body (204) reads as JSON `null`: the unit value.
            let value = serde_json::from_str(if text.is_empty() { "null" } else { &text })
                .with_context(|| format!("{method} {path}: unexpected response body: {text}"))?;
            Ok((status, value))
        })
    }
}

fn read_schema(path: &Option<PathBuf>) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| fail(EXIT_INVALID, format!("{}: invalid JSON: {e}", path.display())))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs `edgegen tenant ...`.
///
/// # Errors
/// As the module's exit codes say.
pub fn tenant(cmd: TenantCommand, url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(url)?;
    let none = None::<&()>;
    match cmd {
        TenantCommand::Add(args) => {
            let body = NewTenant {
                id: args.id,
                hosts: args.hosts,
                schema_version: args.schema_version,
                contract_hash: args.contract_hash,
                contract_schema: read_schema(&args.contract_schema)?,
            };
            let (_, t): (_, Tenant) = api.call(Method::POST, "/v1/tenants", Some(&body), &[])?;
            if json {
                print_json(&t)?;
            } else {
                println!("registered tenant {} at generation {} ({})", t.id, t.generation, t.hosts.join(", "));
            }
        }
        TenantCommand::List => {
            let (_, tenants): (_, Vec<Tenant>) = api.call(Method::GET, "/v1/tenants", none, &[])?;
            if json {
                print_json(&tenants)?;
            } else {
                println!("{:<24} {:>10}  {:<10} {:<20} hosts", "tenant", "generation", "schema", "contract");
                for t in tenants {
                    let contract = t.contract_hash.to_string();
                    println!(
                        "{:<24} {:>10}  {:<10} {:<20} {}",
                        t.id,
                        t.generation,
                        t.schema_version,
                        &contract[..contract.len().min(19)],
                        t.hosts.join(",")
                    );
                }
            }
        }
        TenantCommand::Show { id } => {
            let (_, t): (_, Tenant) = api.call(Method::GET, &format!("/v1/tenants/{id}"), none, &[])?;
            if json {
                print_json(&t)?;
            } else {
                println!(
                    "tenant      {}\ngeneration  {}\nschema      {}\ncontract    {}\nhosts       {}",
                    t.id,
                    t.generation,
                    t.schema_version,
                    t.contract_hash,
                    t.hosts.join(", ")
                );
            }
        }
        TenantCommand::Hosts { id, hosts } => {
            let body = TenantHosts { hosts };
            let (_, t): (_, Tenant) = api.call(Method::PUT, &format!("/v1/tenants/{id}/hosts"), Some(&body), &[])?;
            if json {
                print_json(&t)?;
            } else {
                println!("tenant {} now routes {}", t.id, t.hosts.join(", "));
            }
        }
        TenantCommand::Remove { id } => {
            let (_, ()) = api.call(Method::DELETE, &format!("/v1/tenants/{id}"), none, &[])?;
            if json {
                print_json(&serde_json::json!({ "removed": id }))?;
            } else {
                println!("tenant {id} removed: its hosts no longer route to it");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `edgegen release`.
///
/// # Errors
/// As the module's exit codes say.
pub fn release(args: ReleaseArgs, url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(url)?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(fail(EXIT_INVALID, "--timeout: must be a positive number of seconds"));
    }
    let body = ReleaseRequest {
        tenants: args.tenants,
        schema_version: args.schema_version,
        contract_hash: args.contract_hash,
        contract_schema: read_schema(&args.contract_schema)?,
        description: args.description,
        analysis: match (&args.schema_from, &args.schema_to) {
            (Some(from), Some(to)) => Some(edgegen_shared::api::AnalysisInput {
                dialect: args.dialect.clone(),
                schema_from: std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?,
                schema_to: std::fs::read_to_string(to).with_context(|| format!("reading {}", to.display()))?,
                contract_from: read_schema(&args.contract_from)?,
            }),
            _ => None,
        },
    };
    if args.plan_only {
        let (_, plan): (_, ReleasePlan) = api.call(Method::POST, "/v1/releases/plan", Some(&body), &[])?;
        if json {
            print_json(&plan)?;
        } else {
            println!(
                "plan {}  verdict: {}",
                plan.plan_hash,
                serde_json::to_value(plan.verdict)?.as_str().unwrap_or("?")
            );
            for f in plan.analysis.iter().flat_map(|a| &a.findings) {
                let severity = serde_json::to_value(f.severity)?;
                println!("  {:<9} {:<38} {}", severity.as_str().unwrap_or("?"), f.code, f.message);
            }
            for t in &plan.tenants {
                println!(
                    "  {:<24} generation {} -> {}  purge: {}",
                    t.change.tenant,
                    t.change.from_generation,
                    t.change.to_generation,
                    t.purge_surrogate_keys.join(" ")
                );
            }
        }
        return Ok(ExitCode::from(plan.verdict.exit_code()));
    }
    let headers: Vec<(&str, &str)> =
        args.idempotency_key.as_deref().map(|k| ("idempotency-key", k)).into_iter().collect();
    let (status, release): (_, Release) = api.call(Method::POST, "/v1/releases", Some(&body), &headers)?;
    if !json {
        let verb =
            if status == reqwest::StatusCode::OK { "already committed (idempotent replay)" } else { "committed" };
        println!("release {} {verb}: {} tenant(s)", release.id, release.tenants.len());
        for c in &release.tenants {
            println!(
                "  {:<24} generation {} -> {}  schema {} -> {}",
                c.tenant, c.from_generation, c.to_generation, c.from_schema_version, c.to_schema_version
            );
        }
    }
    if !args.wait {
        if json {
            print_json(&release)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow(&api, &release.id, args.timeout, false, json)
}

/// Follows a release until it converges, stops being `committed` or `timeout_s` passes, then
/// prints its log and convergence and maps the outcome to the exit codes of `release --wait`
/// (0 converged, 3 timed out, 4 rolled back or failed). `per_pop` draws one line per PoP.
fn follow(api: &Api, id: &ReleaseId, timeout_s: f64, per_pop: bool, json: bool) -> anyhow::Result<ExitCode> {
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(fail(EXIT_INVALID, "--timeout: must be a positive number of seconds"));
    }
    let outcome = wait_for_convergence(api, id, Duration::from_secs_f64(timeout_s), per_pop, json)?;
    let (_, release): (_, Release) = api.call(Method::GET, &format!("/v1/releases/{id}"), None::<&()>, &[])?;
    if json {
        print_json(&serde_json::json!({ "release": release, "convergence": outcome }))?;
    } else {
        print_log(&release.execution_log);
        print_convergence(&outcome);
    }
    match release.status {
        ReleaseStatus::Converged => Ok(ExitCode::SUCCESS),
        ReleaseStatus::RolledBack | ReleaseStatus::Failed => {
            Err(fail(EXIT_ROLLED_BACK, format!("release {} was {} while waiting", release.id, release.status.as_str())))
        }
        ReleaseStatus::Committed => Err(fail(
            EXIT_TIMEOUT,
            format!(
                "release {} did not converge within {timeout_s:.1} s ({}/{} live PoPs acknowledged)",
                release.id, outcome.acked, outcome.total
            ),
        )),
    }
}

/// Polls convergence, drawing a progress bar on a terminal (plain lines otherwise), until the
/// release converges, stops being `committed`, or `timeout` passes.
fn wait_for_convergence(
    api: &Api,
    id: &ReleaseId,
    timeout: Duration,
    per_pop: bool,
    json: bool,
) -> anyhow::Result<Convergence> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal() && !json;
    let mut last: Vec<String> = Vec::new();
    loop {
        let (_, c): (_, Convergence) =
            api.call(Method::GET, &format!("/v1/releases/{id}/convergence"), None::<&()>, &[])?;
        let done = c.converged || c.status != ReleaseStatus::Committed || started.elapsed() >= timeout;
        if !json {
            let mut lines = vec![format!(
                "{} {}/{} PoPs acked  {:.1}s",
                bar(c.acked, c.total),
                c.acked,
                c.total,
                started.elapsed().as_secs_f64()
            )];
            if per_pop {
                lines.extend(c.pops.iter().map(|p| {
                    let latency =
                        p.latency_ms.map_or_else(|| "pending".to_owned(), |ms| format!("acked after {ms} ms"));
                    format!(
                        "  {:<16} {} {}/{} tenants  {latency}",
                        p.pop,
                        bar(p.tenants_acked, p.tenants_total),
                        p.tenants_acked,
                        p.tenants_total
                    )
                }));
            }
            if tty {
                // Redraw the block in place: up over the previous lines, then clear to the end.
                if !last.is_empty() {
                    eprint!("\x1b[{}A\r\x1b[J", last.len());
                }
                eprintln!("{}", lines.join("\n"));
                let _ = std::io::stderr().flush();
            } else {
                // Plain output (a pipe or a CI log): print only what changed, the clock aside.
                let changed = lines.len() != last.len()
                    || lines
                        .iter()
                        .zip(&last)
                        .any(|(a, b)| a.split("  ").next() != b.split("  ").next() || (a != b && a.starts_with("  ")));
                if changed || done {
                    eprintln!("{}", lines.join("\n"));
                }
            }
            last = lines;
        }
        if done {
            return Ok(c);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A 30-character progress bar of `done` out of `total`.
fn bar(done: usize, total: usize) -> String {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(0).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

fn print_log(log: &ExecutionLog) {
    println!("\nexecution {}  {}  {}", log.execution_id, log.timestamp, log.task);
    for s in &log.steps {
        println!("  {:<29} {:<8} {:>9.2} ms  {}: {}", s.phase, s.status, s.duration_ms, s.step, s.detail);
    }
    println!("  summary {}", serde_json::Value::Object(log.summary.clone()));
}

fn print_convergence(c: &Convergence) {
    let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
    println!(
        "\nconvergence {}: {}/{} live PoPs acked; ack latency p50 {}, p99 {}, max {}; max staleness {} ms (bound {} ms)",
        c.release_id,
        c.acked,
        c.total,
        ms(c.p50_ms),
        ms(c.p99_ms),
        ms(c.max_ms),
        c.max_staleness_ms,
        c.bound_ms
    );
    for p in &c.pops {
        println!("  {:<16} {}/{} tenants  latency {}", p.pop, p.tenants_acked, p.tenants_total, ms(p.latency_ms));
    }
    let l = &c.leases;
    println!(
        "leases: {} confirmed, {} provably expired, {} unconfirmed",
        l.confirmed.len(),
        l.expired.len(),
        l.unconfirmed.len()
    );
    for p in &l.expired {
        println!(
            "  {:<16} expired    {} tenant(s) unconfirmed, old generation servable until {}",
            p.pop, p.tenants_unconfirmed, p.old_until
        );
    }
    for p in &l.unconfirmed {
        println!(
            "  {:<16} unconfirmed {} tenant(s), may serve the old generation until {} ({} ms from now)",
            p.pop, p.tenants_unconfirmed, p.old_until, p.remaining_ms
        );
    }
}

/// Runs `edgegen status ID`.
///
/// # Errors
/// As the module's exit codes say.
pub fn status(args: StatusArgs, url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(url)?;
    if args.watch {
        return follow(&api, &args.id, args.timeout, true, json);
    }
    let (_, release): (_, Release) = api.call(Method::GET, &format!("/v1/releases/{}", args.id), None::<&()>, &[])?;
    let (_, conv): (_, Convergence) =
        api.call(Method::GET, &format!("/v1/releases/{}/convergence", args.id), None::<&()>, &[])?;
    if json {
        print_json(&serde_json::json!({ "release": release, "convergence": conv }))?;
    } else {
        println!("release {} ({}): {}", release.id, release.kind, conv.status.as_str());
        for c in &release.tenants {
            println!(
                "  {:<24} generation {} -> {}  schema {} -> {}",
                c.tenant, c.from_generation, c.to_generation, c.from_schema_version, c.to_schema_version
            );
        }
        print_log(&release.execution_log);
        print_convergence(&conv);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `edgegen rollback ID`.
///
/// # Errors
/// As the module's exit codes say.
pub fn rollback(args: RollbackArgs, url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(url)?;
    let (_, rollback): (_, Release) =
        api.call(Method::POST, &format!("/v1/releases/{}/rollback", args.id), None::<&()>, &[])?;
    if json {
        print_json(&rollback)?;
    } else {
        println!("rolled back {} with {}: {} tenant(s)", args.id, rollback.id, rollback.tenants.len());
        for c in &rollback.tenants {
            println!(
                "  {:<24} generation {} -> {}  schema {} -> {}",
                c.tenant, c.from_generation, c.to_generation, c.from_schema_version, c.to_schema_version
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
