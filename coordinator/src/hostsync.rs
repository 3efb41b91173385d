//! The I/O shell around [`crate::hostmap`]: reconciles one Fastly Config Store with a host
//! map through [`FastlyClient`] — read the store, compute the drift, write the repairs in
//! bulk, read it back to confirm. `edgegen sync hosts` calls it; so can anything else that
//! must bring the store in line with the tenants (it is idempotent: run it again after a
//! failure).

use crate::fastly::{CallError, FastlyClient};
use crate::hostmap::{self, Drift, HostMap, ItemOp};

/// What a reconciliation found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Every difference found before any change, ordered by host.
    pub drift: Vec<Drift>,
    /// Whether the repairs were written (and confirmed by reading the store back).
    pub repaired: bool,
}

/// Why a reconciliation did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The Fastly API failed (reading, or writing the repairs).
    #[error("Config Store {store}: {error}")]
    Api {
        /// The store id.
        store: String,
        /// The call that failed.
        error: CallError,
    },
    /// The repairs were accepted but the store still differs (a concurrent writer).
    #[error("Config Store {store} still differs after the repair for {}", hosts.join(", "))]
    StillDiffers {
        /// The store id.
        store: String,
        /// The hosts that still differ.
        hosts: Vec<String>,
    },
}

/// Makes `store` hold exactly `desired` (with `dry_run`, only reports the drift).
///
/// # Errors
/// [`SyncError`]; repairs written before a failure stay written.
pub async fn reconcile(
    client: &FastlyClient,
    store: &str,
    desired: &HostMap,
    dry_run: bool,
) -> Result<Reconciled, SyncError> {
    let api = |error| SyncError::Api { store: store.to_owned(), error };
    let drift = hostmap::drift(desired, &client.config_store_items(store).await.map_err(api)?);
    if dry_run || drift.is_empty() {
        return Ok(Reconciled { drift, repaired: false });
    }
    let ops: Vec<ItemOp> = drift.iter().map(Drift::repair).collect();
    client.config_store_bulk_update(store, &ops).await.map_err(api)?;
    let left = hostmap::drift(desired, &client.config_store_items(store).await.map_err(api)?);
    if !left.is_empty() {
        let hosts = left.iter().map(|d| d.host().to_owned()).collect();
        return Err(SyncError::StillDiffers { store: store.to_owned(), hosts });
    }
    Ok(Reconciled { drift, repaired: true })
}
