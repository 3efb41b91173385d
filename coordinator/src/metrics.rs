//! Counters and a histogram, rendered in the Prometheus text format at `GET /metrics`.
//! Lock-free atomics: the hot paths (manifests, acks) only increment.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (ms) of the convergence-latency histogram buckets.
const CONVERGENCE_BUCKETS_MS: [u64; 11] = [50, 100, 250, 500, 750, 1000, 1250, 1500, 2000, 5000, 30_000];

/// The coordinator's metrics.
pub struct Metrics {
    releases: AtomicU64,
    rollbacks: AtomicU64,
    auto_rollbacks: AtomicU64,
    acks: AtomicU64,
    acks_refused: AtomicU64,
    reports_contract_mismatch: AtomicU64,
    reports_deserialization_failure: AtomicU64,
    manifests_served: AtomicU64,
    manifests_not_modified: AtomicU64,
    tenant_reads: [AtomicU64; 2],
    releases_converged: AtomicU64,
    host_syncs: [AtomicU64; 3],
    convergence_buckets: [AtomicU64; CONVERGENCE_BUCKETS_MS.len()],
    convergence_sum_ms: AtomicU64,
    http_status: [AtomicU64; 500],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            releases: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            auto_rollbacks: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            acks_refused: AtomicU64::new(0),
            reports_contract_mismatch: AtomicU64::new(0),
            reports_deserialization_failure: AtomicU64::new(0),
            manifests_served: AtomicU64::new(0),
            manifests_not_modified: AtomicU64::new(0),
            tenant_reads: std::array::from_fn(|_| AtomicU64::new(0)),
            releases_converged: AtomicU64::new(0),
            host_syncs: std::array::from_fn(|_| AtomicU64::new(0)),
            convergence_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            convergence_sum_ms: AtomicU64::new(0),
            http_status: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Metrics {
    /// A release committed.
    pub fn release(&self, rollback: bool, automatic: bool) {
        if rollback { &self.rollbacks } else { &self.releases }.fetch_add(1, Relaxed);
        if automatic {
            self.auto_rollbacks.fetch_add(1, Relaxed);
        }
    }

    /// `n` acknowledgements stored.
    pub fn acks(&self, n: u64) {
        self.acks.fetch_add(n, Relaxed);
    }

    /// An acknowledgement refused: no manifest fetch of that PoP vouched for it.
    pub fn ack_refused(&self) {
        self.acks_refused.fetch_add(1, Relaxed);
    }

    /// A report stored.
    pub fn report(&self, kind: edgegen_shared::ReportKind) {
        match kind {
            edgegen_shared::ReportKind::ContractMismatch => &self.reports_contract_mismatch,
            edgegen_shared::ReportKind::DeserializationFailure => &self.reports_deserialization_failure,
        }
        .fetch_add(1, Relaxed);
    }

    /// A manifest answered (200) or confirmed unchanged (304).
    pub fn manifest(&self, not_modified: bool) {
        if not_modified { &self.manifests_not_modified } else { &self.manifests_served }.fetch_add(1, Relaxed);
    }

    /// A release converged `latency_ms` after its commit.
    pub fn converged(&self, latency_ms: u64) {
        self.releases_converged.fetch_add(1, Relaxed);
        self.convergence_sum_ms.fetch_add(latency_ms, Relaxed);
        if let Some(i) = CONVERGENCE_BUCKETS_MS.iter().position(|b| latency_ms <= *b) {
            self.convergence_buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// A host-map sync attempt ended with `outcome`.
    pub fn host_sync(&self, outcome: crate::outbox::HostSyncOutcome) {
        self.host_syncs[outcome as usize].fetch_add(1, Relaxed);
    }

    /// An HTTP response with `status` was sent.
    pub fn http_status(&self, status: u16) {
        if let Some(slot) = status.checked_sub(100).and_then(|i| self.http_status.get(i as usize)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// A manifest-path read of tenant state on the PostgreSQL store: served under the
    /// replica's lease (`true`) or after a validation round trip (`false`).
    pub fn tenant_read(&self, leased: bool) {
        self.tenant_reads[usize::from(!leased)].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        counter(
            &mut out,
            "edgegen_releases_total",
            "Releases committed, by kind.",
            &[
                ("{kind=\"release\"}", self.releases.load(Relaxed)),
                ("{kind=\"rollback\"}", self.rollbacks.load(Relaxed)),
            ],
        );
        counter(
            &mut out,
            "edgegen_auto_rollbacks_total",
            "Rollbacks triggered by the report policy.",
            &[("", self.auto_rollbacks.load(Relaxed))],
        );
        counter(&mut out, "edgegen_acks_total", "PoP acknowledgements stored.", &[("", self.acks.load(Relaxed))]);
        counter(
            &mut out,
            "edgegen_acks_refused_total",
            "PoP acknowledgements refused: that PoP was not served that manifest generation.",
            &[("", self.acks_refused.load(Relaxed))],
        );
        counter(
            &mut out,
            "edgegen_reports_total",
            "Edge reports stored, by kind.",
            &[
                ("{kind=\"contract_mismatch\"}", self.reports_contract_mismatch.load(Relaxed)),
                ("{kind=\"deserialization_failure\"}", self.reports_deserialization_failure.load(Relaxed)),
            ],
        );
        counter(
            &mut out,
            "edgegen_manifests_total",
            "Manifest requests answered, by result.",
            &[
                ("{result=\"served\"}", self.manifests_served.load(Relaxed)),
                ("{result=\"not_modified\"}", self.manifests_not_modified.load(Relaxed)),
            ],
        );
        counter(
            &mut out,
            "edgegen_tenant_reads_total",
            "Manifest-path reads of tenant state (PostgreSQL store), by how they were validated: under this replica's lease or by a round trip.",
            &[
                ("{path=\"lease\"}", self.tenant_reads[0].load(Relaxed)),
                ("{path=\"round\"}", self.tenant_reads[1].load(Relaxed)),
            ],
        );
        use crate::outbox::HostSyncOutcome as H;
        counter(
            &mut out,
            "edgegen_host_syncs_total",
            "Attempts to sync the edgegen_hosts Config Store after registrations, by outcome.",
            &[
                ("{outcome=\"synced\"}", self.host_syncs[H::Synced as usize].load(Relaxed)),
                ("{outcome=\"retrying\"}", self.host_syncs[H::Retrying as usize].load(Relaxed)),
                ("{outcome=\"failed\"}", self.host_syncs[H::Failed as usize].load(Relaxed)),
            ],
        );

        let name = "edgegen_convergence_latency_ms";
        let _ =
            writeln!(out, "# HELP {name} Time from commit until every live PoP acknowledged.\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in CONVERGENCE_BUCKETS_MS.iter().zip(&self.convergence_buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.releases_converged.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {count}", self.convergence_sum_ms.load(Relaxed));

        let statuses: Vec<(String, u64)> = self
            .http_status
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Relaxed);
                (n > 0).then(|| (format!("{{status=\"{}\"}}", i + 100), n))
            })
            .collect();
        let statuses: Vec<(&str, u64)> = statuses.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(&mut out, "edgegen_http_responses_total", "HTTP responses sent, by status.", &statuses);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.release(false, false);
        m.converged(120);
        m.converged(4000);
        m.http_status(200);
        m.http_status(200);
        m.http_status(404);
        m.host_sync(crate::outbox::HostSyncOutcome::Retrying);
        m.tenant_read(true);
        m.tenant_read(true);
        m.tenant_read(false);
        let text = m.render();
        assert!(text.contains("edgegen_tenant_reads_total{path=\"lease\"} 2\n"));
        assert!(text.contains("edgegen_tenant_reads_total{path=\"round\"} 1\n"));
        assert!(text.contains("edgegen_host_syncs_total{outcome=\"retrying\"} 1\n"));
        assert!(text.contains("edgegen_host_syncs_total{outcome=\"synced\"} 0\n"));
        assert!(text.contains("edgegen_releases_total{kind=\"release\"} 1\n"));
        assert!(text.contains("edgegen_convergence_latency_ms_bucket{le=\"100\"} 0\n"));
        assert!(text.contains("edgegen_convergence_latency_ms_bucket{le=\"250\"} 1\n"));
        assert!(text.contains("edgegen_convergence_latency_ms_bucket{le=\"5000\"} 2\n"));
        assert!(text.contains("edgegen_convergence_latency_ms_count 2\n"));
        assert!(text.contains("edgegen_http_responses_total{status=\"200\"} 2\n"));
        assert!(text.contains("edgegen_http_responses_total{status=\"404\"} 1\n"));
    }
}
