//! Maps tokio-postgres and pool errors to retryable failures or [`StoreError`]s that say what
//! was being done, where, and why.

use std::error::Error as _;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use super::Context;
use super::retry::Failure;
use crate::store::StoreError;

/// Maps `error`, raised while `doing` (`appending checkpoints`):
/// - connection failures (refused, lost, closed, timed out; SQLSTATE class 08), a server
///   shutting down or starting (57P01-57P03), too many connections (53300), serialization
///   failures and deadlocks (40001, 40P01; the transaction was rolled back) are transient;
/// - data exceptions (class 22, e.g. a NUL character in a text column) are
///   [`StoreError::InvalidAppend`]: PostgreSQL cannot store the value;
/// - everything else is [`StoreError::Backend`] with PostgreSQL's message and SQLSTATE.
pub(super) fn pg(context: &Context, doing: &str, error: tokio_postgres::Error) -> Failure {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let mut detail = format!("{doing}: {} (SQLSTATE {code})", db.message());
        if let Some(extra) = db.detail() {
            detail.push_str(&format!("; {extra}"));
        }
        if code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
            )
        {
            return Failure::Transient(detail);
        }
        if code.starts_with("22") {
            return Failure::Final(invalid(context, detail));
        }
        return Failure::Final(backend(context, detail));
    }
    let detail = match error.source() {
        Some(source) => format!("{doing}: {error}: {source}"),
        None => format!("{doing}: {error}"),
    };
    let connection_failed = error.is_closed()
        || error
            .source()
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
        // tokio-postgres's connect timeout has no source and no public kind.
        || error.to_string() == "timeout waiting for server";
    if connection_failed {
        Failure::Transient(detail)
    } else {
        Failure::Final(backend(context, detail))
    }
}

/// Maps a failure to get a pooled connection: a timeout or a connection that cannot be
/// opened is transient; a closed pool is final.
pub(super) fn pool(context: &Context, error: PoolError) -> Failure {
    match error {
        PoolError::Backend(error) => pg(context, "opening a connection", error),
        PoolError::Timeout(kind) => Failure::Transient(format!(
            "opening a connection: timed out ({kind:?}); is the server up and reachable?"
        )),
        other => Failure::Final(backend(
            context,
            format!("getting a connection from the pool: {other}"),
        )),
    }
}

/// Whether `error` is the unique violation of `constraint`.
pub(super) fn is_unique_violation(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && error
            .as_db_error()
            .and_then(|db| db.constraint())
            .is_some_and(|name| name == constraint)
}

pub(super) fn backend(context: &Context, detail: String) -> StoreError {
    StoreError::Backend {
        location: context.location.clone(),
        detail,
    }
}

pub(super) fn corrupt(context: &Context, detail: String) -> StoreError {
    StoreError::Corrupt {
        location: context.location.clone(),
        detail,
    }
}

pub(super) fn invalid(context: &Context, detail: String) -> StoreError {
    StoreError::InvalidAppend {
        location: context.location.clone(),
        detail,
    }
}
