//! How often a replica refreshes a PoP's `last_seen` row: at most once per
//! [`Refresh::every_ms`] per PoP, not on every ack batch. Every batch used to update the row of
//! each PoP in it: the same few rows, updated by every batch on every replica, serialised
//! the batches on their row locks and bloated the table the upsert searches.
//!
//! Liveness reads `last_seen >= now - live window`: a refresh interval of at most a tenth
//! of the window (and at most a second) makes a PoP look live for up to that much less of
//! the window, never longer. A PoP this replica has not written yet is always written (its
//! row is created); the time is recorded only after the batch committed, so a failed batch
//! leaves the next one due.

use std::collections::HashMap;
use std::sync::Mutex;

use edgegen_shared::PopId;

/// The per-replica record of when each PoP's `last_seen` was last written.
pub(super) struct Refresh {
    every_ms: u64,
    written: Mutex<HashMap<PopId, u64>>,
}

impl Refresh {
    /// For a live window of `live_window_ms`.
    pub(super) fn new(live_window_ms: u64) -> Self {
        Refresh { every_ms: (live_window_ms / 10).min(1000), written: Mutex::new(HashMap::new()) }
    }

    /// Whether a batch at `now` (Unix ms) should write `pop`'s `last_seen`.
    pub(super) fn due(&self, pop: &PopId, now: u64) -> bool {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.get(pop).is_none_or(|at| now.saturating_sub(*at) >= self.every_ms)
    }

    /// `pops` were written at `now` (their batch committed).
    pub(super) fn wrote<'a>(&self, pops: impl IntoIterator<Item = &'a PopId>, now: u64) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        for pop in pops {
            let at = written.entry(pop.clone()).or_insert(now);
            *at = (*at).max(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Refresh;
    use edgegen_shared::PopId;

    fn pop(name: &str) -> PopId {
        PopId::new(name.to_owned()).unwrap()
    }

    #[test]
    fn a_pop_is_written_first_then_once_per_interval() {
        let r = Refresh::new(30_000);
        let p1 = pop("p1");
        assert!(r.due(&p1, 5_000), "never written: its row may not exist");
        assert!(r.due(&p1, 5_000), "deciding claims nothing: a failed batch leaves it due");
        r.wrote([&p1], 5_000);
        assert!(!r.due(&p1, 5_999));
        assert!(r.due(&p1, 6_000), "one second later");
        assert!(r.due(&pop("p2"), 5_500), "each PoP has its own record");
        r.wrote([&p1], 4_000);
        assert!(r.due(&p1, 6_000), "an older write never moves the record back");
    }

    #[test]
    fn the_interval_is_a_tenth_of_a_short_live_window() {
        let r = Refresh::new(2_000);
        let p1 = pop("p1");
        r.wrote([&p1], 10_000);
        assert!(!r.due(&p1, 10_199));
        assert!(r.due(&p1, 10_200));
    }

    proptest::proptest! {
        /// For all sequences of batches, a PoP's stored `last_seen` (the last write) is never
        /// more than the interval behind its latest batch: it never looks dead sooner than
        /// the live window minus the interval.
        #[test]
        fn last_seen_lags_by_less_than_the_interval(gaps in proptest::collection::vec(0..3_000u64, 1..100)) {
            let r = Refresh::new(30_000);
            let p1 = pop("p1");
            let (mut now, mut stored) = (0, None);
            for gap in gaps {
                now += gap;
                if r.due(&p1, now) {
                    r.wrote([&p1], now);
                    stored = Some(now);
                }
                let stored = stored.expect("the first batch writes");
                proptest::prop_assert!(now - stored < 1_000, "last_seen {stored} at {now}");
            }
        }
    }
}
