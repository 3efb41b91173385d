//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, the server
//! on a free 127.0.0.1 port (no fsync for test data; [`TempCluster::start_durable`] for
//! benchmarks), stopped on drop by signalling the
//! postmaster PID it recorded (SIGQUIT: immediate shutdown), then removed.
//!
//! The server binaries come from Debian's `postgresql` package, which `cargo xtask
//! bootstrap` installs when they are missing. As root, the cluster runs as the `postgres`
//! user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::process::free_port;

/// A running temporary cluster.
pub struct TempCluster {
    port: u16,
    pid: u32,
    _dir: tempfile::TempDir,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
///
/// # Errors
/// When the server binaries are not installed.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).filter(|b| b.join("initdb").exists()).collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().context("PostgreSQL server binaries are not installed (no /usr/lib/postgresql/*/bin/initdb): run `cargo xtask bootstrap`")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root.
fn pg(bin: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd.args(args).output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}{}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl TempCluster {
    /// Creates and starts a cluster for tests (no fsync: test data); waits until it accepts
    /// connections. `EDGEGEN_PG_OPTIONS`, if set, is appended to the server's options here
    /// and in [`TempCluster::start_durable`] (for diagnosis, e.g.
    /// `-c shared_preload_libraries=pg_stat_statements`).
    ///
    /// # Errors
    /// When the binaries are missing or the server does not start (with its log).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(false)
    }

    /// Creates and starts a cluster that flushes its WAL at every commit, as a production
    /// server does (`fsync = on`, `synchronous_commit = on`): for benchmarks that compare
    /// with SQLite's `synchronous = FULL`.
    ///
    /// # Errors
    /// As [`TempCluster::start`].
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("edgegen-pg-").tempdir()?;
        if is_root() {
            let status = Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status()?;
            if !status.success() {
                bail!("chown postgres {} failed", dir.path().display());
            }
        }
        let data = dir.path().join("data");
        let (data_s, dir_s) = (data.to_string_lossy().into_owned(), dir.path().to_string_lossy().into_owned());
        pg(&bin.join("initdb"), &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"])?;
        let port = free_port()?;
        let sync = if durable { "-c fsync=on -c synchronous_commit=on" } else { "-c fsync=off" };
        let extra = std::env::var("EDGEGEN_PG_OPTIONS").unwrap_or_default();
        let options = format!("-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 {sync} {extra}");
        let log = format!("{dir_s}/server.log");
        pg(&bin.join("pg_ctl"), &["-D", &data_s, "-o", &options, "-l", &log, "-w", "-t", "30", "start"])
            .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).context("reading postmaster.pid")?;
        let pid: u32 =
            pid_file.lines().next().and_then(|l| l.trim().parse().ok()).context("postmaster.pid has no PID")?;
        Ok(TempCluster { port, pid, _dir: dir })
    }

    /// `postgres://postgres@127.0.0.1:{port}/{db}` (the superuser: it bypasses RLS).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID (its backends are its children).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Creates the empty database `name` (`createdb`); returns its URL.
    ///
    /// # Errors
    /// When `createdb` fails (e.g. the name is taken), with its message.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        pg(&bin_dir()?.join("createdb"), &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name])?;
        Ok(self.url(name))
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        // Immediate shutdown of exactly the postmaster we started; wait until it is gone.
        let _ = Command::new("kill").args(["-QUIT", &self.pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
