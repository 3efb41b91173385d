//! `edgegen probe`: mints an `edgegen-probe` token for a tenant (with `EDGEGEN_PROBE_KEY`)
//! and, given a URL, sends a GET through the edge with it and prints the edge's view of the
//! request (the `edgegen-*` debug headers).
//!
//! Exit codes: 0 token minted / request answered; 1 the request failed; 2 invalid input
//! (missing or short key, bad tenant, TTL over 24 h).

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use edgegen_shared::{SecretKey, TenantId, probe};

use super::{EXIT_INVALID, Exit};

/// `edgegen probe` arguments.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Tenant the token is bound to.
    #[arg(long)]
    tenant: TenantId,
    /// Token lifetime in seconds (at most 86400).
    #[arg(long, default_value_t = 600)]
    ttl: u64,
    /// Host header to send (the tenant's host), when it differs from the URL's.
    #[arg(long)]
    host: Option<String>,
    /// Send a GET to this edge URL with the token and print the edge's view.
    url: Option<String>,
}

/// Runs `edgegen probe`.
///
/// # Errors
/// As the module's exit codes say.
pub fn run(args: ProbeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let invalid = |message: String| anyhow::Error::new(Exit { code: EXIT_INVALID, message });
    let key_text = std::env::var("EDGEGEN_PROBE_KEY").map_err(|_| invalid("EDGEGEN_PROBE_KEY is not set".into()))?;
    let key = SecretKey::new("EDGEGEN_PROBE_KEY", key_text.into_bytes()).map_err(|e| invalid(e.to_string()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let token = probe::mint(&args.tenant, now, now.saturating_add(args.ttl), &key)
        .map_err(|e| invalid(format!("--ttl: {e}")))?;
    let Some(url) = args.url else {
        if json {
            println!("{}", serde_json::json!({ "token": token, "tenant": args.tenant, "expires_at": now + args.ttl }));
        } else {
            println!("{token}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, headers) = runtime.block_on(async {
        let mut req = reqwest::Client::new().get(&url).header("edgegen-probe", &token);
        if let Some(host) = &args.host {
            req = req.header("host", host);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("edgegen-"))
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        anyhow::Ok((resp.status().as_u16(), headers))
    })?;
    if json {
        let view: serde_json::Map<String, serde_json::Value> =
            headers.into_iter().map(|(n, v)| (n, v.into())).collect();
        println!("{}", serde_json::json!({ "status": status, "edge": view }));
    } else {
        println!("HTTP {status}");
        if headers.is_empty() {
            println!("(no edgegen-* headers: the edge did not accept the token for this tenant, or is not edgegen)");
        }
        for (name, value) in headers {
            println!("{name}: {value}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
