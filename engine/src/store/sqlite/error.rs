//! Maps SQLite's errors to [`StoreError`]s that say what was being done, where, and why.

use rusqlite::ErrorCode;

use super::Context;
use crate::store::StoreError;

/// Maps `error`, raised while `doing` (`appending checkpoints`), to a [`StoreError`]:
/// damage (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) to [`StoreError::Corrupt`], everything else
/// (`SQLITE_BUSY`/`SQLITE_LOCKED` past the busy timeout, I/O errors, a full disk, ...) to
/// [`StoreError::Backend`] with SQLite's message.
pub(super) fn sql(context: &Context, doing: &str, error: rusqlite::Error) -> StoreError {
    let location = context.location.clone();
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            location,
            detail: format!(
                "{doing}: expected a well-formed SQLite database, SQLite found a damaged one: {error}"
            ),
        },
        Some(ErrorCode::NotADatabase) => StoreError::Corrupt {
            location,
            detail: format!(
                "{doing}: expected a SQLite database (a Tandem state store), found a file SQLite cannot read: {error}"
            ),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Backend {
            location,
            detail: format!(
                "{doing}: the database stayed locked by another connection or process for longer than the busy timeout ({} ms): {error}",
                context.busy_timeout.as_millis()
            ),
        },
        Some(ErrorCode::DiskFull) => StoreError::Backend {
            location,
            detail: format!("{doing}: the disk is full: {error}"),
        },
        Some(ErrorCode::SystemIoFailure) => StoreError::Backend {
            location,
            detail: format!("{doing}: I/O error: {error}"),
        },
        _ => StoreError::Backend {
            location,
            detail: format!("{doing}: {error}"),
        },
    }
}

/// A [`StoreError::Corrupt`] for content that SQLite read fine but Tandem cannot decode.
pub(super) fn corrupt(context: &Context, detail: String) -> StoreError {
    StoreError::Corrupt {
        location: context.location.clone(),
        detail,
    }
}
