//! Locating the workspace and its build outputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

/// The workspace root (the parent of this crate's directory).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent")
}

/// The release edge wasm, built on first use (`cargo build -p edgegen-edge --release
/// --target wasm32-wasip1`; a no-op when it is up to date, as after `cargo xtask ci`).
///
/// # Errors
/// When the build fails (the error says how to run it by hand).
pub fn edge_wasm() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_edge().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

/// The edge wasm built with the `test-hooks` feature (and `local-purge`), in its own target
/// directory so the release wasm is never replaced by it. Only tests use it.
///
/// # Errors
/// When the build fails.
pub fn edge_wasm_with_test_hooks() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_edge_with("test-hooks", "test-hooks,local-purge")).clone().map_err(anyhow::Error::msg)
}

/// The local stack's edge wasm: the release code plus the `local-purge` endpoint through
/// which the Fastly API stand-in ([`crate::fastly_api`]) applies purges at each local PoP.
/// Built in its own target directory; `cargo xtask build-edge` and `fastly compute build`
/// never enable the feature.
///
/// # Errors
/// When the build fails.
pub fn edge_wasm_local_stack() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_edge_with("local-stack", "local-purge")).clone().map_err(anyhow::Error::msg)
}

/// Builds the edge with `features` under `target/{dir}`.
fn build_edge_with(dir: &str, features: &str) -> Result<PathBuf, String> {
    let dir = target_dir().join(dir);
    cargo_build_edge(&["--features", features, "--target-dir", &dir.to_string_lossy()])
        .map(|()| dir.join("wasm32-wasip1/release/edgegen-edge.wasm"))
        .map_err(|e| format!("{e:#}"))
}

fn cargo_build_edge(extra: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root())
        .args(["build", "--quiet", "-p", "edgegen-edge", "--release", "--target", "wasm32-wasip1"])
        .args(extra)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!(
            "building the edge wasm failed ({status}); run `cargo xtask bootstrap` (installs the \
             wasm32-wasip1 target) and `cargo xtask build-edge` to see why"
        );
    }
    Ok(())
}

fn build_edge() -> anyhow::Result<PathBuf> {
    cargo_build_edge(&[])?;
    let wasm = target_dir().join("wasm32-wasip1/release/edgegen-edge.wasm");
    if !wasm.exists() {
        bail!("the edge build succeeded but {} is missing", wasm.display());
    }
    Ok(wasm)
}

/// The `edgegen` binary, built on first use (`cargo build -p edgegen-coordinator --bin
/// edgegen`; a no-op when up to date) in the harness's own profile: tests and the demo run
/// the debug build, the benchmarks (`cargo run --release …`) the release build, so a figure
/// measured through the harness is the coordinator's optimized cost.
///
/// # Errors
/// When the build fails.
pub fn coordinator_bin() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_coordinator().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn build_coordinator() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut args = vec!["build", "--quiet", "-p", "edgegen-coordinator", "--bin", "edgegen"];
    if release {
        args.push("--release");
    }
    let status =
        Command::new(&cargo).current_dir(root()).args(&args).status().with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("building the edgegen binary failed ({status}); run `cargo build -p edgegen-coordinator` to see why");
    }
    Ok(target_dir().join(if release { "release/edgegen" } else { "debug/edgegen" }))
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}
