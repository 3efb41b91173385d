//! A real HAProxy (Debian's package, installed by `cargo xtask bootstrap`) in front of
//! several coordinator replicas, as a platform team would run them: round robin, a health
//! check on `/healthz` every 100 ms (one failure takes a replica out), and a request whose
//! connection fails or that gets no answer retried once more on another replica
//! (`option redispatch`, `retry-on conn-failure empty-response response-timeout`).
//! Stopped (by its PID) on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, free_port};

/// A running load balancer.
pub struct HaProxy {
    front: SocketAddr,
    _process: ChildGuard,
}

/// The configuration for `front` → `backends`.
fn config(front: SocketAddr, backends: &[SocketAddr]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server r{i} {a} check inter 100ms fall 1 rise 2\n"))
        .collect();
    format!(
        "global\n    maxconn 2000\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    \
         timeout server 30s\n    retries 3\n    option redispatch\n    retry-on conn-failure empty-response \
         response-timeout\nfrontend coordinators\n    bind {front}\n    default_backend replicas\nbackend replicas\n    \
         balance roundrobin\n    option httpchk GET /healthz\n{servers}"
    )
}

impl HaProxy {
    /// Starts HAProxy on a free port of 127.0.0.1 balancing over `backends`; its
    /// configuration and log go to `dir`.
    ///
    /// # Errors
    /// When `haproxy` is missing (run `cargo xtask bootstrap`) or does not listen in time.
    pub fn start(dir: &Path, backends: &[SocketAddr]) -> anyhow::Result<Self> {
        let front: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config(front, backends))?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&path);
        let mut process =
            ChildGuard::spawn("haproxy (installed by `cargo xtask bootstrap`)", cmd, &dir.join("haproxy.log"))?;
        process.wait_for_port(front, Duration::from_secs(10))?;
        Ok(HaProxy { front, _process: process })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.front
    }
}
