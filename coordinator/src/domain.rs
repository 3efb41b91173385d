//! The coordinator's decisions, as functions of values: which generations a release or a
//! rollback moves to, whether it is allowed, and how far a release has converged. The store
//! calls these inside its transactions; nothing here does I/O or reads a clock.

use std::collections::{BTreeMap, HashMap, HashSet};

use edgegen_shared::api::{
    Convergence, NewTenant, PopConvergence, ReleaseKind, ReleaseRequest, ReleaseStatus, TenantChange,
};
use edgegen_shared::{ContractHash, Generation, PopId, ReleaseId, SchemaVersion, TenantId};

/// Why a request was refused (the client's fault, or a state conflict; never internal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 404.
    NotFound(String),
    /// 409.
    Conflict(String),
    /// 422.
    Unprocessable(String),
}

/// A tenant's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantState {
    /// Id.
    pub id: TenantId,
    /// Host names.
    pub hosts: Vec<String>,
    /// Current generation.
    pub generation: Generation,
    /// Current schema version.
    pub schema_version: SchemaVersion,
    /// Current contract hash.
    pub contract_hash: ContractHash,
    /// The release that set the current generation (`None`: registration).
    pub release_id: Option<ReleaseId>,
}

impl TenantState {
    /// The tenant as the API shows it.
    pub fn view(self) -> edgegen_shared::api::Tenant {
        edgegen_shared::api::Tenant {
            id: self.id,
            hosts: self.hosts,
            generation: self.generation,
            schema_version: self.schema_version,
            contract_hash: self.contract_hash,
        }
    }
}

/// SHA-256 of the canonical JSON of a release request: what idempotency compares.
///
/// # Errors
/// When the request cannot be put in canonical JSON (it always can: it came from JSON).
pub fn request_hash(req: &ReleaseRequest) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let value = serde_json::to_value(req).map_err(|e| e.to_string())?;
    let canonical = edgegen_shared::contract::canonical_json(&value).map_err(|e| e.to_string())?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// Checks a host name: lower-case DNS name, 1–253 bytes, labels 1–63 of `[a-z0-9-]`.
pub fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() || host.len() > 253 {
        return Err("must be 1-253 characters long");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must be 1-63 characters long");
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("may contain only a-z, 0-9, '-' and '.' (lower case, no port)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("labels must not start or end with '-'");
        }
    }
    Ok(())
}

/// Checks a tenant registration on its own (host syntax, duplicates, contract schema).
pub fn check_new_tenant(t: &NewTenant) -> Result<(), Refusal> {
    check_hosts(&t.hosts)?;
    check_contract(&t.contract_hash, t.contract_schema.as_ref())?;
    Ok(())
}

/// Checks a tenant's host list on its own (a registration's, or the set replacing its
/// hosts): at least one host (removing them all is removing the tenant), each a valid host
/// name, none twice.
pub fn check_hosts(hosts: &[String]) -> Result<(), Refusal> {
    if hosts.is_empty() {
        return Err(Refusal::Unprocessable(
            "hosts: must list at least one host name (to stop routing every host, remove the tenant)".into(),
        ));
    }
    let mut seen = HashSet::new();
    for (i, host) in hosts.iter().enumerate() {
        check_host(host).map_err(|rule| Refusal::Unprocessable(format!("hosts[{i}]: {rule} (got {host:?})")))?;
        if !seen.insert(host) {
            return Err(Refusal::Unprocessable(format!("hosts[{i}]: {host:?} is listed twice")));
        }
    }
    Ok(())
}

/// The refusal of `hosts[index]`, which tenant `owner` holds.
pub fn host_taken(index: usize, host: &str, owner: &str) -> Refusal {
    Refusal::Conflict(format!("hosts[{index}]: {host} already belongs to tenant {owner}"))
}

/// The refusal of a registration under the id of a removed tenant.
pub fn id_of_removed_tenant(id: &TenantId) -> Refusal {
    Refusal::Conflict(format!(
        "tenant {id} was removed; its id is not reused (its releases and generations are kept under it)"
    ))
}

/// The refusal for an id no tenant has.
pub fn unknown_tenant(id: &TenantId) -> Refusal {
    Refusal::NotFound(format!("tenant {id} does not exist"))
}

/// Whether a tenant may be removed, given the release that set its current generation if
/// that release is still converging (`committed`, neither converged nor rolled back):
/// removal then waits, since the PoPs are still being asked to reach that generation.
///
/// # Errors
/// The refusal, naming the release and what to do.
pub fn check_removal(id: &TenantId, converging: Option<&str>) -> Result<(), Refusal> {
    match converging {
        None => Ok(()),
        Some(release) => Err(Refusal::Conflict(format!(
            "tenant {id}: release {release} is still converging to its current generation; \
             wait for it to converge (or roll it back), then remove the tenant"
        ))),
    }
}

/// Verifies `hash` against the schema document it claims to hash, if one is given.
/// Returns a sentence describing what was verified.
pub fn check_contract(hash: &ContractHash, schema: Option<&serde_json::Value>) -> Result<Option<String>, Refusal> {
    let Some(schema) = schema else { return Ok(None) };
    let computed = edgegen_shared::contract::contract_hash_value(schema)
        .map_err(|e| Refusal::Unprocessable(format!("contract_schema: {e}")))?;
    if &computed != hash {
        return Err(Refusal::Unprocessable(format!(
            "contract_hash {hash} does not match contract_schema, which hashes to {computed}"
        )));
    }
    Ok(Some(format!("contract_schema hashes to {computed}, matching contract_hash")))
}

/// The changes a release makes: every listed tenant to its next generation with the new
/// schema version and contract hash. Refused as a whole if any tenant cannot move.
pub fn plan_release(
    req: &ReleaseRequest,
    current: impl Fn(&TenantId) -> Option<TenantState>,
) -> Result<Vec<TenantChange>, Refusal> {
    if req.tenants.is_empty() {
        return Err(Refusal::Unprocessable("tenants: must list at least one tenant".into()));
    }
    let mut seen = HashSet::new();
    let mut unknown = Vec::new();
    let mut changes = Vec::with_capacity(req.tenants.len());
    for (i, tenant) in req.tenants.iter().enumerate() {
        if !seen.insert(tenant) {
            return Err(Refusal::Unprocessable(format!("tenants[{i}]: {tenant} is listed twice")));
        }
        let Some(state) = current(tenant) else {
            unknown.push(tenant.as_str());
            continue;
        };
        let to_generation = state.generation.next().ok_or_else(|| {
            Refusal::Unprocessable(format!("tenant {tenant} is at the last generation ({})", state.generation))
        })?;
        changes.push(TenantChange {
            tenant: tenant.clone(),
            from_generation: state.generation,
            to_generation,
            from_schema_version: state.schema_version,
            to_schema_version: req.schema_version,
            from_contract_hash: state.contract_hash,
            to_contract_hash: req.contract_hash,
        });
    }
    if !unknown.is_empty() {
        return Err(Refusal::Unprocessable(format!(
            "tenants: not registered: {}; nothing was released",
            unknown.join(", ")
        )));
    }
    Ok(changes)
}

/// One edge report counted by the auto-rollback policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// The PoP that sent it.
    pub pop: PopId,
    /// The request path it names, if any.
    pub path: Option<String>,
}

/// Reports against one release within the policy window, counted three ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportTally {
    /// Reports.
    pub reports: usize,
    /// Distinct PoPs that sent them.
    pub pops: usize,
    /// Distinct paths they name (a report without a path counts as one path, `-`).
    pub paths: usize,
}

impl ReportTally {
    /// Counts `rows`.
    pub fn of(rows: &[ReportRow]) -> Self {
        let pops: HashSet<&PopId> = rows.iter().map(|r| &r.pop).collect();
        let paths: HashSet<&str> = rows.iter().map(|r| r.path.as_deref().unwrap_or("-")).collect();
        ReportTally { reports: rows.len(), pops: pops.len(), paths: paths.len() }
    }

    /// Whether the auto-rollback `policy` fires: enough reports, from enough distinct PoPs,
    /// naming enough distinct paths. Counting PoPs means anonymous traffic through one PoP
    /// cannot roll a release back by itself.
    pub fn fires(&self, policy: &crate::config::AutoRollback) -> bool {
        self.reports >= policy.reports as usize
            && self.pops >= policy.min_pops as usize
            && self.paths >= policy.min_paths as usize
    }

    /// The reason recorded on the automatic rollback this tally fired (both stores write it).
    pub fn rollback_reason(&self, policy: &crate::config::AutoRollback) -> String {
        format!(
            "automatic: {} edge report(s) from {} PoP(s) naming {} path(s) within {} s of commit (policy: {} reports, \
             {} PoPs, {} paths)",
            self.reports,
            self.pops,
            self.paths,
            policy.window.as_secs(),
            policy.reports,
            policy.min_pops,
            policy.min_paths
        )
    }
}

/// The release an edge report names (the release, not a rollback, that set the reported
/// tenant to the reported generation, while it still stands), with the reports against its
/// generations received from its commit to the end of the policy window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRelease {
    /// The release.
    pub id: ReleaseId,
    /// Its commit, Unix ms.
    pub committed_at: u64,
    /// The reports counted.
    pub reports: Vec<ReportRow>,
}

impl ReportedRelease {
    /// Why the auto-rollback `policy` rolls this release back at `now`, or `None`: it
    /// fires only within its window after the commit, on a tally that passes
    /// [`ReportTally::fires`].
    pub fn auto_rollback_reason(&self, policy: &crate::config::AutoRollback, now: u64) -> Option<String> {
        let window_end = self.committed_at.saturating_add(policy.window.as_millis() as u64);
        if now > window_end {
            return None;
        }
        let tally = ReportTally::of(&self.reports);
        tally.fires(policy).then(|| tally.rollback_reason(policy))
    }
}

/// What the store knows about a release when asked to roll it back.
#[derive(Debug, Clone)]
pub struct ReleaseFacts {
    /// Id.
    pub id: ReleaseId,
    /// Release or rollback.
    pub kind: ReleaseKind,
    /// The rollback that already undid it.
    pub rolled_back_by: Option<ReleaseId>,
    /// Its changes.
    pub changes: Vec<TenantChange>,
}

/// The changes a rollback makes: each tenant of `release` to a *new* generation carrying its
/// pre-release schema version and contract hash. Refused if the release was already rolled
/// back, is itself a rollback, or a later release moved one of its tenants on.
pub fn plan_rollback(
    release: &ReleaseFacts,
    current: impl Fn(&TenantId) -> Option<TenantState>,
) -> Result<Vec<TenantChange>, Refusal> {
    if let Some(by) = &release.rolled_back_by {
        return Err(Refusal::Conflict(format!("release {} was already rolled back by {by}", release.id)));
    }
    if release.kind == ReleaseKind::Rollback {
        return Err(Refusal::Conflict(format!(
            "{} is itself a rollback; to return to its predecessor's state, make a new release",
            release.id
        )));
    }
    let mut changes = Vec::with_capacity(release.changes.len());
    for change in &release.changes {
        let state = current(&change.tenant)
            .ok_or_else(|| Refusal::Conflict(format!("tenant {} no longer exists", change.tenant)))?;
        if state.generation != change.to_generation {
            let by = state.release_id.as_ref().map_or_else(|| "another release".to_owned(), |r| format!("release {r}"));
            return Err(Refusal::Conflict(format!(
                "tenant {} has moved on to generation {} ({by}) since release {} set generation {}; roll that back first",
                change.tenant, state.generation, release.id, change.to_generation
            )));
        }
        let to_generation = state
            .generation
            .next()
            .ok_or_else(|| Refusal::Unprocessable(format!("tenant {} is at the last generation", change.tenant)))?;
        changes.push(TenantChange {
            tenant: change.tenant.clone(),
            from_generation: state.generation,
            to_generation,
            from_schema_version: state.schema_version,
            to_schema_version: change.from_schema_version,
            from_contract_hash: state.contract_hash,
            to_contract_hash: change.from_contract_hash,
        });
    }
    Ok(changes)
}

/// The first time each PoP acknowledged each tenant at or past the release's generation.
#[derive(Debug, Clone)]
pub struct AckRow {
    /// PoP.
    pub pop: PopId,
    /// Tenant.
    pub tenant: TenantId,
    /// When the coordinator received that acknowledgement (its own clock, so latencies from
    /// commit are not skewed by PoP clocks).
    pub received_at: u64,
}

/// Inputs of a convergence report.
pub struct ConvergenceInput<'a> {
    /// Release.
    pub release_id: &'a ReleaseId,
    /// Status.
    pub status: ReleaseStatus,
    /// Commit time.
    pub committed_at: u64,
    /// Tenants of the release.
    pub tenants: &'a [TenantId],
    /// PoPs live now.
    pub live_pops: &'a [PopId],
    /// Acknowledgements at or past the release's generations.
    pub acks: &'a [AckRow],
    /// Now.
    pub now: u64,
    /// Manifest max age.
    pub bound_ms: u64,
    /// Live window.
    pub live_window_ms: u64,
    /// The tenants' max stale (the lease bound of a PoP without a fetch record).
    pub leases: &'a crate::config::LeasePolicy,
    /// The fetch records of the release's tenants.
    pub fetches: &'a [(PopId, TenantId, crate::convergence::FetchRecord)],
}

/// Computes how far a release has converged: converged when at least one PoP is live and
/// every live PoP acknowledged every tenant of the release.
pub fn convergence(input: &ConvergenceInput<'_>) -> Convergence {
    let mut first: HashMap<(&PopId, &TenantId), u64> = HashMap::new();
    for ack in input.acks {
        let slot = first.entry((&ack.pop, &ack.tenant)).or_insert(ack.received_at);
        *slot = (*slot).min(ack.received_at);
    }
    let mut pops: BTreeMap<&PopId, PopConvergence> = BTreeMap::new();
    for pop in input.live_pops {
        let times: Vec<u64> = input.tenants.iter().filter_map(|t| first.get(&(pop, t)).copied()).collect();
        let complete = times.len() == input.tenants.len();
        pops.insert(
            pop,
            PopConvergence {
                pop: pop.clone(),
                tenants_acked: times.len(),
                tenants_total: input.tenants.len(),
                latency_ms: complete.then(|| times.iter().max().map_or(0, |t| t.saturating_sub(input.committed_at))),
            },
        );
    }
    let mut latencies: Vec<u64> = pops.values().filter_map(|p| p.latency_ms).collect();
    latencies.sort_unstable();
    let total = pops.len();
    let acked = latencies.len();
    let converged = total > 0 && acked == total;
    let max_ms = latencies.last().copied();
    let max_staleness_ms = if converged { max_ms.unwrap_or(0) } else { input.now.saturating_sub(input.committed_at) };
    Convergence {
        release_id: input.release_id.clone(),
        status: input.status,
        converged,
        acked,
        total,
        pops: pops.into_values().collect(),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms,
        max_staleness_ms,
        bound_ms: input.bound_ms,
        live_window_ms: input.live_window_ms,
        leases: lease_groups(input),
    }
}

/// The release's PoPs by lease ([`crate::convergence::lease_groups`]).
fn lease_groups(input: &ConvergenceInput<'_>) -> edgegen_shared::api::LeaseGroups {
    let tenants: Vec<crate::convergence::LeaseTenant> = input
        .tenants
        .iter()
        .map(|t| crate::convergence::LeaseTenant { tenant: t.clone(), max_stale_ms: input.leases.ages(t).max_stale_ms })
        .collect();
    let acked: Vec<(PopId, TenantId)> = input.acks.iter().map(|a| (a.pop.clone(), a.tenant.clone())).collect();
    crate::convergence::lease_groups(&crate::convergence::LeaseInput {
        committed_at: input.committed_at,
        now: input.now,
        tenants: &tenants,
        live_pops: input.live_pops,
        fetches: input.fetches,
        acked: &acked,
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_policy_counts_distinct_pops_and_paths() {
        let policy = crate::config::AutoRollback {
            reports: 3,
            window: std::time::Duration::from_secs(60),
            min_pops: 2,
            min_paths: 2,
        };
        let row =
            |pop: &str, path: Option<&str>| ReportRow { pop: PopId::new(pop).unwrap(), path: path.map(Into::into) };
        let check = |rows: &[ReportRow], expected: (usize, usize, usize), fires: bool| {
            let tally = ReportTally::of(rows);
            assert_eq!((tally.reports, tally.pops, tally.paths), expected, "{rows:?}");
            assert_eq!(tally.fires(&policy), fires, "{rows:?}");
        };
        // Many reports through one PoP never fire, whatever their paths.
        let one_pop: Vec<ReportRow> = (0..50).map(|i| row("pop-1", Some(&format!("/p{i}")))).collect();
        check(&one_pop, (50, 1, 50), false);
        // Two PoPs, but one path (and pathless reports count as one path).
        check(&[row("pop-1", Some("/a")), row("pop-2", Some("/a")), row("pop-2", Some("/a"))], (3, 2, 1), false);
        check(&[row("pop-1", None), row("pop-2", None), row("pop-3", None)], (3, 3, 1), false);
        // Enough of everything.
        check(&[row("pop-1", Some("/a")), row("pop-2", Some("/b")), row("pop-2", Some("/a"))], (3, 2, 2), true);
        // Enough PoPs and paths, too few reports.
        check(&[row("pop-1", Some("/a")), row("pop-2", Some("/b"))], (2, 2, 2), false);
    }

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn state(id: &str, generation: u64) -> TenantState {
        TenantState {
            id: t(id),
            hosts: vec![format!("{id}.test")],
            generation: Generation(generation),
            schema_version: SchemaVersion::new("1.8.2").unwrap(),
            contract_hash: ContractHash::from_digest([1; 32]),
            release_id: None,
        }
    }

    fn registry(states: &[TenantState]) -> impl Fn(&TenantId) -> Option<TenantState> + '_ {
        move |id| states.iter().find(|s| &s.id == id).cloned()
    }

    fn request(tenants: &[&str]) -> ReleaseRequest {
        ReleaseRequest {
            tenants: tenants.iter().map(|s| t(s)).collect(),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([2; 32]),
            contract_schema: None,
            description: None,
            analysis: None,
        }
    }

    #[test]
    fn release_moves_each_tenant_one_generation() {
        let states = [state("a", 1), state("b", 7)];
        let changes = plan_release(&request(&["a", "b"]), registry(&states)).unwrap();
        assert_eq!(
            changes.iter().map(|c| (c.from_generation.0, c.to_generation.0)).collect::<Vec<_>>(),
            [(1, 2), (7, 8)]
        );
        assert_eq!(changes[1].to_schema_version.to_string(), "1.8.3");
    }

    #[test]
    fn release_is_refused_whole() {
        let states = [state("a", 1), state("b", u64::MAX)];
        let refuse = |tenants: &[&str]| plan_release(&request(tenants), registry(&states)).unwrap_err();
        assert_eq!(refuse(&[]), Refusal::Unprocessable("tenants: must list at least one tenant".into()));
        assert_eq!(refuse(&["a", "a"]), Refusal::Unprocessable("tenants[1]: a is listed twice".into()));
        assert_eq!(
            refuse(&["a", "x", "y"]),
            Refusal::Unprocessable("tenants: not registered: x, y; nothing was released".into())
        );
        assert!(matches!(refuse(&["b"]), Refusal::Unprocessable(m) if m.contains("last generation")));
    }

    #[test]
    fn rollback_restores_previous_state_under_a_new_generation() {
        let states = [state("a", 1)];
        let changes = plan_release(&request(&["a"]), registry(&states)).unwrap();
        let after = [TenantState {
            generation: Generation(2),
            schema_version: changes[0].to_schema_version,
            contract_hash: changes[0].to_contract_hash,
            release_id: Some(ReleaseId::new("rel-1").unwrap()),
            ..state("a", 2)
        }];
        let facts = ReleaseFacts {
            id: ReleaseId::new("rel-1").unwrap(),
            kind: ReleaseKind::Release,
            rolled_back_by: None,
            changes,
        };
        let back = plan_rollback(&facts, registry(&after)).unwrap();
        assert_eq!((back[0].from_generation.0, back[0].to_generation.0), (2, 3));
        assert_eq!(back[0].to_schema_version.to_string(), "1.8.2");
        assert_eq!(back[0].to_contract_hash, ContractHash::from_digest([1; 32]));
    }

    #[test]
    fn rollback_conflicts_name_the_reason() {
        let states = [state("a", 1)];
        let changes = plan_release(&request(&["a"]), registry(&states)).unwrap();
        let mut facts = ReleaseFacts {
            id: ReleaseId::new("rel-1").unwrap(),
            kind: ReleaseKind::Release,
            rolled_back_by: None,
            changes,
        };
        let moved_on = [TenantState { release_id: Some(ReleaseId::new("rel-2").unwrap()), ..state("a", 3) }];
        let err = plan_rollback(&facts, registry(&moved_on)).unwrap_err();
        assert!(
            matches!(&err, Refusal::Conflict(m) if m.contains("tenant a has moved on to generation 3 (release rel-2)")),
            "{err:?}"
        );
        facts.rolled_back_by = Some(ReleaseId::new("rel-3").unwrap());
        assert_eq!(
            plan_rollback(&facts, registry(&moved_on)).unwrap_err(),
            Refusal::Conflict("release rel-1 was already rolled back by rel-3".into())
        );
    }

    #[test]
    fn convergence_counts_live_pops_that_acked_every_tenant() {
        let id = ReleaseId::new("rel-1").unwrap();
        let tenants = [t("a"), t("b")];
        let pops = [PopId::new("p1").unwrap(), PopId::new("p2").unwrap()];
        let ack =
            |pop: usize, tenant: &str, at: u64| AckRow { pop: pops[pop].clone(), tenant: t(tenant), received_at: at };
        let mut acks = vec![ack(0, "a", 1100), ack(0, "b", 1300), ack(0, "b", 1200), ack(1, "a", 1050)];
        let policy =
            crate::config::LeasePolicy::global(crate::config::ManifestAges { max_age_ms: 1000, max_stale_ms: 3000 });
        let input = |acks: &[AckRow]| {
            convergence(&ConvergenceInput {
                release_id: &id,
                status: ReleaseStatus::Committed,
                committed_at: 1000,
                tenants: &tenants,
                live_pops: &pops,
                acks,
                now: 5000,
                bound_ms: 1000,
                live_window_ms: 30_000,
                leases: &policy,
                fetches: &[],
            })
        };
        let c = input(&acks);
        assert!(!c.converged);
        assert_eq!((c.acked, c.total), (1, 2));
        assert_eq!(c.pops[0].latency_ms, Some(200), "first ack per tenant counts, slowest tenant decides");
        assert_eq!(c.max_staleness_ms, 4000, "pending PoPs: stale until now");
        assert_eq!(c.leases.confirmed, [pops[0].clone()]);
        assert_eq!(c.leases.expired.len(), 1, "p2 has no fetch record: commit + max stale (4000) is not after now");
        assert_eq!((c.leases.expired[0].old_until, c.leases.expired[0].tenants_unconfirmed), (4000, 1));
        acks.push(ack(1, "b", 1900));
        let c = input(&acks);
        assert!(c.converged);
        assert_eq!((c.p50_ms, c.p99_ms, c.max_ms, c.max_staleness_ms), (Some(200), Some(900), Some(900), 900));
    }

    #[test]
    fn no_live_pops_is_not_convergence() {
        let id = ReleaseId::new("rel-1").unwrap();
        let c = convergence(&ConvergenceInput {
            release_id: &id,
            status: ReleaseStatus::Committed,
            committed_at: 0,
            tenants: &[t("a")],
            live_pops: &[],
            acks: &[],
            now: 10,
            bound_ms: 1000,
            live_window_ms: 1,
            leases: &crate::config::LeasePolicy::global(crate::config::ManifestAges {
                max_age_ms: 1000,
                max_stale_ms: 300_000,
            }),
            fetches: &[],
        });
        assert!(!c.converged);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[5], 99.0), Some(5));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (percentile(&v, 50.0), percentile(&v, 99.0), percentile(&v, 100.0)),
            (Some(50), Some(99), Some(100))
        );
    }

    #[test]
    fn hosts_and_contracts() {
        assert!(check_host("acme.example.com").is_ok());
        assert!(check_host("Acme.com").is_err());
        assert!(check_host("acme.com:80").is_err());
        assert!(check_host("a..b").is_err());
        let schema = serde_json::json!({"type": "object"});
        let hash = edgegen_shared::contract::contract_hash_value(&schema).unwrap();
        assert!(check_contract(&hash, Some(&schema)).unwrap().is_some());
        assert!(matches!(
            check_contract(&ContractHash::from_digest([0; 32]), Some(&schema)),
            Err(Refusal::Unprocessable(m)) if m.contains("does not match contract_schema")
        ));
    }

    #[test]
    fn the_report_policy_fires_only_within_its_window() {
        let policy = crate::config::AutoRollback {
            reports: 2,
            window: std::time::Duration::from_secs(60),
            min_pops: 2,
            min_paths: 1,
        };
        let row = |pop: &str| ReportRow { pop: PopId::new(pop).unwrap(), path: Some("/a".into()) };
        let reported = ReportedRelease {
            id: ReleaseId::new("rel-1").unwrap(),
            committed_at: 1_000,
            reports: vec![row("p1"), row("p2")],
        };
        let reason = reported.auto_rollback_reason(&policy, 61_000).expect("fires at the window's last millisecond");
        assert!(reason.starts_with("automatic: 2 edge report(s) from 2 PoP(s)"), "{reason}");
        assert_eq!(reported.auto_rollback_reason(&policy, 61_001), None, "past the window");
        let one_pop = ReportedRelease { reports: vec![row("p1"), row("p1")], ..reported };
        assert_eq!(one_pop.auto_rollback_reason(&policy, 2_000), None, "one PoP alone never fires");
    }
}
