//! Each replica's copy of the tenants' current state (the manifest path): served straight
//! from memory while the replica holds a *lease* on the database, and validated by a round
//! trip per read while it does not.
//!
//! **Epochs.** Every transaction that changes a tenant bumps the one-row `tenant_epoch` and
//! stamps the tenants it changed with the new value ([`super::bump_epoch`]); the row stays
//! locked until that transaction ends, so epochs are handed out in commit order, and a
//! snapshot that reads epoch `N` sees exactly the changes stamped `1..=N`. A *round* is one
//! statement, one snapshot: `tenant_epoch` joined with the tenants stamped after `since`,
//! the epoch up to which the cache holds every change; applying it brings every tenant to
//! at least the snapshot's state, after which the cache holds every change up to the
//! snapshot's epoch.
//!
//! **Leased reads (the common case): why a read is never older than an acknowledged
//! commit.** Each replica's *keeper* thread holds a row in `replica_leases`: the epoch its
//! cache has `applied`, and `lease_until` (database clock). When a commit announces a new
//! epoch (`NOTIFY edgegen_epoch`, sent by [`super::bump_epoch`]'s transaction) it runs a
//! round, applies it to the cache, then writes `applied`; every [`RENEW_EVERY`] it does the
//! same and extends `lease_until`. A transaction that changed tenants is not
//! acknowledged to its caller until [`fence`] saw every row either live with `applied` at
//! or past its epoch, or lapsed. So when a commit is acknowledged, every replica whose lease
//! the database holds has that commit in its cache already, and the others' leases have
//! lapsed in the database. The replica serves from memory only while it trusts its own
//! lease ([`Lease`]): until [`LOCAL_LEASE`] after sending a renewal (the database stamps the
//! row later than that, with the longer [`LEASE_MS`], so the replica always stops trusting a
//! lease before the database lets it lapse), and only if the database held the lease without
//! a gap since before the round that renewal reports (a renewal after a gap proves nothing
//! about commits acknowledged during the gap: the next round, after it, does). `applied` is
//! only written after the round it reports is in the cache, and the cache only moves forward.
//!
//! **What the lease assumes.** The database's wall clock and each replica's monotonic
//! clock tick at about the same rate (the 100 ms margin covers 10 %); the database's clock
//! is never stepped forward (NTP slews), and a replica is never frozen and resumed past its
//! lease (a paused VM): either could let a replica trust a lease the database let lapse.
//! The database's `now()` is taken at the start of each statement's transaction, before its
//! snapshot: a fence never judges a lease by a time later than the snapshot it read it in.
//!
//! **Unleased reads (start-up, a lost connection, a stalled keeper).** A reader waits for a
//! round that *started after the reader arrived* ([`Rounds`]), so if a commit was
//! acknowledged to anyone before the reader arrived — on any replica — that round's snapshot
//! includes it. Rounds are shared: readers arriving while a round runs all wait for the next
//! one, so the database sees one cheap query per round, not one per request. Up to
//! [`REFRESHERS`] rounds overlap (each on its own connection); rounds may finish out of
//! order, so each cached state keeps the epoch it was stamped with and is only replaced by a
//! newer one. A failed round fails its readers (the cache is not served unvalidated).
//!
//! **What a lease costs.** A commit waits for the other replicas' confirmations (one
//! notification and one round each, a few milliseconds), or, when a replica died or lost the
//! database, for its lease to lapse (at most [`LEASE_MS`]). A replica cut off from the
//! database keeps serving its cache until its lease lapses locally — no commit can be
//! acknowledged meanwhile that it has not applied — then fails its reads, as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use edgegen_shared::TenantId;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, NoTls, Statement};
use tokio::sync::oneshot;

use crate::domain::TenantState;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// How long a lease row stays live in the database after a renewal (database clock, ms).
const LEASE_MS: i64 = 1_000;

/// How long the replica trusts a renewal, counted from when it sent it: [`LEASE_MS`] less a
/// margin for the rates of the two clocks.
const LOCAL_LEASE: Duration = Duration::from_millis(900);

/// The keeper's session's `application_name`.
const KEEPER_APPLICATION_NAME: &str = "edgegen-lease-keeper";

/// How often the keeper renews when no commit announces a change.
const RENEW_EVERY: Duration = Duration::from_millis(200);

/// How long [`fence`] waits before it gives up: a live replica confirms within a renewal, a
/// dead one's lease lapses within [`LEASE_MS`].
const FENCE_WAIT: Duration = Duration::from_millis(3 * LEASE_MS as u64);

/// The database's clock in milliseconds, in SQL (the clock leases are stamped and checked
/// by): the start of the statement's transaction, which precedes its snapshot. So a fence
/// never judges a lease by a time later than the snapshot it read the lease in (a stalled
/// statement cannot see a lease lapse that its snapshot does not show renewed), and a
/// renewal is stamped no earlier than the replica sent it.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM now()) * 1000)::bigint"
    };
}

/// The lease rule, without I/O: whether a renewal lets the replica serve from memory, and
/// until when.
#[derive(Debug, Default)]
pub(super) struct Lease {
    /// When the last renewal the database committed was sent (`None`: no lease row yet, or
    /// the connection was lost).
    last_sent: Option<Instant>,
}

impl Lease {
    /// A renewal sent at `sent` committed and returned at `returned`; it reports a round
    /// that started after the previous renewal returned. The instant until which the replica
    /// may serve from memory: `Some` only if the previous renewal was still trusted when this
    /// one returned (so the database held the lease without a gap since before that round).
    pub(super) fn renewed(&mut self, sent: Instant, returned: Instant) -> Option<Instant> {
        let continuous = self.last_sent.is_some_and(|previous| returned < previous + LOCAL_LEASE);
        self.last_sent = Some(sent);
        continuous.then(|| sent + LOCAL_LEASE)
    }

    /// The connection (and with it any knowledge of the lease row) was lost.
    pub(super) fn lost(&mut self) {
        self.last_sent = None;
    }
}

/// The shared-round rule, without I/O: which round a reader needs, and when the
/// refresher starts the next one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Rounds {
    /// The last round started (0: none yet).
    started: u64,
    /// The highest round a reader waits for.
    wanted: u64,
}

impl Rounds {
    /// A reader arrives: it needs the first round that starts from now on (a round
    /// already running began before it arrived and may miss a commit acknowledged since).
    pub(super) fn arrive(&mut self) -> u64 {
        let need = self.started + 1;
        self.wanted = self.wanted.max(need);
        need
    }

    /// The refresher starts the next round if a reader waits for one: its number.
    pub(super) fn start(&mut self) -> Option<u64> {
        (self.wanted > self.started).then(|| {
            self.started += 1;
            self.started
        })
    }
}

/// Readers waiting, each filed under the round it needs: a finished round releases exactly
/// the readers it validates (those needing it or an earlier round), so a reader is woken
/// once, not by every round that finishes while it waits (up to [`REFRESHERS`] overlap).
/// This bounds the wake-ups; alternating load-bench runs measured no CPU difference above
/// the noise (BENCHMARKS.md).
#[derive(Debug)]
pub(super) struct Waiting<T> {
    by_round: BTreeMap<u64, Vec<T>>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting { by_round: BTreeMap::new() }
    }
}

impl<T> Waiting<T> {
    /// Files a reader that needs round `need`.
    pub(super) fn wait(&mut self, need: u64, reader: T) {
        self.by_round.entry(need).or_default().push(reader);
    }

    /// Round `round` finished: the readers it releases (every reader needing `round` or an
    /// earlier one), taken out.
    pub(super) fn release(&mut self, round: u64) -> Vec<T> {
        let later = self.by_round.split_off(&(round + 1));
        std::mem::replace(&mut self.by_round, later).into_values().flatten().collect()
    }
}

/// Rounds that may run at once (one connection each).
pub(super) const REFRESHERS: usize = 8;

/// Cached states, each with the epoch it was stamped with (`None`: the tenant was removed,
/// kept as a tombstone so an older round cannot bring it back), and the epoch up to which
/// every change is applied.
#[derive(Default)]
struct Map {
    complete_to: i64,
    states: HashMap<TenantId, (i64, Option<TenantState>)>,
}

/// A waiting reader: told its round's outcome.
type Reader = oneshot::Sender<Result<(), StoreError>>;

/// The round bookkeeping, under one lock: rounds, the readers waiting for them, and
/// whether the cache was dropped.
#[derive(Default)]
struct Gate {
    rounds: Rounds,
    waiting: Waiting<Reader>,
    stopped: bool,
}

struct Shared {
    gate: Mutex<Gate>,
    wake: Condvar,
    map: RwLock<Map>,
    /// Until when reads are served under the lease: nanoseconds after `base` (0: no lease).
    leased_until: AtomicU64,
    base: Instant,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.gate.lock().unwrap_or_else(|p| p.into_inner()).stopped
    }

    fn leased(&self) -> bool {
        let until = self.leased_until.load(Ordering::Acquire);
        until != 0 && (self.base.elapsed().as_nanos() as u64) < until
    }

    fn set_lease(&self, until: Option<Instant>) {
        let nanos = until.map_or(0, |u| u.saturating_duration_since(self.base).as_nanos() as u64);
        self.leased_until.store(nanos, Ordering::Release);
    }

    /// Applies a round's outcome: each state newer than the one held, then the epoch up to
    /// which every change is applied. Returns that epoch.
    fn apply(&self, now: i64, changed: Vec<Changed>) -> i64 {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (epoch, id, state) in changed {
            match map.states.get(&id) {
                // A round that finished first already applied a newer state.
                Some((held, _)) if *held >= epoch => {}
                _ => {
                    map.states.insert(id, (epoch, state));
                }
            }
        }
        map.complete_to = map.complete_to.max(now);
        map.complete_to
    }

    fn since(&self) -> i64 {
        self.map.read().unwrap_or_else(|p| p.into_inner()).complete_to
    }
}

/// The cache, its refresher threads and its keeper (stopped on drop).
pub(super) struct TenantCache {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl TenantCache {
    /// Starts the refresher threads and the keeper, each with its own connection to `url`.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(super) fn start(url: &str, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            gate: Mutex::new(Gate::default()),
            wake: Condvar::new(),
            // -1: nothing loaded yet (stored epochs start at 0).
            map: RwLock::new(Map { complete_to: -1, states: HashMap::new() }),
            leased_until: AtomicU64::new(0),
            base: Instant::now(),
        });
        // Built first: if a thread cannot be started, dropping it stops those that were.
        let cache = TenantCache { shared, metrics };
        let spawn = |name: String, run: fn(&Shared, &str)| {
            let (shared, url) = (Arc::clone(&cache.shared), url.to_owned());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || run(&shared, &url))
                .map_err(|e| StoreError::caused("starting the tenant cache", e))
        };
        for n in 0..REFRESHERS {
            spawn(format!("edgegen-tenant-cache-{n}"), refresher)?;
        }
        spawn("edgegen-tenant-lease".into(), keeper)?;
        Ok(cache)
    }

    /// The state of each of `ids` that exists: including every change acknowledged before
    /// this call began (under the lease, from memory; else after a round that started after
    /// this call began).
    ///
    /// # Errors
    /// When no lease is held and that round failed (the database is unreachable).
    pub(super) async fn tenants(&self, ids: &[TenantId]) -> Result<Vec<TenantState>, StoreError> {
        let leased = self.shared.leased();
        if !leased {
            self.validated().await?;
        }
        self.metrics.tenant_read(leased);
        let map = self.shared.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(ids.iter().filter_map(|id| map.states.get(id).and_then(|(_, state)| state.clone())).collect())
    }

    /// Waits for a round that started after this call began.
    async fn validated(&self) -> Result<(), StoreError> {
        let (reader, outcome) = oneshot::channel();
        {
            let mut gate = self.shared.gate.lock().unwrap_or_else(|p| p.into_inner());
            let need = gate.rounds.arrive();
            gate.waiting.wait(need, reader);
            self.shared.wake.notify_one();
        }
        outcome.await.map_err(|_| StoreError::internal("the tenant cache stopped"))?
    }
}

impl Drop for TenantCache {
    fn drop(&mut self) {
        self.shared.gate.lock().unwrap_or_else(|p| p.into_inner()).stopped = true;
        self.shared.wake.notify_all();
    }
}

/// Runs rounds while readers wait for them, until the cache is dropped. The connection is
/// opened on first use and again after a failure.
fn refresher(shared: &Shared, url: &str) {
    let mut client: Option<(Client, Statement)> = None;
    loop {
        let round = {
            let mut gate = shared.gate.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if gate.stopped {
                    return;
                }
                if let Some(round) = gate.rounds.start() {
                    break round;
                }
                gate = shared.wake.wait(gate).unwrap_or_else(|p| p.into_inner());
            }
        };
        let outcome = match refresh(&mut client, url, shared.since()) {
            Ok((now, changed)) => {
                shared.apply(now, changed);
                Ok(())
            }
            Err(e) => {
                client = None;
                Err(e)
            }
        };
        let released = shared.gate.lock().unwrap_or_else(|p| p.into_inner()).waiting.release(round);
        for reader in released {
            // A reader that stopped waiting (its request was dropped) is no one's concern.
            let _ = reader.send(outcome.clone());
        }
    }
}

/// The round's query, prepared once per connection (one round trip per round, not two).
const ROUND: &str = "SELECT t.id, t.hosts, t.generation, t.schema_version, t.contract_hash, t.release_id, e.n, t.epoch,
       t.removed_at IS NOT NULL
     FROM tenant_epoch e LEFT JOIN tenants t ON t.epoch > $1";

/// A tenant stamped after the round's `since`: its stamp, id and state (`None` once removed).
type Changed = (i64, TenantId, Option<TenantState>);

/// One round on a connection opened on first use.
fn refresh(client: &mut Option<(Client, Statement)>, url: &str, since: i64) -> Result<(i64, Vec<Changed>), StoreError> {
    let (c, round) = match client {
        Some(open) => open,
        None => {
            let mut c = connect(url, "edgegen-tenant-cache")?;
            let round = c.prepare(ROUND)?;
            client.insert((c, round))
        }
    };
    run_round(c, round, since)
}

/// A connection of the cache's own (a refresher's or the keeper's), named `application_name`,
/// that notices a dead peer within seconds (connect timeout, keepalives, TCP user timeout)
/// instead of the operating system's hours: a reader waiting for a round, or the keeper
/// waiting for a notification, then fails over instead of hanging.
fn connect(url: &str, application_name: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url.parse().map_err(|e| StoreError::caused("the PostgreSQL URL", e))?;
    config
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10));
    config.connect(NoTls).map_err(|e| StoreError::caused("connecting to PostgreSQL", e))
}

/// One round: the current epoch and the tenants stamped after `since` (with their stamp),
/// from one snapshot.
fn run_round(c: &mut Client, round: &Statement, since: i64) -> Result<(i64, Vec<Changed>), StoreError> {
    let rows = c.query(round, &[&since])?;
    let now: i64 = rows.first().ok_or_else(|| StoreError::internal("the tenant_epoch row is missing"))?.get(6);
    let mut changed = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.get::<_, Option<&str>>(0).is_some() {
            let state = super::tenant_row(row)?;
            let removed: bool = row.get(8);
            changed.push((row.get::<_, i64>(7), state.id.clone(), (!removed).then_some(state)));
        }
    }
    Ok((now, changed))
}

/// Holds this replica's lease until the cache is dropped, re-establishing it after a
/// failure (reads go through rounds meanwhile).
fn keeper(shared: &Shared, url: &str) {
    let mut lease = Lease::default();
    // The lease row, kept across reconnections: its `applied` stays true of this cache,
    // which only moves forward, and reusing it spares commits the wait for an orphan to lapse.
    let mut row = None;
    let mut pause = Duration::from_millis(50);
    while !shared.stopped() {
        let began = Instant::now();
        if let Err(e) = keep(shared, url, &mut lease, &mut row) {
            shared.set_lease(None);
            lease.lost();
            if began.elapsed() > Duration::from_secs(10) {
                // A connection that lasted: this failure starts a new series of retries.
                pause = Duration::from_millis(50);
            }
            tracing::warn!(cause = %e.chain(), "tenant cache lease lost; manifest reads are validated per round trip until it is back");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// One connection's life of the keeper: registers a lease row, then, after every announced
/// change, runs a round and confirms the epoch it applied, and every [`RENEW_EVERY`] renews
/// the lease with it. Returns `Ok` when the cache was dropped (after deleting its row, so
/// commits need not wait for it to lapse).
///
/// Confirmations are committed asynchronously (`synchronous_commit = off`): one lost in a
/// database crash only makes `applied` go back, so commits wait longer. Renewals are
/// durable before the replica trusts them: a lease the database forgot must never be
/// trusted by the replica.
fn keep(shared: &Shared, url: &str, lease: &mut Lease, row: &mut Option<i64>) -> Result<(), StoreError> {
    // Named, so an operator (or a test) can tell the keeper's session apart.
    let mut c = connect(url, KEEPER_APPLICATION_NAME)?;
    let round = c.prepare(ROUND)?;
    let renew = c.prepare(concat!(
        "UPDATE replica_leases SET applied = $2, lease_until = ",
        db_now_ms!(),
        " + $3 WHERE id = $1"
    ))?;
    let confirm = c.prepare("UPDATE replica_leases SET applied = $2 WHERE id = $1")?;
    c.batch_execute("LISTEN edgegen_epoch; SET synchronous_commit = off")?;
    let mut renewed = Instant::now();
    // The row this keeper held before a reconnection, if it is still there; else a new one.
    // Either way `applied` is what the cache holds now (it only moves forward).
    let id = match *row {
        Some(id) if c.execute(&renew, &[&id, &shared.since(), &LEASE_MS])? == 1 => id,
        _ => {
            let sql = concat!(
                "INSERT INTO replica_leases (applied, lease_until) VALUES ($1, ",
                db_now_ms!(),
                " + $2) RETURNING id"
            );
            let id: i64 = c.query_one(sql, &[&shared.since(), &LEASE_MS])?.get(0);
            *row = Some(id);
            id
        }
    };
    // The registration is never trusted (nor committed durably): the round that follows it is.
    let _ = lease.renewed(renewed, Instant::now());
    let mut trusted = false;
    // Rows of replicas gone for an hour.
    c.execute(concat!("DELETE FROM replica_leases WHERE lease_until < ", db_now_ms!(), " - 3600000"), &[])?;
    loop {
        let (now, changed) = run_round(&mut c, &round, shared.since())?;
        let applied = shared.apply(now, changed);
        let written = if !trusted || renewed.elapsed() >= RENEW_EVERY {
            let sent = Instant::now();
            let mut tx = c.transaction()?;
            tx.execute("SET LOCAL synchronous_commit = on", &[])?;
            let written = tx.execute(&renew, &[&id, &applied, &LEASE_MS])?;
            tx.commit()?;
            let until = lease.renewed(sent, Instant::now());
            shared.set_lease(until);
            (renewed, trusted) = (sent, until.is_some());
            written
        } else {
            c.execute(&confirm, &[&id, &applied])?
        };
        if written != 1 {
            return Err(StoreError::internal("this replica's lease row vanished"));
        }
        if shared.stopped() {
            shared.set_lease(None);
            let _ = c.execute("DELETE FROM replica_leases WHERE id = $1", &[&id]);
            return Ok(());
        }
        if !trusted {
            // Re-established after a gap: the next round, after it, makes it trusted.
            continue;
        }
        let mut announced = c.notifications();
        let _ = announced.timeout_iter(RENEW_EVERY.saturating_sub(renewed.elapsed())).next()?;
        while announced.iter().next()?.is_some() {}
    }
}

/// Before answering that a change is already in place (a repeated request, a replayed
/// release): fences every change committed so far, so the one found among them too.
///
/// # Errors
/// As [`fence`].
pub(super) fn fence_current(c: &mut Client) -> Result<(), StoreError> {
    let epoch: i64 = c.query_one("SELECT n FROM tenant_epoch", &[])?.get(0);
    fence(c, epoch)
}

/// Called after a transaction that stamped tenants with `epoch` committed, before it is
/// acknowledged: waits until every replica whose lease the database holds has `epoch` in its
/// cache (the others serve nothing from memory). See the module header.
///
/// # Errors
/// When the database fails, or a replica holds its lease without confirming `epoch` for
/// [`FENCE_WAIT`] (which a live keeper never does: every renewal reports a newer round).
pub(super) fn fence(c: &mut Client, epoch: i64) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let behind: i64 = c
            .query_one(
                concat!("SELECT COUNT(*) FROM replica_leases WHERE applied < $1 AND lease_until > ", db_now_ms!()),
                &[&epoch],
            )?
            .get(0);
        if behind == 0 {
            return Ok(());
        }
        if started.elapsed() > FENCE_WAIT {
            return Err(StoreError::internal(format!(
                "the change is committed (epoch {epoch}), but {behind} replica(s) holding a lease did not confirm it \
                 within {FENCE_WAIT:?}; their manifests may still be older"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::{LOCAL_LEASE, Lease, Rounds, Waiting};
    use std::time::{Duration, Instant};

    #[test]
    fn a_lease_is_trusted_only_after_a_round_inside_an_unbroken_lease() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut lease = Lease::default();
        // Registration: the row exists, but no round has followed it yet.
        assert_eq!(lease.renewed(ms(0), ms(2)), None);
        // The round after it, then its renewal, inside the registration's lease: trusted.
        assert_eq!(lease.renewed(ms(10), ms(12)), Some(ms(10) + LOCAL_LEASE));
        assert_eq!(lease.renewed(ms(200), ms(205)), Some(ms(200) + LOCAL_LEASE));
        // A renewal that returned after the previous one stopped being trusted: the lease may
        // have lapsed in the database (and a commit been acknowledged without this replica),
        // so the round it reports proves nothing ...
        assert_eq!(lease.renewed(ms(1050), ms(1200)), None);
        // ... the next round, after the lease was re-established, does.
        assert_eq!(lease.renewed(ms(1210), ms(1215)), Some(ms(1210) + LOCAL_LEASE));
        // A lost connection forgets the row.
        lease.lost();
        assert_eq!(lease.renewed(ms(1300), ms(1301)), None);
    }

    #[test]
    fn a_finished_round_releases_exactly_the_readers_it_validates() {
        let mut w = Waiting::default();
        for (need, reader) in [(1, "a"), (2, "b"), (2, "c"), (3, "d")] {
            w.wait(need, reader);
        }
        // Round 2 finishes first (rounds overlap): it validates the readers of rounds 1 and 2.
        let mut first = w.release(2);
        first.sort_unstable();
        assert_eq!(first, ["a", "b", "c"]);
        assert!(w.release(1).is_empty(), "round 1, finishing late, has no one left to release");
        assert_eq!(w.release(3), ["d"]);
        assert!(w.release(4).is_empty());
    }

    #[test]
    fn a_reader_never_joins_a_round_that_started_before_it_arrived() {
        let mut r = Rounds::default();
        assert_eq!(r.start(), None, "no reader, no round");
        let a = r.arrive();
        let b = r.arrive();
        assert_eq!((a, b), (1, 1), "readers before a round share it");
        assert_eq!(r.start(), Some(1));
        // Round 1 runs: a reader arriving now needs round 2.
        let c = r.arrive();
        assert_eq!(c, 2);
        assert_eq!(r.start(), Some(2));
        assert_eq!(r.start(), None, "nobody waits for round 3");
    }

    proptest::proptest! {
        /// For all interleavings of arrivals and round starts, each reader needs a round
        /// numbered after every round started before it arrived, and the refresher keeps
        /// starting rounds until every reader's round has started.
        #[test]
        fn every_reader_waits_for_a_later_round(steps in proptest::collection::vec(proptest::bool::ANY, 0..200)) {
            let mut r = Rounds::default();
            let mut needs = Vec::new();
            for arrive in steps {
                if arrive {
                    let started_before = r.started;
                    let need = r.arrive();
                    proptest::prop_assert!(need > started_before);
                    needs.push(need);
                } else {
                    let _ = r.start();
                }
            }
            while r.start().is_some() {}
            for need in needs {
                proptest::prop_assert!(r.started >= need, "round {need} never started");
            }
        }
    }
}
