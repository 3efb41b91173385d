//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `bootstrap`  install what a fresh machine lacks (rustup targets, the pinned Viceroy,
//!   wasm-bindgen-cli at the crate's exact version, Node.js, Debian's PostgreSQL server for
//!   the shard tests); skip what is present.
//! - `build-edge` build the release edge wasm and check its size (≤ 1.5 MiB).
//! - `build-js`   build the JavaScript package of `edgegen-shared` into `shared/js/pkg`.
//! - `ci`         the one gate: bootstrap, fmt, clippy (native and both wasm targets), the
//!   wasm builds, every Rust test (Viceroy included) and the Node vector test.
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
/// Node.js major version with a stable built-in test runner.
const MIN_NODE_MAJOR: u32 = 18;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bootstrap") => bootstrap(Needs::All),
        Some("build-edge") => build_edge().map(|_| ()),
        Some("build-js") => build_js(),
        Some("ci") => ci(),
        Some("demo") => demo(args.iter().any(|a| a == "--once")),
        _ => Err("usage: cargo xtask <bootstrap | build-edge | build-js | ci | demo [--once]>".into()),
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
    // The Node test uses only Node's built-in test runner: there are no npm packages to install.

    // PostgreSQL server binaries for the shard-verification tests (Debian's package; the
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

fn build_edge() -> Result<u64> {
    step("build the release edge wasm (wasm32-wasip1)");
    run(&cargo(), &["build", "-p", "edgegen-edge", "--release", "--target", "wasm32-wasip1"])?;
    let wasm = target_dir().join("wasm32-wasip1/release/edgegen-edge.wasm");
    let size = std::fs::metadata(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?.len();
    println!("edge wasm: {} bytes ({:.2} MiB; limit 1.5 MiB)", size, size as f64 / (1024.0 * 1024.0));
    if size > EDGE_WASM_LIMIT {
        return Err(format!("the edge wasm is {size} bytes, over the {EDGE_WASM_LIMIT}-byte limit"));
    }
    Ok(size)
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
            "test-hooks",
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
    build_js()?;
    let mut tally = Tally::default();
    step("node: JavaScript bindings against the known-answer vectors");
    run_tests(&mut tally, "node", &["--test", "--test-reporter=tap", "shared/js/test/"])?;
    step("cargo test: unit, property, vector and Viceroy integration tests");
    run_tests(&mut tally, &cargo(), &["test", "--workspace"])?;
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
