//! The layout of the SQLite file and its migrations.
//!
//! A Tandem store is recognized by SQLite's `application_id` header field
//! ([`APPLICATION_ID`]); its schema version is `user_version`. [`MIGRATIONS`] lists the
//! migrations in order: migration `i` (from 0) takes the schema from version `i` to `i + 1`.
//! At open, the missing ones are applied in one transaction together with the new version,
//! so a store is always at exactly one version; a version above [`SCHEMA_VERSION`] is refused
//! with [`StoreError::SchemaTooNew`].
//!
//! Version 1:
//! - `meta(key, value)`: store-wide counters; `next_epoch` is the next epoch to hand out.
//! - `runs`: one row per run (a projection of the log for listing, plus its owner), with
//!   `created_position`, the position of its `run_created` checkpoint (creation order), and
//!   `run_key`, a compact integer key that checkpoints refer to (smaller rows and index than
//!   the 16-byte run id: appends are faster).
//! - `checkpoints`: the log. `position` is the row id, assigned at commit as the highest
//!   position plus one under SQLite's write lock, so positions start at 1 and have no gaps;
//!   rows are never deleted, so positions are never reused. `payload` is the event as JSON
//!   (serde), `kind` its type tag; index `(run_key, position)` serves reads of one run.
//!
//! Version 2 (a version 1 store is upgraded at open; no data changes):
//! - `workflows`: the workflows registered with the store, one row per (name, version);
//!   `registration` (the row id) orders them, so the latest registered is the highest.
//! - `idempotency_keys`: the run each idempotency key created (`create_run_once`).
//! - Runs are listed in run id order (UUIDv7: creation order): indexes `(workflow, run_id)`
//!   and `(status, run_id)` replace `(workflow, created_position)`.
//!
//! Version 3 (a version 2 store is upgraded at open; no data changes):
//! - `meta` row `leader_epoch`: the highest leader epoch the store has seen (0: none), checked
//!   and raised by every write of a fenced handle (region fencing).
//! - `schedule_ticks`: the run each tick of a workflow's cron schedule started
//!   (`create_scheduled_run`), at most one per `(workflow, tick)`; `tick` is ms since the Unix
//!   epoch.

use rusqlite::{Connection, TransactionBehavior};

use super::Context;
use super::error::{corrupt, sql};
use crate::store::StoreError;

/// SQLite `application_id` of a Tandem store: the ASCII bytes `TAND`.
pub const APPLICATION_ID: i32 = 0x5441_4E44;

/// The migrations, in order; migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes and the newest it can read.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Tables the current version of the schema has; a store at that version missing one is damaged.
const REQUIRED_TABLES: &[&str] = &[
    "checkpoints",
    "idempotency_keys",
    "meta",
    "runs",
    "schedule_ticks",
    "workflows",
];

const V1: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('next_epoch', 1);

CREATE TABLE runs (
    run_key INTEGER PRIMARY KEY NOT NULL,
    run_id BLOB NOT NULL UNIQUE CHECK (length(run_id) = 16),
    workflow TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
    created_at INTEGER NOT NULL,
    created_position INTEGER NOT NULL UNIQUE,
    finished_at INTEGER,
    owner_epoch INTEGER NOT NULL,
    owner_host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start_ticks INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_by_workflow ON runs (workflow, created_position);

CREATE TABLE checkpoints (
    position INTEGER PRIMARY KEY NOT NULL,
    epoch INTEGER NOT NULL,
    run_key INTEGER NOT NULL REFERENCES runs (run_key),
    recorded_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
) STRICT;
CREATE INDEX checkpoints_by_run ON checkpoints (run_key, position);
";

const V2: &str = "
CREATE TABLE workflows (
    registration INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    file_name TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    UNIQUE (name, version)
) STRICT;
CREATE INDEX workflows_latest ON workflows (name, registration);

CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY NOT NULL,
    run_key INTEGER NOT NULL UNIQUE REFERENCES runs (run_key)
) STRICT;

DROP INDEX runs_by_workflow;
CREATE INDEX runs_by_workflow ON runs (workflow, run_id);
CREATE INDEX runs_by_status ON runs (status, run_id);
";

const V3: &str = "
INSERT INTO meta (key, value) VALUES ('leader_epoch', 0);

CREATE TABLE schedule_ticks (
    workflow TEXT NOT NULL,
    tick INTEGER NOT NULL,
    run_key INTEGER NOT NULL REFERENCES runs (run_key),
    PRIMARY KEY (workflow, tick)
) STRICT, WITHOUT ROWID;
";

/// What the file's header and catalog say.
#[derive(Debug)]
struct Found {
    application_id: i32,
    user_version: i64,
    tables: Vec<String>,
}

/// What opening must do to a file.
#[derive(Debug, PartialEq)]
enum Plan {
    /// At the current version.
    Ready,
    /// A Tandem store at an older version (0: a new, empty file).
    Migrate { from: u32 },
}

/// Brings the store to [`SCHEMA_VERSION`] (creating it in an empty file) and checks that it
/// is a Tandem store. Reads first without the write lock; only a file that needs migrating
/// takes it (and then re-checks, since another process may have migrated it meanwhile).
pub(super) fn migrate(context: &Context, connection: &mut Connection) -> Result<(), StoreError> {
    let found = {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|error| sql(context, "reading the schema", error))?;
        let found = inspect(context, &transaction)?;
        transaction
            .finish()
            .map_err(|error| sql(context, "reading the schema", error))?;
        found
    };
    if plan(context, &found)? == Plan::Ready {
        return verify(context, &found);
    }
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| sql(context, "migrating the schema", error))?;
    let found = inspect(context, &transaction)?;
    if let Plan::Migrate { from } = plan(context, &found)? {
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            transaction.execute_batch(migration).map_err(|error| {
                sql(
                    context,
                    &format!("migrating the schema from version {index} to {}", index + 1),
                    error,
                )
            })?;
        }
        transaction
            .pragma_update(None, "application_id", APPLICATION_ID)
            .and_then(|()| transaction.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|error| sql(context, "recording the schema version", error))?;
    }
    let found = inspect(context, &transaction)?;
    verify(context, &found)?;
    transaction
        .commit()
        .map_err(|error| sql(context, "committing the schema migration", error))
}

fn inspect(context: &Context, connection: &Connection) -> Result<Found, StoreError> {
    let application_id = connection
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|error| sql(context, "reading the application id", error))?;
    let user_version = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|error| sql(context, "reading the schema version", error))?;
    let tables = connection
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .map_err(|error| sql(context, "listing the tables", error))?;
    Ok(Found {
        application_id,
        user_version,
        tables,
    })
}

fn plan(context: &Context, found: &Found) -> Result<Plan, StoreError> {
    if found.application_id == APPLICATION_ID {
        return match u32::try_from(found.user_version) {
            Ok(version) if version == SCHEMA_VERSION => Ok(Plan::Ready),
            Ok(version) if version < SCHEMA_VERSION => Ok(Plan::Migrate { from: version }),
            Ok(version) => Err(StoreError::SchemaTooNew {
                location: context.location.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            }),
            Err(_) => Err(corrupt(
                context,
                format!(
                    "expected a schema version between 1 and {SCHEMA_VERSION}, found {}",
                    found.user_version
                ),
            )),
        };
    }
    if found.application_id == 0 && found.user_version == 0 && found.tables.is_empty() {
        return Ok(Plan::Migrate { from: 0 });
    }
    Err(corrupt(
        context,
        format!(
            "expected a Tandem state store (SQLite application_id {APPLICATION_ID:#010x}), found a SQLite database of another application (application_id {:#010x}, user_version {}, tables: {})",
            found.application_id,
            found.user_version,
            if found.tables.is_empty() {
                "none".to_string()
            } else {
                found.tables.join(", ")
            }
        ),
    ))
}

/// Checks that a store at the current version has every table.
fn verify(context: &Context, found: &Found) -> Result<(), StoreError> {
    let missing: Vec<&str> = REQUIRED_TABLES
        .iter()
        .copied()
        .filter(|table| !found.tables.iter().any(|name| name == table))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(corrupt(
        context,
        format!(
            "expected the tables {} of schema version {SCHEMA_VERSION}, found the tables [{}] (missing: {})",
            REQUIRED_TABLES.join(", "),
            found.tables.join(", "),
            missing.join(", ")
        ),
    ))
}
