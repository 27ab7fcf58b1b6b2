//! The region leader fence in SQLite: the `meta` row `leader_epoch`, read and raised inside
//! write transactions, which hold SQLite's write lock from their start (`BEGIN IMMEDIATE`), so
//! the check is serialized with every other write of every process.

use rusqlite::{Connection, OptionalExtension, Transaction};

use super::Context;
use super::error::{corrupt, sql};
use super::write::{begin, commit};
use crate::store::StoreError;
use crate::store::fence::{leader_epoch_column, leader_epoch_from, superseded};

/// Checks `epoch` (`None`: an unfenced handle, nothing to check) against the highest leader
/// epoch in `transaction` and raises the highest to it.
///
/// Errors: [`StoreError::Superseded`] when the highest is higher (nothing changed),
/// [`StoreError::InvalidAppend`] for an epoch above `i64::MAX`, [`StoreError::Corrupt`] for a
/// missing or negative `leader_epoch` row.
pub(super) fn check(
    context: &Context,
    transaction: &Transaction<'_>,
    epoch: Option<u64>,
) -> Result<(), StoreError> {
    let Some(epoch) = epoch else {
        return Ok(());
    };
    let column = leader_epoch_column(&context.location, epoch)?;
    let highest = highest(context, transaction)?;
    if epoch < highest {
        return Err(superseded(&context.location, epoch, highest));
    }
    if epoch > highest {
        transaction
            .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'leader_epoch'")
            .and_then(|mut statement| statement.execute([column]))
            .map_err(|error| sql(context, "raising the leader epoch", error))?;
    }
    Ok(())
}

/// See [`crate::store::CheckpointStore::raise_fence`] for a fenced handle carrying `epoch`.
pub(super) fn raise_fence(
    context: &Context,
    connection: &mut Connection,
    epoch: u64,
) -> Result<u64, StoreError> {
    let doing = "raising the leader epoch";
    let transaction = begin(context, connection, doing)?;
    check(context, &transaction, Some(epoch))?;
    commit(context, transaction, doing)?;
    Ok(epoch)
}

/// The highest leader epoch (see [`crate::store::CheckpointStore::leader_epoch`]), read on
/// `connection` (inside a write transaction, or on the reader connection).
pub(super) fn highest(context: &Context, connection: &Connection) -> Result<u64, StoreError> {
    let value: Option<i64> = connection
        .prepare_cached("SELECT value FROM meta WHERE key = 'leader_epoch'")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
        .map_err(|error| sql(context, "reading the leader epoch", error))?;
    let Some(value) = value else {
        return Err(corrupt(
            context,
            "expected the row `leader_epoch` in table meta, found none".into(),
        ));
    };
    leader_epoch_from("the row `leader_epoch` of table meta", value)
        .map_err(|detail| corrupt(context, detail))
}
