//! Runs the release edge wasm under Viceroy (the local Fastly Compute runtime), one process
//! per simulated PoP, with a generated `fastly.toml` naming its backends and stores.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use edgegen_shared::TenantId;

use crate::process::{ChildGuard, free_port};
use crate::workspace;

/// The Viceroy version the project is pinned to (installed by `cargo xtask bootstrap`).
pub const VICEROY_VERSION: &str = "0.22.0";

/// The probe key local PoPs are started with (local testing only).
pub const PROBE_KEY: &str = "harness-probe-key-0123456789abcdef0123";

/// The purge token local PoPs that take purges are started with (local testing only).
pub const LOCAL_PURGE_TOKEN: &str = "harness-purge-token-0123456789abcdef012";

/// What one local PoP is configured with.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The tenants' origin.
    pub origin: SocketAddr,
    /// The coordinator's edge API; `None` points the backend at a closed port (coordinator down).
    pub coordinator: Option<SocketAddr>,
    /// Host name → tenant (the `edgegen_hosts` Config Store).
    pub hosts: Vec<(String, TenantId)>,
    /// This PoP's name (the `pop` entry of `edgegen_config`).
    pub pop: String,
    /// Further `edgegen_config` entries (e.g. `no_manifest`).
    pub settings: Vec<(String, String)>,
    /// Run the test wasm (with the `test-hooks` feature) instead of the release wasm.
    pub test_hooks: bool,
    /// Run the local-stack wasm (the `local-purge` endpoint) with this purge token in its
    /// Secret Store, so the Fastly API stand-in can purge it once registered there
    /// ([`crate::fastly_api::FastlyApi::add_pop`]; usually with [`LOCAL_PURGE_TOKEN`]).
    pub purge_token: Option<String>,
    /// Read `edgegen_hosts` from this JSON file instead of `hosts` (Viceroy re-reads it on
    /// every request, so rewriting it — e.g. through [`crate::fastly_api`] — changes
    /// routing live).
    pub hosts_file: Option<PathBuf>,
}

impl EdgeConfig {
    /// A PoP in front of `origin`, talking to `coordinator`, for these hosts.
    pub fn new(origin: SocketAddr, coordinator: Option<SocketAddr>, hosts: Vec<(String, TenantId)>, pop: &str) -> Self {
        EdgeConfig {
            origin,
            coordinator,
            hosts,
            pop: pop.to_owned(),
            settings: Vec::new(),
            test_hooks: false,
            purge_token: None,
            hosts_file: None,
        }
    }
}

impl EdgeConfig {
    /// The `fastly.toml` Viceroy reads for this PoP.
    pub fn to_fastly_toml(&self) -> String {
        let mut toml =
            String::from("manifest_version = 3\nname = \"edgegen-edge\"\nlanguage = \"rust\"\n\n[local_server]\n\n");
        let _ = writeln!(toml, "[local_server.backends.origin]\nurl = {}\n", quote(&format!("http://{}", self.origin)));
        let coordinator = match self.coordinator {
            Some(addr) => addr,
            // Nothing listens there: the edge finds the coordinator down.
            None => ([127, 0, 0, 1], free_port().unwrap_or(9)).into(),
        };
        let _ =
            writeln!(toml, "[local_server.backends.coordinator]\nurl = {}\n", quote(&format!("http://{coordinator}")));
        if let Some(file) = &self.hosts_file {
            let _ = writeln!(
                toml,
                "[local_server.config_stores.edgegen_hosts]\nformat = \"json\"\nfile = {}",
                quote(&file.to_string_lossy())
            );
        } else {
            toml.push_str("[local_server.config_stores.edgegen_hosts]\nformat = \"inline-toml\"\n");
            toml.push_str("[local_server.config_stores.edgegen_hosts.contents]\n");
            for (host, tenant) in &self.hosts {
                let _ = writeln!(toml, "{} = {}", quote(host), quote(tenant.as_str()));
            }
        }
        toml.push_str("\n[local_server.config_stores.edgegen_config]\nformat = \"inline-toml\"\n");
        let _ = writeln!(toml, "[local_server.config_stores.edgegen_config.contents]\npop = {}", quote(&self.pop));
        for (key, value) in &self.settings {
            let _ = writeln!(toml, "{} = {}", quote(key), quote(value));
        }
        let _ = write!(
            toml,
            "\n[local_server.secret_stores]\nedgegen_secrets = [\n  {{ key = \"manifest_key\", data = {} }},\n  \
             {{ key = \"probe_key\", data = {} }},\n  {{ key = \"edge_token\", data = {} }},\n",
            quote(crate::coordinator::MANIFEST_KEY),
            quote(PROBE_KEY),
            quote(crate::coordinator::EDGE_TOKEN)
        );
        if let Some(token) = &self.purge_token {
            let _ = writeln!(
                toml,
                "  {{ key = {}, data = {} }},",
                quote(edgegen_edge::purge::PURGE_TOKEN_SECRET),
                quote(token)
            );
        }
        toml.push_str("]\n");
        toml
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The pinned `viceroy` binary: on `PATH` or in `~/.cargo/bin`.
///
/// # Errors
/// When it is missing or another version (the message says to run `cargo xtask bootstrap`).
pub fn viceroy_bin() -> anyhow::Result<PathBuf> {
    let candidates = [
        Some(PathBuf::from("viceroy")),
        std::env::var_os("CARGO_HOME").map(|h| PathBuf::from(h).join("bin/viceroy")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/viceroy")),
    ];
    for bin in candidates.into_iter().flatten() {
        if let Ok(out) = Command::new(&bin).arg("--version").output() {
            let version = String::from_utf8_lossy(&out.stdout);
            if version.split_whitespace().nth(1) == Some(VICEROY_VERSION) {
                return Ok(bin);
            }
            bail!(
                "{} is {}, not viceroy {VICEROY_VERSION}: run `cargo xtask bootstrap`",
                bin.display(),
                version.trim()
            );
        }
    }
    bail!("viceroy {VICEROY_VERSION} is not installed: run `cargo xtask bootstrap`")
}

/// A running Viceroy process serving the edge wasm; stopped on drop.
pub struct Viceroy {
    addr: SocketAddr,
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Viceroy {
    /// Starts Viceroy on a free port with `config` and waits until it accepts connections.
    ///
    /// # Errors
    /// When the wasm cannot be built, Viceroy is missing, or it does not come up (with its log).
    pub fn start(config: &EdgeConfig) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("edgegen-viceroy-").tempdir()?;
        let toml = dir.path().join("fastly.toml");
        std::fs::write(&toml, config.to_fastly_toml())?;
        let wasm = if config.test_hooks {
            workspace::edge_wasm_with_test_hooks()?
        } else if config.purge_token.is_some() {
            workspace::edge_wasm_local_stack()?
        } else {
            workspace::edge_wasm()?
        };
        Self::start_with_manifest(&config.pop, &toml, &wasm, dir)
    }

    /// Starts Viceroy with `config` running another wasm (e.g. a benchmark baseline).
    ///
    /// # Errors
    /// As [`Viceroy::start`].
    pub fn start_with_wasm(config: &EdgeConfig, wasm: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("edgegen-viceroy-").tempdir()?;
        let toml = dir.path().join("fastly.toml");
        std::fs::write(&toml, config.to_fastly_toml())?;
        Self::start_with_manifest(&config.pop, &toml, wasm, dir)
    }

    /// Starts Viceroy with an existing `fastly.toml` (e.g. the repository's own), from a
    /// fresh temporary working directory.
    ///
    /// # Errors
    /// As [`Viceroy::start`].
    pub fn start_with_fastly_toml(toml: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("edgegen-viceroy-").tempdir()?;
        Self::start_with_manifest("from fastly.toml", toml, &workspace::edge_wasm()?, dir)
    }

    fn start_with_manifest(pop: &str, toml: &Path, wasm: &Path, dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let viceroy = viceroy_bin()?;
        let mut last_error = None;
        // Another process may take the free port before Viceroy binds it: try a few.
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let mut command = Command::new(&viceroy);
            command
                .current_dir(dir.path())
                .args(["serve", "-v", "--addr", &addr.to_string(), "-C"])
                .arg(toml)
                .arg(wasm);
            let log = dir.path().join(format!("viceroy-{}.log", addr.port()));
            let mut process = ChildGuard::spawn(&format!("viceroy (PoP {pop})"), command, &log)?;
            match process.wait_for_port(addr, Duration::from_secs(60)) {
                Ok(()) => {
                    return Ok(Viceroy { addr, process, _dir: dir });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("tried at least once")).context("starting Viceroy")
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The PID of the Viceroy process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The tail of Viceroy's log (including the edge's stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
