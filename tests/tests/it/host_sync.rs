//! The host map through the local stand-in for Fastly's Config Store API: `edgegen sync
//! hosts` against the real coordinator binary, the store a JSON file that PoPs running the
//! release edge under Viceroy read on every request. Drift is reported, repaired, and the
//! PoPs route by the repaired map without a restart; limits are refused before any write.
//! A coordinator that owns the map delivers registrations, host changes and removals
//! (`edgegen tenant hosts`, `edgegen tenant remove`) to the PoPs through its outbox, also
//! across a SIGKILL between the commit and the delivery.

use std::path::Path;
use std::process::Output;

use edgegen_tests::coordinator::{ADMIN_TOKEN, Coordinator};
use edgegen_tests::fastly_api::{self, FastlyApi};
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};
use edgegen_tests::workspace;
use reqwest::Method;
use serde_json::{Value, json};

const STORE: &str = "hostsStore01";

fn contract() -> String {
    format!("sha256:{}", hex::encode([1u8; 32]))
}

async fn register(c: &Coordinator, id: &str, hosts: &[&str]) -> anyhow::Result<Value> {
    let body = json!({"id": id, "hosts": hosts, "schema_version": "1.8.2", "contract_hash": contract()});
    c.admin(Method::POST, "/v1/tenants", Some(body)).await
}

/// Runs `edgegen sync hosts --store-id STORE` against `coordinator` and `api`.
async fn sync(coordinator: &Coordinator, api: &FastlyApi, token: &str, args: &[&str]) -> Output {
    sync_store(coordinator, api, token, STORE, args).await
}

async fn sync_store(coordinator: &Coordinator, api: &FastlyApi, token: &str, store: &str, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(workspace::coordinator_bin().unwrap());
    cmd.args(["sync", "hosts", "--store-id", store])
        .args(args)
        .env("EDGEGEN_URL", format!("http://{}", coordinator.addr()))
        .env("EDGEGEN_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FASTLY_API_URL", api.url())
        .env("FASTLY_API_TOKEN", token)
        .env_remove("EDGEGEN_HOSTS_STORE_ID");
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// (status, the tenant the origin was told) for a request to `host` through `edge`.
async fn route(edge: &Viceroy, host: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(edge.url("/whoami"))
        .header("host", host)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.log_tail(20)));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["tenant"].as_str().unwrap_or("-").to_owned())
}

async fn start_coordinator(dir: &Path) -> Coordinator {
    let data = dir.join("coordinator");
    tokio::task::spawn_blocking(move || Coordinator::start(&data)).await.unwrap().unwrap()
}

#[tokio::test]
async fn sync_hosts_repairs_drift_and_the_pops_route_by_it_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_coordinator(dir.path()).await;
    register(&coordinator, "acme", &["acme.localhost"]).await.unwrap();
    register(&coordinator, "beta", &["beta.localhost", "www.beta.localhost"]).await.unwrap();

    // A host claimed by two tenants is refused at registration, naming host and owner.
    let err = register(&coordinator, "gamma", &["gamma.localhost", "acme.localhost"]).await.unwrap_err();
    assert!(err.to_string().contains("acme.localhost already belongs to tenant acme"), "{err}");

    // The store as a hand-maintained map left it: one right, one stale, one misrouted, one missing.
    let api = FastlyApi::start(500).unwrap();
    let file = dir.path().join("edgegen_hosts.json");
    let stale = [("acme.localhost", "acme"), ("beta.localhost", "acme"), ("old.localhost", "gone")];
    api.add_store(STORE, &file, &stale).unwrap();

    let origin = SampleOrigin::start(Stamp { schema_version: "1.8.2".into(), contract_hash: contract() }).unwrap();
    let mut pops = Vec::new();
    for pop in ["local-1", "local-2"] {
        let mut config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), Vec::new(), pop);
        config.hosts_file = Some(file.clone());
        pops.push(tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap());
    }
    let pids: Vec<u32> = pops.iter().map(Viceroy::pid).collect();
    assert_eq!(route(&pops[0], "beta.localhost").await, (200, "acme".into()), "misrouted before the sync");
    assert_eq!(route(&pops[0], "www.beta.localhost").await.0, 404, "missing before the sync");

    // --dry-run: the drift, exit 1, nothing written.
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &["--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "pointing-elsewhere beta.localhost -> acme (the coordinator says beta)",
        "extra              old.localhost -> gone (no tenant claims it)",
        "missing            www.beta.localhost -> beta",
        "3 difference(s); --dry-run: nothing changed",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
    assert_eq!(api.items(STORE).len(), 3);
    assert!(!api.calls().iter().any(|c| c.starts_with("PATCH")), "{:?}", api.calls());

    // The repair: exit 1 (it changed something), the store is the coordinator's map.
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &["--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["in_sync"].as_bool(), report["repaired"].as_bool()), (Some(false), Some(true)));
    let kinds: Vec<&str> = report["drift"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pointing_elsewhere", "extra", "missing"]);
    let expected = [("acme.localhost", "acme"), ("beta.localhost", "beta"), ("www.beta.localhost", "beta")];
    let expected: std::collections::BTreeMap<String, String> =
        expected.iter().map(|(h, t)| ((*h).to_owned(), (*t).to_owned())).collect();
    assert_eq!(api.items(STORE), expected);

    // Every PoP routes by the repaired map at once, still the same processes.
    for pop in &pops {
        assert_eq!(route(pop, "beta.localhost").await, (200, "beta".into()));
        assert_eq!(route(pop, "www.beta.localhost").await, (200, "beta".into()));
        assert_eq!(route(pop, "old.localhost").await.0, 404);
    }
    assert_eq!(pops.iter().map(Viceroy::pid).collect::<Vec<_>>(), pids);

    // In sync: exit 0.
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 host(s), in sync"), "{}", text(&out));

    // A tenant registered while the PoPs run is served once the map is synced.
    register(&coordinator, "gamma", &["gamma.localhost"]).await.unwrap();
    assert_eq!(route(&pops[1], "gamma.localhost").await.0, 404);
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for pop in &pops {
        assert_eq!(route(pop, "gamma.localhost").await, (200, "gamma".into()));
    }

    // A hand edit (a host deleted in the web interface) is found and undone.
    api.edit_by_hand(STORE, "acme.localhost", None);
    assert_eq!(route(&pops[0], "acme.localhost").await.0, 404);
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing            acme.localhost -> acme"));
    assert_eq!(route(&pops[0], "acme.localhost").await, (200, "acme".into()));
}

#[tokio::test]
async fn sync_hosts_refuses_a_map_over_the_limits_and_reports_api_failures() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_coordinator(dir.path()).await;
    register(&coordinator, "acme", &["a.localhost", "b.localhost", "c.localhost"]).await.unwrap();
    let api = FastlyApi::start(500).unwrap();
    api.add_store(STORE, &dir.path().join("hosts.json"), &[("z.localhost", "zed")]).unwrap();

    // Three hosts in a store limited to two: exit 2, the limit named, nothing written.
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &["--max-entries", "2"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 hosts; a Config Store holds at most 2 entries"), "{stderr}");
    assert!(api.calls().is_empty(), "nothing is read or written: {:?}", api.calls());
    assert_eq!(api.items(STORE).len(), 1);

    // A store whose account allows fewer entries than --max-entries said: the API refuses
    // the whole update (exit 5, its reason shown), nothing is dropped to fit.
    let small = FastlyApi::start(2).unwrap();
    small.add_store(STORE, &dir.path().join("small.json"), &[]).unwrap();
    let out = sync(&coordinator, &small, fastly_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the limit is 2"), "{}", text(&out));
    assert!(small.items(STORE).is_empty());

    // Writes accepted but not applied (someone else rewrites the store): the read-back
    // catches it, exit 5, naming the hosts.
    api.lose_writes(true);
    let out = sync(&coordinator, &api, fastly_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("still differs after the repair for a.localhost, b.localhost, c.localhost, z.localhost"),
        "{stderr}"
    );
    api.lose_writes(false);

    // The Fastly API refuses the token: exit 5, the store untouched.
    let out = sync(&coordinator, &api, "not-the-token", &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"), "{}", text(&out));

    // An unknown store: exit 5, named.
    let out = sync_store(&coordinator, &api, fastly_api::TOKEN, "nosuchstore", &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchstore"), "{}", text(&out));

    // Invalid input: no Fastly token, or a store id that is not one.
    let out = sync(&coordinator, &api, "", &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sync_store(&coordinator, &api, fastly_api::TOKEN, "a/b", &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store-id: \"a/b\""), "{}", text(&out));
}

/// The environment of a coordinator that owns the host map in `api`'s store `STORE`.
fn owning_env(api: &FastlyApi, max_entries: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FASTLY_API_TOKEN", fastly_api::TOKEN.to_owned()),
        ("FASTLY_API_URL", api.url()),
        ("EDGEGEN_HOSTS_STORE_ID", STORE.to_owned()),
        ("EDGEGEN_HOSTS_MAX_ENTRIES", max_entries.to_owned()),
    ]
}

async fn start_owning(data: &Path, addr: std::net::SocketAddr, env: &[(&'static str, String)]) -> Coordinator {
    let (data, env) = (data.to_owned(), env.to_vec());
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Coordinator::start_on(&data, addr, &env)
    })
    .await
    .unwrap()
    .unwrap()
}

/// A coordinator process that owns the host map in `api`'s store: what it needs to be
/// started again on the same data and address.
struct Owning<'a> {
    api: &'a FastlyApi,
    data: &'a Path,
    addr: std::net::SocketAddr,
    env: &'a [(&'static str, String)],
}

impl Owning<'_> {
    /// With the Config Store API losing writes, runs `change` (which commits a tenant
    /// change), waits until its sync has failed once, SIGKILLs `coordinator` and starts it
    /// again: the change is committed but not delivered. The API keeps losing writes until
    /// [`Owning::lose_nothing`].
    async fn kill_9_between_commit_and_delivery(
        &self,
        coordinator: Coordinator,
        change: impl AsyncFnOnce(&Coordinator),
    ) -> Coordinator {
        self.api.lose_writes(true);
        let retrying = host_syncs(&coordinator, "retrying").await;
        change(&coordinator).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while host_syncs(&coordinator, "retrying").await == retrying {
            assert!(std::time::Instant::now() < deadline, "no failed attempt recorded");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(coordinator); // SIGKILL to the PID we started
        start_owning(self.data, self.addr, self.env).await
    }

    /// The API applies writes again.
    fn lose_nothing(&self) {
        self.api.lose_writes(false);
    }
}

/// Polls until `host` routes to `tenant` through `edge` (the outbox delivers asynchronously).
async fn await_route(edge: &Viceroy, host: &str, tenant: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let got = route(edge, host).await;
        if got == (200, tenant.to_owned()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{host} still routes to {got:?}, not {tenant}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `edgegen_host_syncs_total` sample with `outcome`.
async fn host_syncs(c: &Coordinator, outcome: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", c.addr())).await.unwrap().text().await.unwrap();
    let prefix = format!("edgegen_host_syncs_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

#[tokio::test]
async fn a_registration_reaches_the_pops_through_the_outbox_even_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let api = FastlyApi::start(500).unwrap();
    let file = dir.path().join("edgegen_hosts.json");
    api.add_store(STORE, &file, &[]).unwrap();
    let env = owning_env(&api, "3");
    let data = dir.path().join("coordinator");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], edgegen_tests::process::free_port().unwrap()).into();
    let coordinator = start_owning(&data, addr, &env).await;

    let origin = SampleOrigin::start(Stamp { schema_version: "1.8.2".into(), contract_hash: contract() }).unwrap();
    let mut config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), Vec::new(), "local-1");
    config.hosts_file = Some(file.clone());
    let pop = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
    let pid = pop.pid();
    assert_eq!(route(&pop, "acme.localhost").await.0, 404);

    // Registered while the PoP runs: served without `sync hosts` and without a restart.
    register(&coordinator, "acme", &["acme.localhost", "www.acme.localhost"]).await.unwrap();
    await_route(&pop, "acme.localhost", "acme").await;
    await_route(&pop, "www.acme.localhost", "acme").await;
    assert_eq!(host_syncs(&coordinator, "synced").await, 1);

    // Past the store's entry limit (3): refused with the limit named, nothing registered.
    let err = register(&coordinator, "big", &["b1.localhost", "b2.localhost"]).await.unwrap_err().to_string();
    assert!(err.contains("HTTP 422") && err.contains("4 entries; it holds at most 3"), "{err}");
    assert!(coordinator.admin(Method::GET, "/v1/tenants/big", None).await.is_err());

    // The Config Store API accepts writes but loses them: the registration commits, the
    // sync is attempted and scheduled again; SIGKILL before it can succeed.
    let owning = Owning { api: &api, data: &data, addr, env: &env };
    let coordinator = owning
        .kill_9_between_commit_and_delivery(coordinator, async |c| {
            register(c, "beta", &["beta.localhost"]).await.unwrap();
        })
        .await;
    assert_eq!(route(&pop, "beta.localhost").await.0, 404, "not delivered before the kill");

    // The restarted process finds the effect still due and delivers it.
    owning.lose_nothing();
    await_route(&pop, "beta.localhost", "beta").await;
    assert_eq!(route(&pop, "acme.localhost").await, (200, "acme".into()));
    assert!(host_syncs(&coordinator, "synced").await >= 1);
    let expected: std::collections::BTreeMap<String, String> =
        [("acme.localhost", "acme"), ("beta.localhost", "beta"), ("www.acme.localhost", "acme")]
            .iter()
            .map(|(h, t)| ((*h).to_owned(), (*t).to_owned()))
            .collect();
    assert_eq!(api.items(STORE), expected);
    assert_eq!(pop.pid(), pid, "the same PoP process throughout");
}

/// Polls until `host` no longer routes through `edge` (404: no tenant for it).
async fn await_no_route(edge: &Viceroy, host: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let got = route(edge, host).await;
        if got.0 == 404 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{host} still routes to {got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs `edgegen tenant ARGS` against `coordinator`.
async fn tenant_cli(coordinator: &Coordinator, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(workspace::coordinator_bin().unwrap());
    cmd.arg("tenant")
        .args(args)
        .env("EDGEGEN_URL", format!("http://{}", coordinator.addr()))
        .env("EDGEGEN_ADMIN_TOKEN", ADMIN_TOKEN);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn host_changes_and_removals_reach_the_pops_through_the_outbox_even_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let api = FastlyApi::start(500).unwrap();
    let file = dir.path().join("edgegen_hosts.json");
    api.add_store(STORE, &file, &[]).unwrap();
    let env = owning_env(&api, "10");
    let data = dir.path().join("coordinator");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], edgegen_tests::process::free_port().unwrap()).into();
    let coordinator = start_owning(&data, addr, &env).await;
    register(&coordinator, "acme", &["acme.localhost", "shop.localhost"]).await.unwrap();
    register(&coordinator, "beta", &["beta.localhost"]).await.unwrap();

    let origin = SampleOrigin::start(Stamp { schema_version: "1.8.2".into(), contract_hash: contract() }).unwrap();
    let mut config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), Vec::new(), "local-1");
    config.hosts_file = Some(file.clone());
    let pop = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
    let pid = pop.pid();
    await_route(&pop, "shop.localhost", "acme").await;

    // A host moved from acme's set to beta's, with the CLI: it routes to beta, same PoP.
    let out = tenant_cli(&coordinator, &["hosts", "acme", "--host", "acme.localhost"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tenant acme now routes acme.localhost"), "{}", text(&out));
    await_no_route(&pop, "shop.localhost").await;
    let out = tenant_cli(&coordinator, &["hosts", "beta", "--host", "beta.localhost,shop.localhost"]).await;
    assert!(out.status.success(), "{}", text(&out));
    await_route(&pop, "shop.localhost", "beta").await;

    // A host another tenant holds: refused naming both, the PoP routes as before.
    let out = tenant_cli(&coordinator, &["hosts", "beta", "--host", "beta.localhost,acme.localhost"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("hosts[1]: acme.localhost already belongs to tenant acme (conflict, HTTP 409)"),
        "{}",
        text(&out)
    );
    assert_eq!(route(&pop, "acme.localhost").await, (200, "acme".into()));

    // A change committed, then SIGKILL before its delivery: the restarted process delivers it.
    let owning = Owning { api: &api, data: &data, addr, env: &env };
    let coordinator = owning
        .kill_9_between_commit_and_delivery(coordinator, async |c| {
            let hosts = json!({"hosts": ["beta.localhost", "shop.localhost", "www.beta.localhost"]});
            c.admin(Method::PUT, "/v1/tenants/beta/hosts", Some(hosts)).await.unwrap();
        })
        .await;
    assert_eq!(route(&pop, "www.beta.localhost").await.0, 404, "not delivered before the kill");
    owning.lose_nothing();
    await_route(&pop, "www.beta.localhost", "beta").await;

    // Removed: its host stops routing at the PoP; its manifest is gone; history stays.
    let out = tenant_cli(&coordinator, &["remove", "acme"]).await;
    assert!(out.status.success(), "{}", text(&out));
    await_no_route(&pop, "acme.localhost").await;
    assert!(coordinator.manifest("acme").await.unwrap_err().to_string().contains("404"));
    let out = tenant_cli(&coordinator, &["remove", "acme"]).await;
    assert!(out.status.success(), "a repeat succeeds: {}", text(&out));
    let expected: std::collections::BTreeMap<String, String> =
        [("beta.localhost", "beta"), ("shop.localhost", "beta"), ("www.beta.localhost", "beta")]
            .iter()
            .map(|(h, t)| ((*h).to_owned(), (*t).to_owned()))
            .collect();
    assert_eq!(api.items(STORE), expected);
    assert_eq!(pop.pid(), pid, "the same PoP process throughout");
}
