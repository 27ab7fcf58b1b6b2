//! Region fencing: the leader epoch a store handle's writes carry, and the checks both
//! backends share (see the fencing section of [`crate::store`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// The leader epoch that every write of a store handle carries (region fencing): the
/// creation revision of the region's etcd leader key when this replica won the election.
/// 0 means "no leader election" (a standalone `tandem serve`).
///
/// Cheap to clone; all clones share one value, so the leadership task can [`set`] a new
/// epoch and every handle made with it (`PostgresStore::fenced`, `SqliteStore::fenced`)
/// carries it from its next write on.
///
/// [`set`]: LeaderFence::set
#[derive(Debug, Clone, Default)]
pub struct LeaderFence(Arc<AtomicU64>);

impl LeaderFence {
    /// A fence carrying `epoch`.
    pub fn new(epoch: u64) -> Self {
        LeaderFence(Arc::new(AtomicU64::new(epoch)))
    }

    /// Makes every clone carry `epoch` from their next write on.
    pub fn set(&self, epoch: u64) {
        self.0.store(epoch, Ordering::SeqCst);
    }

    /// The epoch the next write carries.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A leader epoch as a signed 64-bit SQL integer (both backends store it as one). `epoch` is
/// the epoch of a write to the store at `location`.
///
/// Errors: [`StoreError::InvalidAppend`] for an epoch above `i64::MAX` (etcd revisions never
/// are).
pub(crate) fn leader_epoch_column(location: &str, epoch: u64) -> Result<i64, StoreError> {
    i64::try_from(epoch).map_err(|_| StoreError::InvalidAppend {
        location: location.to_string(),
        detail: format!(
            "expected a leader epoch of at most {} (an etcd revision), found {epoch}",
            i64::MAX
        ),
    })
}

/// A stored highest leader epoch (column `leader_epoch` / meta row `leader_epoch`, described
/// by `at`) as a `u64`.
///
/// Errors: the detail of a [`StoreError::Corrupt`] for a negative value.
pub(crate) fn leader_epoch_from(at: &str, value: i64) -> Result<u64, String> {
    u64::try_from(value)
        .map_err(|_| format!("{at}: expected a non-negative leader epoch, found {value}"))
}

/// The refusal of a write carrying leader epoch `epoch` by the store at `location`, whose
/// highest leader epoch is `highest`.
pub(crate) fn superseded(location: &str, epoch: u64, highest: u64) -> StoreError {
    StoreError::Superseded {
        epoch,
        highest,
        location: location.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_epoch() {
        let fence = LeaderFence::new(7);
        let clone = fence.clone();
        assert_eq!(clone.get(), 7);
        fence.set(12);
        assert_eq!(clone.get(), 12, "a clone sees the new epoch");
        assert_eq!(
            LeaderFence::default().get(),
            0,
            "the default is no election"
        );
    }

    #[test]
    fn epochs_beyond_sql_integers_are_refused_and_negative_ones_are_damage() {
        assert_eq!(leader_epoch_column("db", 42), Ok(42));
        let error = leader_epoch_column("db", u64::MAX).unwrap_err();
        assert!(
            matches!(&error, StoreError::InvalidAppend { location, detail } if location == "db" && detail.contains(&u64::MAX.to_string())),
            "{error:?}"
        );
        assert_eq!(leader_epoch_from("log_head", 3), Ok(3));
        let detail = leader_epoch_from("log_head", -1).unwrap_err();
        assert!(
            detail.contains("log_head") && detail.contains("-1"),
            "{detail}"
        );
    }

    #[test]
    fn the_refusal_names_both_epochs_and_the_store() {
        let text = superseded("postgres://u@h:5432/d", 4, 9).to_string();
        assert_eq!(
            text,
            "write refused: leader epoch 4 is older than leader epoch 9, the newest this store (postgres://u@h:5432/d) has seen: another replica leads the region now"
        );
    }
}
