//! Each replica's copy of the tenants' current state (the manifest path), validated against
//! the database before every read, with one round trip shared by all concurrent readers.
//!
//! **Why a read is never older than an acknowledged commit.** Every transaction that
//! changes a tenant bumps the one-row `tenant_epoch` and stamps the tenants it changed with
//! the new value ([`super::bump_epoch`]); the row stays locked until that transaction ends,
//! so epochs are handed out in commit order, and a snapshot that reads epoch `N` sees
//! exactly the changes stamped `1..=N`. A *round* is one statement, one snapshot:
//! `tenant_epoch` joined with the tenants stamped after `since`, the epoch up to which the
//! cache holds every change; applying it brings every tenant to at least the snapshot's
//! state (changes stamped up to `since` were held already, the rest the round returned),
//! after which the cache holds every change up to the snapshot's epoch. A reader waits for a round that
//! *started after the reader arrived* ([`Rounds`]), so if a commit was acknowledged to
//! anyone before the reader arrived — on any replica — that round's snapshot includes it.
//! Rounds are shared: readers arriving while a round runs all wait for the next one, so
//! the database sees one cheap query per round, not one per request. Up to [`REFRESHERS`]
//! rounds overlap (each on its own connection), so a reader never queues behind more than
//! the round trip its own round takes; rounds may finish out of order, so each cached state
//! keeps the epoch it was stamped with and is only replaced by a newer one, and a reader is
//! released by any finished round numbered at or after the one it needs (it also started
//! after the reader arrived). A failed round fails its readers (the cache is not served
//! unvalidated).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use edgegen_shared::TenantId;
use postgres::{Client, NoTls, Statement};
use tokio::sync::oneshot;

use crate::domain::TenantState;
use crate::store::StoreError;

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
}

/// The cache and its refresher thread (stopped on drop).
pub(super) struct TenantCache {
    shared: Arc<Shared>,
}

impl TenantCache {
    /// Starts the refresher thread, which keeps its own connection to `url`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub(super) fn start(url: &str) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            gate: Mutex::new(Gate::default()),
            wake: Condvar::new(),
            // -1: nothing loaded yet (stored epochs start at 0).
            map: RwLock::new(Map { complete_to: -1, states: HashMap::new() }),
        });
        for n in 0..REFRESHERS {
            let (thread_shared, url) = (Arc::clone(&shared), url.to_owned());
            std::thread::Builder::new()
                .name(format!("edgegen-tenant-cache-{n}"))
                .spawn(move || refresher(&thread_shared, &url))
                .map_err(|e| StoreError::caused("starting the tenant cache", e))?;
        }
        Ok(TenantCache { shared })
    }

    /// The state of each of `ids` that exists, as of a snapshot taken after this call
    /// began.
    ///
    /// # Errors
    /// When that round failed (the database is unreachable).
    pub(super) async fn tenants(&self, ids: &[TenantId]) -> Result<Vec<TenantState>, StoreError> {
        self.validated().await?;
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
        let since = shared.map.read().unwrap_or_else(|p| p.into_inner()).complete_to;
        let outcome = match refresh(&mut client, url, since) {
            Ok((now, changed)) => {
                let mut map = shared.map.write().unwrap_or_else(|p| p.into_inner());
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

/// One round: the current epoch and the tenants stamped after `since` (with their stamp),
/// from one snapshot.
fn refresh(client: &mut Option<(Client, Statement)>, url: &str, since: i64) -> Result<(i64, Vec<Changed>), StoreError> {
    let (c, round) = match client {
        Some(open) => open,
        None => {
            let mut c = Client::connect(url, NoTls).map_err(|e| StoreError::caused("connecting to PostgreSQL", e))?;
            let round = c.prepare(ROUND)?;
            client.insert((c, round))
        }
    };
    let rows = c.query(&*round, &[&since])?;
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

#[cfg(test)]
mod tests {
    use super::{Rounds, Waiting};

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
