//! `edgegen key`: derives the cache key and surrogate keys the edge uses for a request,
//! offline, through `edgegen-shared` (so it matches the known-answer vectors exactly).
//!
//! Exit codes: 0 key derived; 2 invalid input (the field and rule are named).

use std::process::ExitCode;

use anyhow::Context as _;
use edgegen_shared::key::{KeyInput, KeyScope};
use edgegen_shared::surrogate::{self, SurrogateKey};
use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

#[derive(clap::Args)]
/// `edgegen key` arguments.
pub struct KeyArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: TenantId,
    /// Tenant schema version (MAJOR.MINOR.PATCH).
    #[arg(long = "schema")]
    schema_version: SchemaVersion,
    /// Tenant contract hash (sha256:<64 hex>).
    #[arg(long = "contract")]
    contract_hash: ContractHash,
    /// Tenant generation.
    #[arg(long)]
    generation: u64,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// A header the response varies on, as NAME=VALUE, or NAME alone when the request lacks it.
    #[arg(long = "vary", value_name = "NAME[=VALUE]")]
    vary: Vec<String>,
    /// Origin surrogate keys (space-separated), re-scoped under the tenant.
    #[arg(long = "surrogate-keys", value_name = "KEYS")]
    surrogate_keys: Option<String>,
    /// The request target: a path with an optional query, e.g. '/users/42?lang=en'.
    target: String,
}

/// Runs `edgegen key`.
///
/// # Errors
/// When the request cannot be keyed (exit code 2).
pub fn run(args: KeyArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (path, query) = match args.target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (args.target.clone(), None),
    };
    let vary = args
        .vary
        .iter()
        .map(|v| match v.split_once('=') {
            Some((n, val)) => (n.to_owned(), Some(val.to_owned())),
            None => (v.clone(), None),
        })
        .collect();
    let input = KeyInput {
        scope: KeyScope {
            tenant: args.tenant.clone(),
            schema_version: args.schema_version,
            contract_hash: args.contract_hash,
            generation: Generation(args.generation),
        },
        method: args.method,
        path,
        query,
        vary,
    };
    let (request, cache_key) = input.derive().context("cannot key this request")?;
    let keys = surrogate::object_keys(&args.tenant, Generation(args.generation), args.surrogate_keys.as_deref())
        .context("invalid surrogate keys")?;
    let manifest_key = SurrogateKey::manifest(&args.tenant);
    if json {
        let out = serde_json::json!({
            "key": cache_key.to_hex(),
            "tenant": args.tenant,
            "generation": args.generation,
            "method": request.method(),
            "path": request.path(),
            "query": request.query(),
            "surrogate_keys": keys.iter().map(SurrogateKey::as_str).collect::<Vec<_>>(),
            "manifest_surrogate_key": manifest_key.as_str(),
        });
        println!("{out:#}");
    } else {
        println!("key             {cache_key}");
        println!("target          {} {}", request.method(), request.path_and_query());
        println!("surrogate keys  {}", surrogate::header_value(&keys)?);
        println!("manifest key    {manifest_key}");
    }
    Ok(ExitCode::SUCCESS)
}
