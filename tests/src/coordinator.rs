//! Runs the real `edgegen serve` binary on a free 127.0.0.1 port with a data dir of the
//! caller's, and talks to its admin and edge APIs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::process::{ChildGuard, free_port};
use crate::workspace;

/// Secrets the harness starts coordinators with (local testing only).
pub const ADMIN_TOKEN: &str = "harness-admin-token-0123456789";
/// Edge token.
pub const EDGE_TOKEN: &str = "harness-edge-token-0123456789";
/// Manifest signing key.
pub const MANIFEST_KEY: &str = "harness-manifest-key-0123456789abcdef01";

/// A running coordinator; killed (by its PID) on drop.
pub struct Coordinator {
    addr: SocketAddr,
    process: ChildGuard,
    http: reqwest::Client,
}

impl Coordinator {
    /// Starts `edgegen serve` on `data_dir` and waits until it listens.
    ///
    /// # Errors
    /// When the binary cannot be built or does not come up (with its log).
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_on(data_dir, ([127, 0, 0, 1], free_port()?).into(), &[])
    }

    /// Starts `edgegen serve` on `data_dir` at `addr` (e.g. the address of a coordinator that
    /// was killed, so PoPs configured with it find the restarted one) with extra environment.
    ///
    /// # Errors
    /// As [`Coordinator::start`].
    pub fn start_on(data_dir: &Path, addr: SocketAddr, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = workspace::coordinator_bin()?;
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("EDGEGEN_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("EDGEGEN_EDGE_TOKEN", EDGE_TOKEN)
            .env("EDGEGEN_MANIFEST_KEY", MANIFEST_KEY)
            .env("RUST_LOG", "warn");
        std::fs::create_dir_all(data_dir)?;
        let mut process = ChildGuard::spawn("edgegen serve", cmd, &data_dir.join("coordinator.log"))?;
        process.wait_for_port(addr, Duration::from_secs(30))?;
        Ok(Coordinator { addr, process, http: reqwest::Client::new() })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Calls the admin API; fails on a non-2xx answer with the coordinator's error.
    ///
    /// # Errors
    /// On transport errors and error statuses.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.call(method, path, ADMIN_TOKEN, body).await
    }

    /// Fetches a tenant's signed manifest body as the edge does.
    ///
    /// # Errors
    /// On transport errors and error statuses.
    pub async fn manifest(&self, tenant: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .http
            .get(format!("http://{}/v1/edge/manifests/{tenant}", self.addr))
            .bearer_auth(EDGE_TOKEN)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("manifest of {tenant}: HTTP {}", resp.status());
        }
        Ok(resp.bytes().await?.to_vec())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("http://{}{path}", self.addr)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: HTTP {status}: {}", value["error"]["message"]);
        }
        Ok(value)
    }
}

/// `GET url` with `token` as the bearer, answered as JSON: the one-line read that tests and
/// benchmarks make of a coordinator they started (any status; the body is the evidence).
///
/// # Panics
/// On a transport error or a body that is not JSON, naming the URL.
pub async fn get_json(http: &reqwest::Client, url: impl AsRef<str>, token: &str) -> Value {
    let url = url.as_ref();
    let resp = http.get(url).bearer_auth(token).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.json().await.unwrap_or_else(|e| panic!("GET {url}: the answer is not JSON: {e}"))
}
