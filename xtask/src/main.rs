//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `bootstrap`  install what a fresh machine lacks (rustup targets, the pinned Viceroy,
//!   wasm-bindgen-cli at the crate's exact version, Node.js and npm, the pinned Fastly CLI
//!   from npm under `.tools/fastly`, Debian's PostgreSQL server for the shard tests, Debian's
//!   Chromium and chromedriver for the dashboard's browser test, a Python venv with the
//!   pinned Schemathesis); skip what is present.
//! - `build-edge` build the release edge wasm and check its size (≤ 1.5 MiB).
//! - `fastly-install` only the Fastly CLI step of `bootstrap`.
//! - `fastly-build` the build script of `fastly.toml` (`[scripts] build`): `build-edge`, then
//!   copy the wasm to `bin/main.wasm`, where the Fastly CLI expects it.
//! - `fastly-package` Fastly's own CLI, offline: `fastly compute build`, `pack`, `validate`;
//!   prints the package's size.
//! - `fastly-serve-check` `fastly compute serve --viceroy-path` with the pinned Viceroy runs
//!   the package (after `fastly-package`) and the edge answers.
//! - `fastly [ARGS]` run the project's pinned Fastly CLI (its own config under `.tools/`,
//!   Wasm metadata off, only Fastly's API and login reachable: no update check).
//! - `build-js`   build the JavaScript package of `edgegen-shared` into `shared/js/pkg`.
//! - `ci`         the one gate: bootstrap, fmt, clippy (native and both wasm targets), the
//!   wasm builds, the Fastly package, every Rust test (Viceroy and headless Chromium
//!   included), the Node vector test and Schemathesis over the live API.
//! - `schemathesis` fuzz a live `edgegen serve` from its own `/openapi.json` (see [`schemathesis`]).
//! - `demo [--once]` bootstrap, build, run the local stack (see `tests/src/bin/edgegen-demo.rs`).
//!
//! Only std: the xtask must build in seconds on a fresh machine.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Viceroy version the tests and demo run against.
const VICEROY_VERSION: &str = "0.22.0";
/// Largest acceptable release edge wasm.
const EDGE_WASM_LIMIT: u64 = 1536 * 1024;
const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-unknown-unknown"];
/// Schemathesis version the API fuzzing step runs (PyPI).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Fewest requests the Schemathesis step must have sent for CI to pass.
const SCHEMATHESIS_MIN_REQUESTS: u64 = 1000;
/// Node.js major version with a stable built-in test runner.
const MIN_NODE_MAJOR: u32 = 18;
/// The Fastly CLI release (npm package `@fastly/cli`, which ships the platform binaries).
const FASTLY_CLI_VERSION: &str = "16.1.0";
/// Where the Fastly CLI is installed, relative to the workspace root (gitignored).
const FASTLY_CLI_DIR: &str = ".tools/fastly";
/// The package `fastly compute build`/`pack` write (named after `name` in `fastly.toml`).
const FASTLY_PACKAGE: &str = "pkg/edgegen-edge.tar.gz";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bootstrap") => bootstrap(Needs::All),
        Some("build-edge") => build_edge().map(|_| ()),
        Some("fastly-install") => install_fastly_cli(),
        Some("fastly-build") => fastly_build(),
        Some("fastly-package") => fastly_package().map(|_| ()),
        Some("fastly-serve-check") => fastly_serve_check(),
        Some("fastly") => run_fastly(&args[1..].iter().map(String::as_str).collect::<Vec<_>>(), Network::ApiOnly),
        Some("build-js") => build_js(),
        Some("ci") => ci(),
        Some("schemathesis") => schemathesis(),
        Some("demo") => demo(args.iter().any(|a| a == "--once")),
        _ => Err("usage: cargo xtask <bootstrap | build-edge | fastly-install | fastly-build | fastly-package | fastly-serve-check | fastly [ARGS] | \
                  build-js | ci | schemathesis | demo [--once]>"
            .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_owned()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

fn step(title: &str) {
    println!("\n==> {title}");
}

/// Runs a command in the workspace root, inheriting output; fails on a non-zero exit.
fn run(program: &str, args: &[&str]) -> Result {
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{program} {}` failed ({status})", args.join(" "))) }
}

/// The trimmed stdout of a command, or `None` if it cannot run or fails.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(root()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A tool's `--version` output, looked up on PATH and then in cargo's bin directory.
fn tool_version(name: &str) -> Option<(String, String)> {
    let installed = cargo_bin_dir().join(name);
    [name.to_owned(), installed.to_string_lossy().into_owned()]
        .into_iter()
        .find_map(|bin| output(&bin, &["--version"]).map(|v| (bin, v)))
}

#[derive(PartialEq)]
enum Needs {
    /// Everything the tests need.
    All,
    /// What the demo needs (no JavaScript toolchain).
    Demo,
}

fn bootstrap(needs: Needs) -> Result {
    step("bootstrap: toolchain and tools (skipping what is present)");
    let installed = output("rustup", &["target", "list", "--installed"])
        .ok_or("rustup is required (the machine's Rust toolchain is managed by rustup)")?;
    for target in TARGETS {
        if installed.lines().any(|l| l.trim() == target) {
            println!("rustup target {target}: present");
        } else {
            run("rustup", &["target", "add", target])?;
        }
    }

    match tool_version("viceroy") {
        Some((_, v)) if v.split_whitespace().nth(1) == Some(VICEROY_VERSION) => {
            println!("viceroy {VICEROY_VERSION}: present")
        }
        found => {
            println!(
                "viceroy: {} -> installing {VICEROY_VERSION} (compiles wasmtime: ~10 minutes once)",
                found.map_or("missing".into(), |(_, v)| v)
            );
            run(&cargo(), &["install", "viceroy", "--locked", "--version", VICEROY_VERSION])?;
        }
    }
    if needs == Needs::Demo {
        return Ok(());
    }

    let wanted = wasm_bindgen_version()?;
    match tool_version("wasm-bindgen") {
        Some((_, v)) if v.split_whitespace().nth(1) == Some(wanted.as_str()) => {
            println!("wasm-bindgen-cli {wanted}: present")
        }
        found => {
            println!("wasm-bindgen-cli: {} -> installing {wanted}", found.map_or("missing".into(), |(_, v)| v));
            // Prefer the CLI's own lockfile; some of its pinned dependency versions are not
            // served by every registry, so fall back to a fresh resolution of the same version.
            if run(&cargo(), &["install", "wasm-bindgen-cli", "--locked", "--version", &wanted]).is_err() {
                println!("wasm-bindgen-cli {wanted}: --locked install failed; retrying with a fresh resolution");
                run(&cargo(), &["install", "wasm-bindgen-cli", "--version", &wanted])?;
            }
        }
    }

    match output("node", &["--version"]) {
        Some(v) if node_major(&v).is_some_and(|m| m >= MIN_NODE_MAJOR) => {
            println!("node {v}: present")
        }
        found => {
            println!("node: {} -> installing Debian's nodejs", found.as_deref().unwrap_or("missing"));
            run("apt-get", &["update", "-qq"])?;
            run("apt-get", &["install", "-y", "-qq", "nodejs"])?;
            let v = output("node", &["--version"]).ok_or("node still missing after apt-get install nodejs")?;
            if node_major(&v).is_none_or(|m| m < MIN_NODE_MAJOR) {
                return Err(format!("node {v} is too old: the tests need Node.js {MIN_NODE_MAJOR} or newer"));
            }
        }
    }
    // The Node test uses only Node's built-in test runner: the one npm package is the CLI.
    install_fastly_cli()?;

    // PostgreSQL server binaries for the PostgreSQL store's tests, the replica scenario and
    // the shard-verification tests (Debian's package; the
    // tests start their own throwaway cluster, never the system one).
    if postgres_initdb().is_some() {
        println!("postgresql server: present");
    } else {
        println!("postgresql server: missing -> installing Debian's postgresql");
        run("apt-get", &["update", "-qq"])?;
        run("apt-get", &["install", "-y", "-qq", "postgresql"])?;
        if postgres_initdb().is_none() {
            return Err("postgresql installed but no /usr/lib/postgresql/*/bin/initdb found".into());
        }
    }

    // Headless Chromium and its WebDriver for the dashboard's browser test (Debian's packages).
    match (output("chromium", &["--version"]), output("chromedriver", &["--version"])) {
        (Some(c), Some(d)) => println!("{c}, {d}: present"),
        _ => {
            println!("chromium/chromedriver: missing -> installing Debian's chromium and chromium-driver");
            run("apt-get", &["update", "-qq"])?;
            run("apt-get", &["install", "-y", "-qq", "chromium", "chromium-driver"])?;
            output("chromedriver", &["--version"]).ok_or("chromedriver still missing after apt-get install")?;
        }
    }

    // Schemathesis (PyPI) in a venv of its own under target/, so nothing touches the system Python.
    let venv = schemathesis_venv();
    let st = venv.join("bin/schemathesis");
    match output(&st.to_string_lossy(), &["--version"]) {
        Some(v) if v.ends_with(SCHEMATHESIS_VERSION) => println!("{v}: present"),
        found => {
            println!(
                "schemathesis: {} -> installing {SCHEMATHESIS_VERSION} into {}",
                found.as_deref().unwrap_or("missing"),
                venv.display()
            );
            if !venv.join("bin/pip").exists() {
                let python = ["python3", "python"]
                    .into_iter()
                    .find(|p| output(p, &["--version"]).is_some())
                    .ok_or("python3 is required for Schemathesis")?;
                if run(python, &["-m", "venv", &venv.to_string_lossy()]).is_err() {
                    // Debian's python3 ships venv separately.
                    run("apt-get", &["install", "-y", "-qq", "python3-venv"])?;
                    run(python, &["-m", "venv", &venv.to_string_lossy()])?;
                }
            }
            let pip = venv.join("bin/pip");
            run(&pip.to_string_lossy(), &["install", "-q", &format!("schemathesis=={SCHEMATHESIS_VERSION}")])?;
        }
    }

    // HAProxy for the replica scenario: the PoPs reach three coordinators through a real
    // load balancer (Debian's package; the test writes its own config and runs its own
    // process, never the system service).
    if output("haproxy", &["-v"]).is_some() {
        println!("haproxy: present");
    } else {
        println!("haproxy: missing -> installing Debian's haproxy");
        run("apt-get", &["update", "-qq"])?;
        run("apt-get", &["install", "-y", "-qq", "haproxy"])?;
        output("haproxy", &["-v"]).ok_or("haproxy still missing after apt-get install haproxy")?;
    }
    Ok(())
}

/// Whether the Fastly CLI may reach the network.
#[derive(Clone, Copy, PartialEq)]
enum Network {
    /// Fastly's API (and account login) only: every other request — the CLI's own update
    /// check, which has no off switch in 16.1.0 (fastly/cli#1140), and its downloads of
    /// wasm-tools and Viceroy — finds a closed local port. Left alone when the user has an
    /// HTTPS proxy of their own.
    ApiOnly,
    /// Every HTTP(S) request of the CLI (and of cargo under it) fails at once: the CLI's
    /// own update check, which has no off switch, and the wasm-tools download it attempts
    /// for metadata annotations, find a closed local port; cargo runs `--offline`.
    Offline,
}

/// npm's launcher of the project's Fastly CLI.
fn fastly_cli() -> PathBuf {
    root().join(FASTLY_CLI_DIR).join("node_modules/.bin/fastly")
}

/// The project's Fastly CLI, run in the workspace root with its own configuration under
/// `.tools/fastly/config` (never the user's) and Wasm metadata collection off.
fn fastly_command(args: &[&str], network: Network) -> Command {
    let mut command = Command::new(fastly_cli());
    command
        .args(args)
        .current_dir(root())
        .env("XDG_CONFIG_HOME", root().join(FASTLY_CLI_DIR).join("config"))
        .env("FASTLY_WASM_METADATA_DISABLE", "true");
    let own_proxy = ["HTTPS_PROXY", "https_proxy"].iter().any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
    if network == Network::Offline || !own_proxy {
        // Port 9 (discard) on loopback: nothing listens, connections are refused at once.
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"] {
            command.env(var, "http://127.0.0.1:9");
        }
        let direct = match network {
            Network::Offline => "",
            Network::ApiOnly => "api.fastly.com,accounts.fastly.com",
        };
        command.env("NO_PROXY", direct).env("no_proxy", direct);
    }
    if network == Network::Offline {
        command.env("CARGO_NET_OFFLINE", "true");
    }
    command
}

fn run_fastly(args: &[&str], network: Network) -> Result {
    if !fastly_cli().exists() {
        return Err(format!("the Fastly CLI is not installed in {FASTLY_CLI_DIR}: run `cargo xtask bootstrap`"));
    }
    let status = fastly_command(args, network).status().map_err(|e| format!("cannot run the Fastly CLI: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`fastly {}` failed ({status})", args.join(" "))) }
}

/// The installed Fastly CLI's version ("Fastly CLI version v16.1.0 (4d64ad67)" -> "16.1.0").
fn fastly_cli_version() -> Option<String> {
    let out = fastly_command(&["version"], Network::Offline).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .next()?
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v').filter(|v| v.starts_with(|c: char| c.is_ascii_digit())))?;
    Some(version.to_owned())
}

/// Installs `@fastly/cli` at [`FASTLY_CLI_VERSION`] into `.tools/fastly` (project-local, never
/// global) and turns its Wasm metadata collection off in the project's CLI config.
fn install_fastly_cli() -> Result {
    match fastly_cli_version() {
        Some(v) if v == FASTLY_CLI_VERSION => println!("fastly cli {v}: present ({FASTLY_CLI_DIR})"),
        found => {
            println!(
                "fastly cli: {} -> installing @fastly/cli@{FASTLY_CLI_VERSION} from npm into {FASTLY_CLI_DIR}",
                found.as_deref().unwrap_or("missing")
            );
            if output("npm", &["--version"]).is_none() {
                println!("npm: missing -> installing Debian's npm");
                run("apt-get", &["update", "-qq"])?;
                run("apt-get", &["install", "-y", "-qq", "npm"])?;
            }
            let package = format!("@fastly/cli@{FASTLY_CLI_VERSION}");
            run(
                "npm",
                &[
                    "install",
                    "--prefix",
                    FASTLY_CLI_DIR,
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--no-update-notifier",
                    "--ignore-scripts",
                    &package,
                ],
            )?;
            match fastly_cli_version() {
                Some(v) if v == FASTLY_CLI_VERSION => {}
                other => {
                    return Err(format!("installed {package} but {} reports {other:?}", fastly_cli().display()));
                }
            }
        }
    }
    // The CLI's telemetry is the metadata it writes into every Wasm binary it builds.
    let out = fastly_command(&["compute", "metadata", "--disable"], Network::Offline)
        .output()
        .map_err(|e| format!("cannot run the Fastly CLI: {e}"))?;
    if !out.status.success() {
        return Err(format!("`fastly compute metadata --disable` failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    println!("fastly cli: wasm metadata collection disabled (config in {FASTLY_CLI_DIR}/config)");
    Ok(())
}

fn schemathesis_venv() -> PathBuf {
    target_dir().join("schemathesis-venv")
}

/// Schemathesis over a live `edgegen serve`: every operation of `/openapi.json`, all four
/// phases (examples, coverage, fuzzing, stateful over the document's tenant↔release links).
/// Fails on any 5xx, any answer violating its schema, any undocumented status code or content
/// type — and when fewer than [`SCHEMATHESIS_MIN_REQUESTS`] requests reached the server
/// (counted by the server itself, from `/metrics`).
fn schemathesis() -> Result {
    step("schemathesis: fuzz a live `edgegen serve` from its /openapi.json");
    run(&cargo(), &["build", "-p", "edgegen-coordinator", "--bin", "edgegen"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let data = target_dir().join(format!("schemathesis-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let env = [
        ("EDGEGEN_ADMIN_TOKEN", "schemathesis-admin-token-0123456789"),
        ("EDGEGEN_EDGE_TOKEN", "schemathesis-edge-token-0123456789"),
        ("EDGEGEN_MANIFEST_KEY", "schemathesis-manifest-key-0123456789abcdef"),
        ("EDGEGEN_PROBE_KEY", "schemathesis-probe-key-0123456789abcdef"),
    ];
    let listen = format!("127.0.0.1:{port}");
    let server = Command::new(target_dir().join("debug/edgegen"))
        .args(["serve", "--listen", &listen, "--data-dir", &data.to_string_lossy()])
        .envs(env)
        .env("RUST_LOG", "warn")
        .current_dir(root())
        .spawn()
        .map_err(|e| format!("cannot start edgegen serve: {e}"))?;
    let mut server = KillOnDrop(server);
    let outcome = (|| {
        wait_healthy(&listen, &mut server.0)?;
        let before = http_total(&listen)?;
        let st = schemathesis_venv().join("bin/schemathesis");
        if !st.exists() {
            return Err(format!("{} is missing: run `cargo xtask bootstrap`", st.display()));
        }
        let status = Command::new(&st)
            .args(["--config-file", "tests/schemathesis/schemathesis.toml", "run"])
            .arg(format!("http://{listen}/openapi.json"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "80",
                "--generation-database",
                "none",
                "--no-color",
            ])
            .envs(env)
            .current_dir(root())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", st.display()))?;
        let (total, server_errors) = http_total(&listen)?;
        let sent = total - before.0;
        println!("schemathesis: {sent} requests reached the server, {} answered 5xx", server_errors - before.1);
        if !status.success() {
            return Err(format!("schemathesis found failures ({status})"));
        }
        if server_errors > before.1 {
            return Err("the server answered 5xx".into());
        }
        if sent < SCHEMATHESIS_MIN_REQUESTS {
            return Err(format!("schemathesis sent {sent} requests, fewer than {SCHEMATHESIS_MIN_REQUESTS}"));
        }
        Ok(())
    })();
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    outcome
}

/// Kills and reaps the child it holds when dropped (a failed step must not leave a server).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET over a plain socket (the xtask has no dependencies); the body.
fn http_get(addr: &str, path: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("GET {path}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("GET {path}: no HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(body.to_owned())
}

fn wait_healthy(addr: &str, server: &mut std::process::Child) -> Result {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if http_get(addr, "/healthz").is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("edgegen serve exited ({status})"));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("edgegen serve did not answer /healthz on {addr} within 30 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `(all responses, 5xx responses)` the server has counted (`edgegen_http_responses_total`).
fn http_total(addr: &str) -> Result<(u64, u64)> {
    let metrics = http_get(addr, "/metrics")?;
    let mut totals = (0, 0);
    for line in metrics.lines().filter(|l| l.starts_with("edgegen_http_responses_total{")) {
        let status = line.split('"').nth(1).unwrap_or_default();
        let n: u64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        totals.0 += n;
        if status.starts_with('5') {
            totals.1 += n;
        }
    }
    Ok(totals)
}

/// An `initdb` of Debian's PostgreSQL packages, if installed.
fn postgres_initdb() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/initdb"))
        .find(|p| p.exists())
}

fn node_major(version: &str) -> Option<u32> {
    version.trim_start_matches('v').split('.').next()?.parse().ok()
}

/// The `wasm-bindgen` version in Cargo.lock: wasm-bindgen-cli must match it exactly.
fn wasm_bindgen_version() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            let version = lines.next().and_then(|l| l.strip_prefix("version = \"")).and_then(|v| v.strip_suffix('"'));
            return version.map(str::to_owned).ok_or_else(|| "Cargo.lock: wasm-bindgen entry without a version".into());
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn edge_wasm() -> PathBuf {
    target_dir().join("wasm32-wasip1/release/edgegen-edge.wasm")
}

fn build_edge() -> Result<u64> {
    step("build the release edge wasm (wasm32-wasip1)");
    run(&cargo(), &["build", "-p", "edgegen-edge", "--release", "--target", "wasm32-wasip1"])?;
    let wasm = edge_wasm();
    let size = std::fs::metadata(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?.len();
    println!("edge wasm: {} bytes ({:.2} MiB; limit 1.5 MiB)", size, size as f64 / (1024.0 * 1024.0));
    if size > EDGE_WASM_LIMIT {
        return Err(format!("the edge wasm is {size} bytes, over the {EDGE_WASM_LIMIT}-byte limit"));
    }
    Ok(size)
}

/// `[scripts] build` of `fastly.toml`: the size-gated release wasm, copied to `bin/main.wasm`.
fn fastly_build() -> Result {
    build_edge()?;
    let bin = root().join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    let main = bin.join("main.wasm");
    std::fs::copy(edge_wasm(), &main).map_err(|e| format!("copying the edge wasm to {}: {e}", main.display()))?;
    println!("wrote bin/main.wasm");
    Ok(())
}

/// Fastly's own CLI, offline: build (runs `fastly-build`), pack and validate the package.
/// Returns its size in bytes.
fn fastly_package() -> Result<u64> {
    step(&format!("Fastly CLI {FASTLY_CLI_VERSION}, offline: compute build, pack, validate"));
    run_fastly(&["compute", "build", "--non-interactive"], Network::Offline)?;
    run_fastly(&["compute", "pack", "--non-interactive", "--wasm-binary", "bin/main.wasm"], Network::Offline)?;
    run_fastly(&["compute", "validate", "--non-interactive", "--package", FASTLY_PACKAGE], Network::Offline)?;
    let package = root().join(FASTLY_PACKAGE);
    let size = std::fs::metadata(&package).map_err(|e| format!("{}: {e}", package.display()))?.len();
    println!("fastly package {FASTLY_PACKAGE}: {size} bytes ({:.2} MiB)", size as f64 / (1024.0 * 1024.0));
    Ok(size)
}

/// `fastly compute serve --viceroy-path <the pinned Viceroy>` runs the package locally with
/// `[local_server]`: an unknown host gets the edge's own 404 JSON. The CLI and the Viceroy it
/// starts run in their own process group, which is killed (by its id) afterwards.
fn fastly_serve_check() -> Result {
    use std::io::{Read as _, Write as _};
    use std::os::unix::process::CommandExt as _;
    step("Fastly CLI: compute serve with the pinned Viceroy");
    let viceroy = tool_version("viceroy").ok_or("viceroy is missing: run `cargo xtask bootstrap`")?.0;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let viceroy_path = Path::new(&viceroy)
        .canonicalize()
        .or_else(|_| output("which", &[&viceroy]).map(PathBuf::from).ok_or(()))
        .map_err(|()| format!("cannot locate {viceroy}"))?;
    let mut command = fastly_command(
        &[
            "compute",
            "serve",
            "--file",
            "bin/main.wasm",
            "--addr",
            &addr,
            "--viceroy-path",
            &viceroy_path.to_string_lossy(),
        ],
        Network::Offline,
    );
    command.process_group(0).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("cannot run the Fastly CLI: {e}"))?;
    let group = child.id();
    let result = (|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut stream = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("`fastly compute serve` exited with {status} before listening on {addr}"));
            }
            match std::net::TcpStream::connect(&addr) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(e) => return Err(format!("`fastly compute serve` did not listen on {addr} within 60 s: {e}")),
            }
        };
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: unknown.localhost\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        if answer.starts_with("HTTP/1.1 404") && answer.contains("unknown_host") {
            println!("fastly compute serve on {addr}: unknown.localhost -> 404 unknown_host (the edge answered)");
            Ok(())
        } else {
            Err(format!("unexpected answer from the edge under `fastly compute serve`:\n{answer}"))
        }
    })();
    // The whole group we created: the CLI and the Viceroy it started.
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
    let _ = child.wait();
    result
}

fn build_js() -> Result {
    step("build the JavaScript package of edgegen-shared (wasm32-unknown-unknown + wasm-bindgen)");
    run(
        &cargo(),
        &[
            "build",
            "-p",
            "edgegen-shared",
            "--features",
            "js",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--lib",
        ],
    )?;
    let wasm = target_dir().join("wasm32-unknown-unknown/release/edgegen_shared.wasm");
    let bindgen = tool_version("wasm-bindgen").ok_or("wasm-bindgen is missing: run `cargo xtask bootstrap`")?.0;
    let out_dir = root().join("shared/js/pkg");
    run(&bindgen, &["--target", "nodejs", "--out-dir", &out_dir.to_string_lossy(), &wasm.to_string_lossy()])
}

/// Tallies the closing lines of cargo's and node's test runners.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn read(&mut self, line: &str) {
        // cargo: "test result: ok. 43 passed; 0 failed; 0 ignored; ..."
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match label {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    _ => {}
                }
            }
        }
        // node --test (TAP): "# pass 72" / "# fail 0"
        if let Some(n) = line.strip_prefix("# pass ") {
            self.passed += n.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("# fail ") {
            self.failed += n.trim().parse::<u64>().unwrap_or(0);
        }
    }
}

/// Runs a test command, echoing its output and tallying its results.
fn run_tests(tally: &mut Tally, program: &str, args: &[&str]) -> Result {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading {program}'s output: {e}"))?;
        println!("{line}");
        tally.read(&line);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("`{program} {}` failed ({status})", args.join(" "))) }
}

fn ci() -> Result {
    let started = std::time::Instant::now();
    bootstrap(Needs::All)?;
    step("format");
    run(&cargo(), &["fmt", "--all", "--check"])?;
    step("clippy: native, all targets");
    run(&cargo(), &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    step("clippy: edge on wasm32-wasip1, shared+js on wasm32-unknown-unknown");
    run(&cargo(), &["clippy", "-p", "edgegen-edge", "--target", "wasm32-wasip1", "--", "-D", "warnings"])?;
    run(
        &cargo(),
        &[
            "clippy",
            "-p",
            "edgegen-edge",
            "--target",
            "wasm32-wasip1",
            "--features",
            "test-hooks,local-purge",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run(
        &cargo(),
        &[
            "clippy",
            "-p",
            "edgegen-shared",
            "--features",
            "js",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    build_edge()?;
    fastly_package()?;
    fastly_serve_check()?;
    build_js()?;
    let mut tally = Tally::default();
    step("node: JavaScript bindings against the known-answer vectors");
    run_tests(&mut tally, "node", &["--test", "--test-reporter=tap", "shared/js/test/"])?;
    step("cargo test: unit, property, vector and Viceroy integration tests");
    run_tests(&mut tally, &cargo(), &["test", "--workspace"])?;
    schemathesis()?;
    println!("\nci: all checks passed in {:.0?}", started.elapsed());
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(())
}

fn demo(once: bool) -> Result {
    bootstrap(Needs::Demo)?;
    build_edge()?;
    step("run the local stack");
    let mut args = vec!["run", "--quiet", "-p", "edgegen-tests", "--bin", "edgegen-demo"];
    if once {
        args.extend(["--", "--once"]);
    }
    run(&cargo(), &args)
}
