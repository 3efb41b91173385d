//! Load harness for the coordinator (a program, not a timed test): starts the real
//! `edgegen serve` binary on 127.0.0.1, first on a fresh SQLite data dir, then as three
//! replicas on a fresh PostgreSQL database (a throwaway cluster), and measures both in one
//! run, from a client in this process (sharing the machine's cores with the servers):
//!
//! - commit latency p50/p99 of releases of 1, 100 and 1,000 tenants (sequential, durable);
//! - manifest GET throughput with 64 concurrent keep-alive clients, full (200, signed body)
//!   and conditional (`If-None-Match` on the current generation: 304 with a signed lease);
//! - ack ingest throughput with 64, then 256 concurrent clients;
//! - automatic rollback: an edge report against a 100-tenant release triggers its rollback
//!   (policy: 1 report); time from the report's arrival to the rollback's durable commit.
//!
//! For the manifest phases it also reads the server's own CPU time (`/proc/PID/stat`,
//! user + system) and divides it by the requests answered: the coordinator's cost of one
//! 200 and of one 304 + lease, whatever the client on the same cores costs. For the ack
//! phases it does the same over every server process (all replicas, and on PostgreSQL the
//! postmaster with its backends) and over itself (the client): what one ack costs each side.
//!
//! PostgreSQL runs with `fsync` and `synchronous_commit` on, as in production (SQLite runs
//! `synchronous = FULL`); `EDGEGEN_LOAD_PG_FSYNC=off` runs it without (the tests' setting).
//!
//! It ends with the two stores side by side and their ratios.
//!
//! Run: `cargo bench -p edgegen-coordinator --bench load` (figures go to BENCHMARKS.md).
//! `EDGEGEN_LOAD_SECS` sets the duration of each throughput phase (default 5).

use edgegen_tests::coordinator::get_json;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgegen_tests::process::{ChildGuard, free_port};
use serde_json::json;

const ADMIN: &str = "bench-admin-token-0123456789";
const EDGE: &str = "bench-edge-token-0123456789";
const TENANTS: usize = 1000;
const CONCURRENCY: usize = 64;
/// Concurrent clients of the second ack phase: many PoPs, each acknowledging the tenants of
/// a release concurrently (the 64 PoP names stay: each sends several acks at once).
const ACK_CLIENTS: usize = 256;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Starts one `edgegen serve` on `store` (`None`: SQLite in `dir`).
fn serve(dir: &std::path::Path, store: Option<&str>, n: usize) -> (ChildGuard, String) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgegen"));
    cmd.args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir.join(format!("data-{n}")))
        .env("EDGEGEN_ADMIN_TOKEN", ADMIN)
        .env("EDGEGEN_EDGE_TOKEN", EDGE)
        .env("EDGEGEN_MANIFEST_KEY", "bench-manifest-key-0123456789abcdef0123")
        .env("EDGEGEN_AUTO_ROLLBACK_REPORTS", "1")
        // One bench PoP reports: measure the rollback path, not the distinct-PoP policy.
        .env("EDGEGEN_AUTO_ROLLBACK_MIN_POPS", "1")
        .env("RUST_LOG", "warn");
    if let Some(url) = store {
        cmd.args(["--store", url]);
    }
    let mut server = ChildGuard::spawn("edgegen serve", cmd, &dir.join(format!("server-{n}.log"))).unwrap();
    server.wait_for_port(addr, Duration::from_secs(30)).unwrap();
    (server, format!("http://{addr}"))
}

/// The figures of one store.
struct Figures {
    commit_p99_ms: Vec<(usize, f64, f64)>,
    manifests_per_s: f64,
    revalidations_per_s: f64,
    /// Server CPU per request, µs: the 200 path and the 304 + lease path.
    manifest_cpu_us: f64,
    revalidation_cpu_us: f64,
    /// With 64 and with 256 concurrent clients.
    acks_per_s: Vec<f64>,
    /// CPU per ack in those phases, µs: the replicas, the database, the client.
    ack_cpu_us: Vec<[f64; 3]>,
    rollback_p50_ms: f64,
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("EDGEGEN_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    println!("## SQLite (one process)\n");
    let (sqlite_server, base) = serve(dir.path(), None, 0);
    let sqlite = suite(secs, &[base], &Servers { replicas: vec![sqlite_server.pid()], database: None }).await;
    drop(sqlite_server);

    println!(
        "\n## PostgreSQL (three replicas on one database; manifests measured on one replica, acks spread over all three)\n"
    );
    let durable = std::env::var("EDGEGEN_LOAD_PG_FSYNC").map_or(true, |v| v != "off");
    let cluster = if durable {
        edgegen_tests::postgres::TempCluster::start_durable()
    } else {
        edgegen_tests::postgres::TempCluster::start()
    }
    .expect("PostgreSQL (cargo xtask bootstrap)");
    println!("PostgreSQL fsync: {}\n", if durable { "on (synchronous_commit on)" } else { "off" });
    let admin = cluster.url("postgres");
    std::thread::spawn(move || {
        postgres::Client::connect(&admin, postgres::NoTls).unwrap().batch_execute("CREATE DATABASE bench").unwrap();
    })
    .join()
    .unwrap();
    let url = cluster.url("bench");
    let replicas: Vec<(ChildGuard, String)> = (1..=3).map(|n| serve(dir.path(), Some(&url), n)).collect();
    let bases: Vec<String> = replicas.iter().map(|(_, b)| b.clone()).collect();
    let servers = Servers { replicas: replicas.iter().map(|(r, _)| r.pid()).collect(), database: Some(cluster.pid()) };
    let pg = suite(secs, &bases, &servers).await;
    drop(replicas);

    println!("\n## Side by side (one run; ratio = SQLite / PostgreSQL)\n");
    println!("| figure | SQLite | PostgreSQL | ratio |\n|---|---|---|---|");
    for ((size, s50, s99), (_, p50, p99)) in sqlite.commit_p99_ms.iter().zip(&pg.commit_p99_ms) {
        println!("| commit p50, {size} tenant(s) | {s50:.2} ms | {p50:.2} ms | {:.2} |", s50 / p50);
        println!("| commit p99, {size} tenant(s) | {s99:.2} ms | {p99:.2} ms | {:.2} |", s99 / p99);
    }
    println!(
        "| manifest GET/s, one replica | {:.0} | {:.0} | {:.2} |",
        sqlite.manifests_per_s,
        pg.manifests_per_s,
        sqlite.manifests_per_s / pg.manifests_per_s
    );
    println!(
        "| manifest 304 + lease/s, one replica | {:.0} | {:.0} | {:.2} |",
        sqlite.revalidations_per_s,
        pg.revalidations_per_s,
        sqlite.revalidations_per_s / pg.revalidations_per_s
    );
    for (what, s, p) in [
        ("200", sqlite.manifest_cpu_us, pg.manifest_cpu_us),
        ("304 + lease", sqlite.revalidation_cpu_us, pg.revalidation_cpu_us),
    ] {
        println!("| coordinator CPU per manifest {what}, one replica | {s:.1} µs | {p:.1} µs | {:.2} |", s / p);
    }
    println!(
        "| 304 + lease refreshes per core-second / 200s per core-second (server CPU) | {:.2} | {:.2} | |",
        sqlite.manifest_cpu_us / sqlite.revalidation_cpu_us,
        pg.manifest_cpu_us / pg.revalidation_cpu_us
    );
    for (clients, (s, p)) in [CONCURRENCY, ACK_CLIENTS].iter().zip(sqlite.acks_per_s.iter().zip(&pg.acks_per_s)) {
        println!(
            "| ack POST/s, {clients} clients (SQLite: one process; PostgreSQL: aggregate of three) | {s:.0} | {p:.0} | {:.2} |",
            s / p
        );
    }
    for (clients, (s, p)) in [CONCURRENCY, ACK_CLIENTS].iter().zip(sqlite.ack_cpu_us.iter().zip(&pg.ack_cpu_us)) {
        println!(
            "| server CPU per ack, {clients} clients: replicas + database (acks per server core-second) | {:.1} µs ({:.0}) | {:.1} + {:.1} µs ({:.0}) | {:.2} |",
            s[0],
            1e6 / s[0],
            p[0],
            p[1],
            1e6 / (p[0] + p[1]),
            s[0] / (p[0] + p[1])
        );
        println!("| client CPU per ack, {clients} clients | {:.1} µs | {:.1} µs | |", s[2], p[2]);
    }
    println!(
        "| report -> automatic rollback committed, p50 | {:.0} ms | {:.0} ms | {:.2} |",
        sqlite.rollback_p50_ms,
        pg.rollback_p50_ms,
        sqlite.rollback_p50_ms / pg.rollback_p50_ms.max(1.0)
    );
}

/// The processes serving the bench: the coordinator replicas and, on PostgreSQL, the
/// postmaster (its backends are its children).
struct Servers {
    replicas: Vec<u32>,
    database: Option<u32>,
}

impl Servers {
    /// CPU seconds the server processes have used so far: the replicas, and the database
    /// (the postmaster with the children it reaped, and its live children: backends, WAL
    /// writer, checkpointer).
    fn cpu_seconds(&self) -> [f64; 2] {
        let replicas = self.replicas.iter().map(|&pid| cpu_seconds(pid)).sum();
        let mut total = 0.0;
        if let Some(postmaster) = self.database {
            total += stat_seconds(postmaster, true).unwrap_or(0.0);
            for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if stat_fields(pid).is_some_and(|f| f[1] == postmaster.to_string()) {
                    total += stat_seconds(pid, false).unwrap_or(0.0); // a child may exit meanwhile
                }
            }
        }
        [replicas, total]
    }
}

/// The fields of `/proc/PID/stat` after the parenthesised command name (state first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// CPU seconds (user + system) process `pid` has used so far; with `reaped`, also its
/// children that exited and were waited for.
fn stat_seconds(pid: u32, reaped: bool) -> Option<f64> {
    let fields = stat_fields(pid)?;
    // State is field 3 (index 0 here): utime is field 14, stime 15, cutime 16, cstime 17.
    let used = if reaped { 11..15 } else { 11..13 };
    let ticks: f64 = fields[used].iter().map(|f| f.parse::<f64>().unwrap_or(0.0)).sum();
    Some(ticks / ticks_per_second())
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(pid, false).expect("the server's /proc stat")
}

fn ticks_per_second() -> f64 {
    static TICKS_PER_S: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS_PER_S.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().expect("getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a tick rate")
    })
}

/// The whole workload against `bases` (the first, process `servers.replicas[0]`, takes
/// commits and manifests; acks go to all of them).
async fn suite(secs: u64, bases: &[String], servers: &Servers) -> Figures {
    let pid = servers.replicas[0];
    let base = bases[0].clone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(ACK_CLIENTS).build().unwrap();

    let t = Instant::now();
    for i in 0..TENANTS {
        let body = json!({"id": format!("t{i}"), "hosts": [format!("t{i}.bench")], "schema_version": "1.0.0",
            "contract_hash": format!("sha256:{}", "11".repeat(32))});
        let r = http.post(format!("{base}/v1/tenants")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    println!("setup: registered {TENANTS} tenants in {:.1} s", t.elapsed().as_secs_f64());
    println!("\n| release size | releases | commit p50 | commit p99 | max |\n|---|---|---|---|---|");
    let mut minor = 0;
    let mut commits = Vec::new();
    for (size, runs) in [(1usize, 200usize), (100, 50), (1000, 30)] {
        let mut latencies = Vec::with_capacity(runs);
        for _ in 0..runs {
            minor += 1;
            let tenants: Vec<String> = (0..size).map(|i| format!("t{i}")).collect();
            let body = json!({"tenants": tenants, "schema_version": format!("1.{minor}.0"),
                "contract_hash": format!("sha256:{}", "22".repeat(32))});
            let t = Instant::now();
            let r = http.post(format!("{base}/v1/releases")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
            let status = r.status();
            let _ = r.bytes().await.unwrap();
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 201);
        }
        latencies.sort_by(f64::total_cmp);
        commits.push((size, percentile(&latencies, 50.0), percentile(&latencies, 99.0)));
        println!(
            "| {size} tenant(s) | {runs} | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies[latencies.len() - 1]
        );
    }

    let b = base.clone();
    let cpu = cpu_seconds(pid);
    let (manifests, answered) = throughput(&http, secs, CONCURRENCY, move |http, i| {
        let base = &b;
        let url = format!("{base}/v1/edge/manifests/t{}", i % TENANTS);
        let pop = format!("pop-{}", i % CONCURRENCY);
        let http = http.clone();
        async move {
            // Named like a PoP: the coordinator records the fetch that vouches for its acks.
            let r = http.get(url).bearer_auth(EDGE).header("edgegen-pop", pop).send().await.unwrap();
            let ok = r.status() == 200;
            let _ = r.bytes().await;
            ok
        }
    })
    .await;
    let manifest_cpu_us = (cpu_seconds(pid) - cpu) * 1e6 / answered as f64;
    // Conditional refresh: every tenant's current ETag (outside the measurement), then
    // requests holding it, answered 304 with a signed lease.
    let mut etags = Vec::with_capacity(TENANTS);
    let (mut body_bytes, mut lease_bytes) = (0, 0);
    for i in 0..TENANTS {
        let r = http.get(format!("{base}/v1/edge/manifests/t{i}")).bearer_auth(EDGE).send().await.unwrap();
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
        body_bytes = r.bytes().await.unwrap().len();
    }
    let etags = Arc::new(etags);
    let b = base.clone();
    let cpu = cpu_seconds(pid);
    let (revalidations, answered) = throughput(&http, secs, CONCURRENCY, move |http, i| {
        let url = format!("{b}/v1/edge/manifests/t{}", i % TENANTS);
        let etag = etags[i % TENANTS].clone();
        let pop = format!("pop-{}", i % CONCURRENCY);
        let http = http.clone();
        async move {
            let r = http
                .get(url)
                .bearer_auth(EDGE)
                .header("edgegen-pop", pop)
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap();
            let ok = r.status() == 304 && r.headers().contains_key("edgegen-lease");
            let _ = r.bytes().await;
            ok
        }
    })
    .await;
    let revalidation_cpu_us = (cpu_seconds(pid) - cpu) * 1e6 / answered as f64;
    let r = http.get(format!("{base}/v1/edge/manifests/t0")).bearer_auth(EDGE).send().await.unwrap();
    let etag = r.headers()["etag"].clone();
    let r = http.get(format!("{base}/v1/edge/manifests/t0")).bearer_auth(EDGE).header("if-none-match", etag);
    if let Some(lease) = r.send().await.unwrap().headers().get("edgegen-lease") {
        lease_bytes = lease.len();
    }
    // An ack is accepted only from a PoP served that manifest: every (PoP, tenant) pair the
    // ack mix uses fetches its manifest once first (outside the measurement).
    let pairs = CONCURRENCY * TENANTS / gcd(CONCURRENCY, TENANTS);
    for j in 0..pairs {
        let r = http
            .get(format!("{base}/v1/edge/manifests/t{}", j % TENANTS))
            .bearer_auth(EDGE)
            .header("edgegen-pop", format!("pop-{}", j % CONCURRENCY))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Two phases, 64 then 256 concurrent clients; the second continues the first's
    // sequence. The acks come in waves, as a release's do: every (PoP, tenant) pair above
    // acknowledges generation 1, then every pair generation 2, and so on to 30 (every
    // tenant is at generation 31 or later here). So each ack is a new row, exactly one
    // generation past its pair's previous ack (its completion check covers at most one
    // release), until the sequence wraps after `pairs * 30` = 240,000 acks; past that,
    // acks repeat (stored once, no check).
    let sent = Arc::new(AtomicU64::new(0));
    let mut acks = Vec::new();
    let mut ack_cpu_us = Vec::new();
    for clients in [CONCURRENCY, ACK_CLIENTS] {
        let (all, sent) = (bases.to_vec(), Arc::clone(&sent));
        let (server_cpu, client_cpu) = (servers.cpu_seconds(), cpu_seconds(std::process::id()));
        let (per_s, answered) = throughput(&http, secs, clients, move |http, _| {
            let i = sent.fetch_add(1, Ordering::Relaxed) as usize;
            let base = &all[i % all.len()];
            let pair = i % pairs;
            let body = json!({"pop": format!("pop-{}", pair % CONCURRENCY), "tenant": format!("t{}", pair % TENANTS),
                    "generation": 1 + (i / pairs) % 30, "observed_at": 1});
            let (http, url) = (http.clone(), format!("{base}/v1/edge/acks"));
            async move { http.post(url).bearer_auth(EDGE).json(&body).send().await.unwrap().status() == 204 }
        })
        .await;
        let per_ack = |seconds: f64| seconds * 1e6 / answered as f64;
        let [replicas, database] = servers.cpu_seconds();
        ack_cpu_us.push([
            per_ack(replicas - server_cpu[0]),
            per_ack(database - server_cpu[1]),
            per_ack(cpu_seconds(std::process::id()) - client_cpu),
        ]);
        acks.push(per_s);
    }
    println!("\n| workload ({CONCURRENCY} concurrent clients, {secs} s) | requests/s |\n|---|---|");
    println!(
        "| manifest GET (signed, 200; body {body_bytes} bytes) | {manifests:.0} (server CPU {manifest_cpu_us:.1} µs each) |"
    );
    println!(
        "| manifest GET with If-None-Match (304 + lease; lease {lease_bytes} bytes) | {revalidations:.0} ({:.2}x the 200 path; server CPU {revalidation_cpu_us:.1} µs each) |",
        revalidations / manifests
    );
    for (i, clients) in [CONCURRENCY, ACK_CLIENTS].iter().enumerate() {
        let [replicas, database, client] = ack_cpu_us[i];
        println!(
            "| ack POST (durable; over {} replica(s)), {clients} clients | {:.0} (CPU per ack: replicas {replicas:.1} µs, database {database:.1} µs, client {client:.1} µs) |",
            bases.len(),
            acks[i]
        );
    }

    let mut trigger_to_commit = Vec::new();
    let mut round_trip = Vec::new();
    for i in 0..20 {
        let tenants: Vec<String> = (0..100).map(|t| format!("t{t}")).collect();
        let body = json!({"tenants": tenants, "schema_version": format!("9.{i}.0"), "contract_hash": format!("sha256:{}", "33".repeat(32))});
        let release: serde_json::Value = http
            .post(format!("{base}/v1/releases"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let generation = release["tenants"][0]["to_generation"].as_u64().unwrap();
        let report = json!({"pop": "bench-pop", "tenant": "t0", "kind": "contract_mismatch", "generation": generation,
            "expected_schema": format!("9.{i}.0"), "expected_contract": format!("sha256:{}", "33".repeat(32)),
            "observed_schema": "1.0.0", "observed_at": 1});
        let t = Instant::now();
        let outcome: serde_json::Value = http
            .post(format!("{base}/v1/edge/reports"))
            .bearer_auth(EDGE)
            .json(&report)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        round_trip.push(t.elapsed().as_secs_f64() * 1000.0);
        let rollback = outcome["auto_rollback"].as_str().expect("the report triggered a rollback");
        let rolled: serde_json::Value = get_json(&http, format!("{base}/v1/releases/{rollback}"), ADMIN).await;
        let trigger = rolled["execution_log"]["summary"]["trigger_to_rollback_commit_ms"].as_f64();
        trigger_to_commit
            .push(trigger.unwrap_or_else(|| panic!("rollback {rollback} without its trigger time: {rolled}")));
    }
    trigger_to_commit.sort_by(f64::total_cmp);
    round_trip.sort_by(f64::total_cmp);
    println!("\n| automatic rollback of a 100-tenant release (20 runs) | p50 | p99 | max |\n|---|---|---|---|");
    println!(
        "| report arrival -> rollback committed (server-measured) | {:.0} ms | {:.0} ms | {:.0} ms |",
        percentile(&trigger_to_commit, 50.0),
        percentile(&trigger_to_commit, 99.0),
        trigger_to_commit[trigger_to_commit.len() - 1]
    );
    println!(
        "| report POST round trip, rollback included (client-measured) | {:.2} ms | {:.2} ms | {:.2} ms |",
        percentile(&round_trip, 50.0),
        percentile(&round_trip, 99.0),
        round_trip[round_trip.len() - 1]
    );
    Figures {
        commit_p99_ms: commits,
        manifests_per_s: manifests,
        revalidations_per_s: revalidations,
        manifest_cpu_us,
        revalidation_cpu_us,
        acks_per_s: acks,
        ack_cpu_us,
        rollback_p50_ms: percentile(&trigger_to_commit, 50.0),
    }
}

/// Runs `clients` loops of `request` for `secs` seconds; returns successful requests per
/// second and how many succeeded.
async fn throughput<F, Fut>(http: &reqwest::Client, secs: u64, clients: usize, request: F) -> (f64, u64)
where
    F: Fn(&reqwest::Client, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, request, done, counter) = (http.clone(), request.clone(), Arc::clone(&done), Arc::clone(&counter));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed) as usize;
                if request(&http, i).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let done = done.load(Ordering::Relaxed);
    (done as f64 / started.elapsed().as_secs_f64(), done)
}
