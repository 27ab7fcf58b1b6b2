//! Damaged and foreign files: each must be refused with `Corrupt` (or `SchemaTooNew`) naming
//! the file and what was expected and found, never a panic, and left as it was.

use std::fs;
use std::path::{Path, PathBuf};

use super::SqliteStore;
use super::schema::SCHEMA_VERSION;
use crate::checkpoint::{Event, RunId};
use crate::store::suite;
use crate::store::{CheckpointStore, StoreError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A closed store at `dir/tandem.db` holding one run with `checkpoints` checkpoints after
/// its `run_created` (its WAL folded into the file at close).
fn store_with_data(dir: &Path, checkpoints: u32) -> (PathBuf, RunId) {
    let path = dir.join("tandem.db");
    let store = SqliteStore::open(&path).unwrap();
    let runtime = runtime();
    let (run_id, epoch) = runtime.block_on(suite::new_run(&store, "damage", 1));
    let events: Vec<Event> = (1..=checkpoints)
        .map(|attempt| suite::started(0, attempt))
        .collect();
    runtime.block_on(suite::append_ok(
        &store,
        epoch,
        suite::batch(run_id, &events),
    ));
    drop(store);
    assert!(
        !wal_path(&path).exists(),
        "closing the last connection folds the WAL into the file"
    );
    (path, run_id)
}

fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Asserts `result` is `Corrupt` for `path` with a detail containing every one of `needles`.
fn assert_corrupt<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    path: &Path,
    needles: &[&str],
) {
    match result {
        Err(StoreError::Corrupt { location, detail }) => {
            assert_eq!(location, path.display().to_string());
            for needle in needles {
                assert!(detail.contains(needle), "expected `{needle}` in: {detail}");
            }
        }
        other => panic!("expected Corrupt for {}, found {other:?}", path.display()),
    }
}

fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

#[test]
fn a_file_of_garbage_is_corrupt_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let garbage = pseudo_random_bytes(8192, 7);
    fs::write(&path, &garbage).unwrap();
    assert_corrupt(
        SqliteStore::open(&path),
        &path,
        &[
            "expected a SQLite database",
            "found a file starting with the bytes",
        ],
    );
    assert_corrupt(
        SqliteStore::open_existing(&path),
        &path,
        &["expected a SQLite database"],
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        garbage,
        "the file is left as it was"
    );

    fs::write(&path, "name: not a store\n").unwrap();
    assert_corrupt(
        SqliteStore::open(&path),
        &path,
        &["found a file starting with `name: not a stor`"],
    );
}

#[test]
fn a_file_shorter_than_the_sqlite_header_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    fs::write(&path, b"SQLite fo").unwrap();
    assert_corrupt(
        SqliteStore::open(&path),
        &path,
        &["truncated", "found a file of 9 bytes"],
    );

    let (store_path, _) = store_with_data(&dir.path().join("real"), 10);
    let bytes = fs::read(&store_path).unwrap();
    fs::write(&path, &bytes[..60]).unwrap();
    assert_corrupt(
        SqliteStore::open(&path),
        &path,
        &["truncated", "100-byte SQLite header"],
    );
}

#[test]
fn a_truncated_store_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = store_with_data(dir.path(), 3000);
    let len = fs::metadata(&path).unwrap().len();
    assert!(len > 4 * 4096, "the store spans many pages ({len} bytes)");
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    assert_corrupt(
        SqliteStore::open(&path),
        &path,
        &["truncated", &format!("found a file of {} bytes", len / 2)],
    );
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        len / 2,
        "nothing written"
    );
}

#[test]
fn garbled_pages_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run_id) = store_with_data(dir.path(), 3000);
    let mut bytes = fs::read(&path).unwrap();
    // Keep page 1 (header and catalog), garble every other page.
    let page_size = 4096;
    let garbage = pseudo_random_bytes(bytes.len() - page_size, 11);
    bytes[page_size..].copy_from_slice(&garbage);
    fs::write(&path, &bytes).unwrap();

    // The damage is found at open, or at the latest by a read that touches it.
    let outcome = SqliteStore::open(&path).and_then(|store| {
        let runtime = runtime();
        runtime.block_on(async {
            store.latest_position().await?;
            store.read_log(0, usize::MAX).await?;
            store.read_run(run_id).await?;
            store.list_runs(&Default::default()).await
        })
    });
    assert_corrupt(outcome, &path, &[]);
}

#[test]
fn a_zero_length_file_becomes_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    for (name, existing) in [("a.db", false), ("b.db", true)] {
        let path = dir.path().join(name);
        fs::File::create(&path).unwrap();
        let store = if existing {
            SqliteStore::open_existing(&path).unwrap()
        } else {
            SqliteStore::open(&path).unwrap()
        };
        assert_eq!(runtime.block_on(suite::latest(&store)), 0);
        let (run_id, _) = runtime.block_on(suite::new_run(&store, "from-empty", 1));
        assert_eq!(runtime.block_on(store.read_run(run_id)).unwrap().len(), 1);
    }
}

#[test]
fn another_applications_database_is_corrupt_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             CREATE TABLE orders (id INTEGER PRIMARY KEY);
             INSERT INTO users (name) VALUES ('ada');",
        )
        .unwrap();
    drop(connection);
    assert_corrupt(
        SqliteStore::open(&path),
        &path,
        &[
            "expected a Tandem state store",
            "another application",
            "tables: orders, users",
        ],
    );
    let connection = rusqlite::Connection::open(&path).unwrap();
    let name: String = connection
        .query_row("SELECT name FROM users", [], |row| row.get(0))
        .unwrap();
    assert_eq!(name, "ada", "the other application's data is untouched");
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 2, "no table was added");

    let tagged = dir.path().join("tagged.db");
    let connection = rusqlite::Connection::open(&tagged).unwrap();
    connection
        .pragma_update(None, "application_id", 0x0f0f_0f0f)
        .unwrap();
    drop(connection);
    assert_corrupt(
        SqliteStore::open(&tagged),
        &tagged,
        &["application_id 0x0f0f0f0f", "tables: none"],
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = store_with_data(dir.path(), 1);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(connection);
    let error = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaTooNew {
            location: path.display().to_string(),
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION,
        }
    );
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1, "the newer store is left alone");
}

#[test]
fn a_store_missing_a_table_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = store_with_data(dir.path(), 1);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("PRAGMA foreign_keys = OFF; DROP TABLE runs;")
        .unwrap();
    drop(connection);
    assert_corrupt(SqliteStore::open(&path), &path, &["missing: runs"]);
}

#[test]
fn a_payload_that_does_not_decode_is_corrupt_naming_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run_id) = store_with_data(dir.path(), 3);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute(
            "UPDATE checkpoints SET payload = '{\"type\":\"nope\"}' WHERE position = 3",
            [],
        )
        .unwrap();
    drop(connection);
    let store = SqliteStore::open(&path).unwrap();
    let runtime = runtime();
    assert_corrupt(
        runtime.block_on(store.read_log(0, 100)),
        &path,
        &[
            "the checkpoint at position 3",
            "does not decode",
            "unknown variant `nope`",
        ],
    );
    assert_corrupt(
        runtime.block_on(store.read_run(run_id)),
        &path,
        &["position 3"],
    );
    assert_eq!(
        runtime.block_on(store.read_log(0, 2)).unwrap().len(),
        2,
        "rows before it still read"
    );
    assert_eq!(runtime.block_on(suite::latest(&store)), 4);
    drop(store);

    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute(
            "UPDATE checkpoints SET kind = 'run_finished' WHERE position = 2",
            [],
        )
        .unwrap();
    drop(connection);
    let store = SqliteStore::open(&path).unwrap();
    assert_corrupt(
        runtime.block_on(store.read_log(0, 2)),
        &path,
        &[
            "position 2",
            "column kind says `run_finished` but the payload is an event of kind `attempt_started`",
        ],
    );
}
