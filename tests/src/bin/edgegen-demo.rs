//! `cargo xtask demo`: the local stack and the release scenario, all real.
//!
//! Starts the coordinator (SQLite in a temporary directory; the tenants' shards in its
//! `[shards]`), the demo origin (users and profiles, one SQLite shard per tenant) and three
//! PoPs (the local-stack edge wasm under Viceroy: the release code plus the purge endpoint), registers twelve tenants (the coordinator
//! writes their hosts to the PoPs' `edgegen_hosts`), then:
//! 1. sends every tenant's request through every PoP (MISS, then HIT; routing by Host;
//!    client `edgegen-*` headers never reach the origin);
//! 2. migrates every shard to 1.8.3 (`profiles.encryption_key_version`, NOT NULL) and asks
//!    for the release of all tenants carrying its analysis (the SQL before/after in
//!    `tests/demo/`, the contracts derived from the origin's response types). One tenant
//!    (`initech`) still holds profiles on the legacy `trial` plan that 1.8.3's `Plan`
//!    retires: the live-data contract check (5 sample responses per tenant, fetched as each
//!    tenant) refuses the release, naming tenant, path and JSON pointer, and nothing moves.
//!    After the data fix the release commits: the coordinator verifies every shard and the
//!    live data before it commits; prints the execution log;
//! 3. deploys the origin's 1.8.3 build and keeps traffic on every PoP until each one has
//!    fetched the new manifests and acknowledged: the release converges. Push: the
//!    coordinator's outbox purges the tenants' manifest keys through the Fastly API
//!    stand-in, which applies the purge at every PoP (the local-stack wasm's purge endpoint),
//!    so each PoP re-fetches at once instead of when its manifest expires; prints the purge
//!    step, when each PoP applied it, and the convergence summary with measured figures;
//! 4. registers a thirteenth tenant while the PoPs run: the coordinator owns the PoPs'
//!    `edgegen_hosts` (through the local stand-in for Fastly's Config Store API, whose JSON
//!    file Viceroy re-reads on each request), so every PoP serves it without a restart.
//!
//! Without `--once` it keeps the stack up until Ctrl-C, printing the dashboard's URL
//! (`/ui`) and copy-paste commands.
//! Exit code: 0 only if every check passed and the release converged.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use edgegen_shared::{SecretKey, TenantId};
use edgegen_tests::coordinator::{ADMIN_TOKEN, Coordinator};
use edgegen_tests::demo_origin::{Build, DemoOrigin};
use edgegen_tests::fastly_api::{self, FastlyApi};
use edgegen_tests::process::free_port;
use edgegen_tests::viceroy::{EdgeConfig, LOCAL_PURGE_TOKEN, PROBE_KEY, Viceroy};
use reqwest::Method;
use serde_json::{Value, json};

const TENANTS: [&str; 12] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
];
const POPS: usize = 3;
/// The tenant registered after the PoPs are up (its shard exists from the start).
const LATE_TENANT: &str = "initrode";
/// The Fastly service the PoPs form at the Fastly API stand-in (purges of it reach them all).
const SERVICE: &str = "demoService01";
/// The id of the PoPs' `edgegen_hosts` Config Store at the Fastly API stand-in.
const HOSTS_STORE: &str = "demoHosts01";
/// The tenant whose shard still holds profiles on the retired `trial` plan.
const LEGACY_TENANT: &str = "initech";
const SCHEMA_FROM: &str = include_str!("../../demo/schema-1.8.2.sql");
const SCHEMA_TO: &str = include_str!("../../demo/schema-1.8.3.sql");

#[tokio::main]
async fn main() -> ExitCode {
    let once = std::env::args().any(|a| a == "--once");
    match run(once).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

struct Seen {
    status: u16,
    cache: String,
    generation: String,
    tenant: String,
}

async fn get(client: &reqwest::Client, edge: &Viceroy, tenant: &str, probe: &str) -> anyhow::Result<Seen> {
    let resp = client
        .get(edge.url("/users/42/profile?lang=en"))
        .header("host", format!("{tenant}.localhost"))
        .header("edgegen-tenant", "someone-else")
        .header("edgegen-probe", probe)
        .send()
        .await
        .with_context(|| format!("GET via {tenant}.localhost"))?;
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let (cache, generation, status) = (header("edgegen-cache"), header("edgegen-generation"), resp.status().as_u16());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Ok(Seen { status, cache, generation, tenant: body["tenant"].as_str().unwrap_or("?").to_owned() })
}

async fn run(once: bool) -> anyhow::Result<()> {
    let (v1, v2) = (Build::V1.contract_schema(), Build::V2.contract_schema());
    let (c1, c2) = (Build::V1.contract_hash(), Build::V2.contract_hash());
    let data = tempfile::Builder::new().prefix("edgegen-demo-").tempdir()?;
    let tenant_ids: Vec<TenantId> =
        TENANTS.iter().chain([&LATE_TENANT]).map(|t| TenantId::new(*t)).collect::<Result<_, _>>()?;
    std::fs::create_dir_all(data.path().join("shards"))?;
    let origin = DemoOrigin::start(&data.path().join("shards"), &tenant_ids)?;
    let mut config = String::from("[shards]\n");
    for (tenant, path) in origin.shard_paths() {
        config.push_str(&format!("{tenant} = {:?}\n", path.display().to_string()));
    }
    // The dependency map, with the sample paths the live-data contract check fetches per tenant.
    config.push_str(&format!(
        "\n[[analysis.routes]]\nroute = \"GET /users/{{id}}/profile\"\nsurrogate_key = \"profiles\"\n\
         tables = [\"profiles\"]\ntypes = [\"UserProfile\"]\n\
         samples = [\"/users/1/profile\", \"/users/2/profile\", \"/users/3/profile\", \"/users/4/profile\", \"/users/5/profile\"]\n\
         \n[analysis.live_check]\norigin = \"http://{}\"\npolicy = \"block\"\n",
        origin.addr()
    ));
    let config_path = data.path().join("edgegen.toml");
    std::fs::write(&config_path, config)?;
    let data_dir = data.path().join("coordinator");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    // The PoPs' host map: a JSON file behind the Fastly Config Store API stand-in, written
    // only by the coordinator.
    let api = FastlyApi::start(500)?; // Fastly's entries per store on paid accounts
    let hosts_file = data.path().join("edgegen_hosts.json");
    api.add_store(HOSTS_STORE, &hosts_file, &[])?;
    let env = [
        ("EDGEGEN_CONFIG", config_path.to_string_lossy().into_owned()),
        ("FASTLY_API_URL", api.url()),
        ("FASTLY_API_TOKEN", fastly_api::TOKEN.to_owned()),
        ("EDGEGEN_HOSTS_STORE_ID", HOSTS_STORE.to_owned()),
        // Push: releases purge the tenants' manifest keys through the stand-in, which applies
        // each purge at every PoP.
        ("FASTLY_SERVICE_ID", SERVICE.to_owned()),
    ];
    let coordinator = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Coordinator::start_on(&data_dir, addr, &env)
    })
    .await??;
    let mut edges = Vec::new();
    for p in 1..=POPS {
        let mut config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), Vec::new(), &format!("pop-{p}"));
        config.hosts_file = Some(hosts_file.clone());
        config.purge_token = Some(LOCAL_PURGE_TOKEN.to_owned());
        let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await??;
        api.add_pop(SERVICE, &format!("pop-{p}"), &edge.url(""), LOCAL_PURGE_TOKEN);
        edges.push(edge);
    }
    println!(
        "edgegen demo: coordinator http://{} (PID {}), demo origin http://{} (one SQLite shard per tenant), {POPS} PoPs:",
        coordinator.addr(),
        coordinator.pid(),
        origin.addr()
    );
    for (i, e) in edges.iter().enumerate() {
        println!("  pop-{} http://{} (Viceroy PID {})", i + 1, e.addr(), e.pid());
    }

    for t in TENANTS {
        let body = json!({"id": t, "hosts": [format!("{t}.localhost")], "schema_version": "1.8.2", "contract_hash": c1, "contract_schema": v1});
        coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    }
    println!(
        "\n1. {} tenants registered at generation 1 (schema 1.8.2, contract {}…)",
        TENANTS.len(),
        &c1.to_string()[..19]
    );
    let synced = Instant::now();
    while api.items(HOSTS_STORE).len() < TENANTS.len() {
        ensure!(synced.elapsed() < Duration::from_secs(15), "the coordinator did not write the tenants' hosts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "   edgegen_hosts: {} hosts written by the coordinator (outbox -> Fastly Config Store API stand-in -> the PoPs' JSON store)",
        api.items(HOSTS_STORE).len()
    );

    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let probe_key = SecretKey::new("probe", PROBE_KEY)?;
    let probes: Vec<String> = TENANTS
        .iter()
        .map(|t| {
            edgegen_shared::probe::mint(&TenantId::new(*t)?, now, now + 3600, &probe_key).map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<_>>()?;
    println!("   every tenant through every PoP, twice (each request also claims to be 'someone-else'):");
    for (t, probe) in TENANTS.iter().zip(&probes) {
        let mut line = format!("   {t:<10}");
        for edge in &edges {
            for _ in 0..2 {
                let seen = get(&client, edge, t, probe).await?;
                ensure!(seen.status == 200 && seen.tenant == *t, "{t}: status {} tenant {}", seen.status, seen.tenant);
                line.push_str(&format!(" {:<4}", seen.cache));
            }
        }
        println!("{line}");
    }
    let resp = client.get(edges[0].url("/")).header("host", "unknown.localhost").send().await?;
    println!("   unknown.localhost -> {} {}", resp.status().as_u16(), resp.text().await?);

    origin.migrate_to_1_8_3()?;
    origin.hold_legacy_plan(LEGACY_TENANT)?;
    println!(
        "\n2. every shard migrated to 1.8.3; release 1.8.3 for all {} tenants, with its analysis (schema, contract, shards, live data)",
        TENANTS.len()
    );
    let body = json!({"tenants": TENANTS, "schema_version": "1.8.3", "contract_hash": c2, "contract_schema": v2,
        "description": "migration 1.8.3: profiles.encryption_key_version NOT NULL; UserProfile gains it, Plan retires trial",
        "analysis": {"schema_from": SCHEMA_FROM, "schema_to": SCHEMA_TO, "contract_from": v1}});
    // Tenant LEGACY_TENANT still holds profiles on the retired `trial` plan: the live-data
    // check refuses the release, naming the tenant, the path and the JSON pointer.
    let refused = coordinator.admin(Method::POST, "/v1/releases", Some(body.clone())).await;
    let why = match refused {
        Err(e) => e.to_string(),
        Ok(r) => anyhow::bail!("the release with {LEGACY_TENANT}'s legacy data was not refused: {r}"),
    };
    ensure!(
        why.contains(&format!("{LEGACY_TENANT} /users/2/profile at /plan")),
        "the refusal does not name the tenant, path and pointer: {why}"
    );
    println!("   refused, nothing moved: {why}");
    origin.retire_legacy_plan(LEGACY_TENANT)?;
    println!("   data fix: {LEGACY_TENANT}'s trial profiles moved to the free plan; the release again:");
    let release = coordinator.admin(Method::POST, "/v1/releases", Some(body)).await?;
    let committed = Instant::now();
    let id = release["id"].as_str().unwrap_or("?").to_owned();
    let log = &release["execution_log"];
    println!(
        "   execution log {} ({})",
        log["execution_id"].as_str().unwrap_or("?"),
        log["timestamp"].as_str().unwrap_or("?")
    );
    for s in log["steps"].as_array().into_iter().flatten() {
        println!(
            "   {:<29} {:<8} {:>8.3} ms  {}",
            s["phase"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["duration_ms"].as_f64().unwrap_or(0.0),
            s["detail"].as_str().unwrap_or("")
        );
    }

    println!("\n3. the origin deploys its 1.8.3 build; traffic continues on every PoP until the release converges");
    origin.deploy(Build::V2);
    let started = Instant::now();
    let mut conv = Value::Null;
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(10) {
        for (t, probe) in TENANTS.iter().zip(&probes) {
            for edge in &edges {
                let seen = get(&client, edge, t, probe).await?;
                ensure!(seen.tenant == *t, "{t} was served another tenant's object");
                reads += 1;
            }
        }
        conv = coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await?;
        if conv["converged"] == true {
            break;
        }
    }
    // The push: the outbox's purge of the manifest keys, as the stand-in applied it per PoP.
    let release_now = coordinator.admin(Method::GET, &format!("/v1/releases/{id}"), None).await?;
    for s in release_now["execution_log"]["steps"].as_array().into_iter().flatten() {
        if s["phase"] == "edge_node_invalidation" && s["status"] != "skipped" {
            println!(
                "   {}: {} {}",
                s["step"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
                s["detail"].as_str().unwrap_or("")
            );
        }
    }
    let manifest_keys = TENANTS.len();
    for applied in api.purges().iter().filter(|a| a.applied_at > committed) {
        let manifests = applied.keys.iter().filter(|k| k.starts_with("edgegen-manifest/")).count();
        println!(
            "   push: {} applied the purge ({} keys, {manifests}/{manifest_keys} tenant manifests) {} ms after commit \
             returned; its next request per tenant re-fetches and acknowledges",
            applied.pop,
            applied.keys.len(),
            applied.applied_at.duration_since(committed).as_millis()
        );
    }
    for (t, probe) in TENANTS.iter().zip(&probes).take(2) {
        let seen = get(&client, &edges[0], t, probe).await?;
        println!("   {t:<10} via pop-1 -> {} {} generation {}", seen.status, seen.cache, seen.generation);
    }
    let ms = |v: &Value| v.as_u64().map_or("-".to_owned(), |v| format!("{v} ms"));
    println!(
        "\n   convergence of {id}: {}/{} live PoPs acknowledged all {} tenants; ack latency p50 {}, p99 {}, max {}; \
         {reads} reads during the rollout, every one answered for its own tenant",
        conv["acked"],
        conv["total"],
        TENANTS.len(),
        ms(&conv["p50_ms"]),
        ms(&conv["p99_ms"]),
        ms(&conv["max_ms"])
    );
    println!(
        "   no PoP trusts a manifest longer than {} (the bound); with push, a PoP re-fetches on its first request after \
         the purge reached it, long before that (BENCHMARKS.md: zero stale reads after each PoP applied its purge)",
        ms(&conv["bound_ms"])
    );
    for p in conv["pops"].as_array().into_iter().flatten() {
        println!(
            "     {:<6} {}/{} tenants, latency {}",
            p["pop"].as_str().unwrap_or("?"),
            p["tenants_acked"],
            p["tenants_total"],
            ms(&p["latency_ms"])
        );
    }
    ensure!(conv["converged"] == true, "the release did not converge: {conv}");

    println!("\n4. a tenant registered while the PoPs run: {LATE_TENANT} (schema 1.8.3)");
    let late_probe = edgegen_shared::probe::mint(&TenantId::new(LATE_TENANT)?, now, now + 3600, &probe_key)?;
    let before = get(&client, &edges[0], LATE_TENANT, &late_probe).await?;
    ensure!(before.status == 404, "{LATE_TENANT}.localhost answered {} before its registration", before.status);
    println!("   before: {LATE_TENANT}.localhost -> {} on pop-1", before.status);
    let body = json!({"id": LATE_TENANT, "hosts": [format!("{LATE_TENANT}.localhost")], "schema_version": "1.8.3",
        "contract_hash": c2, "contract_schema": v2});
    let registered = Instant::now();
    coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    for (i, edge) in edges.iter().enumerate() {
        loop {
            let seen = get(&client, edge, LATE_TENANT, &late_probe).await?;
            if seen.status == 200 && seen.tenant == LATE_TENANT {
                println!(
                    "   pop-{} -> 200 {} for {LATE_TENANT}, {} ms after the registration (same Viceroy PID {})",
                    i + 1,
                    seen.cache,
                    registered.elapsed().as_millis(),
                    edge.pid()
                );
                break;
            }
            ensure!(
                registered.elapsed() < Duration::from_secs(15),
                "pop-{} still answers {} for {LATE_TENANT}",
                i + 1,
                seen.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("\nall checks passed: the release converged; a tenant was added live.");

    if once {
        return Ok(());
    }
    let (edge_port, coord) = (edges[0].addr().port(), coordinator.addr());
    println!("\nThe stack stays up until Ctrl-C.");
    println!("  dashboard:    http://{coord}/ui#/release/{id}  (log in with the admin token {ADMIN_TOKEN})");
    println!("  API contract: http://{coord}/openapi.json");
    println!("Try:");
    println!("  curl -si -H 'host: acme.localhost' 'http://127.0.0.1:{edge_port}/users/42/profile?lang=en'");
    println!("  export EDGEGEN_URL=http://{coord} EDGEGEN_ADMIN_TOKEN={ADMIN_TOKEN} EDGEGEN_PROBE_KEY={PROBE_KEY}");
    println!(
        "  cargo run -q -p edgegen-coordinator -- probe --tenant acme --host acme.localhost http://127.0.0.1:{edge_port}/users/42/profile"
    );
    println!("  cargo run -q -p edgegen-coordinator -- status {id} --watch");
    println!("  cargo run -q -p edgegen-coordinator -- rollback {id}");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    println!(
        "\nstopping: coordinator PID {}, {} Viceroy PoPs, sample origin, Config Store API stand-in",
        coordinator.pid(),
        edges.len()
    );
    Ok(())
}
