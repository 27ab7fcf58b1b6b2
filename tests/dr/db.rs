//! A region's PostgreSQL tables read directly (tokio-postgres), as rows to compare between
//! regions: the log (`checkpoints`), `runs`, `idempotency_keys`, `workflows`,
//! `schedule_ticks`, the region's role (`log_head`, `region_state`) and the archived tails
//! (`dr_tail`).

use std::collections::{BTreeMap, HashMap};

use tandem_engine::checkpoint::{AttemptOutcome, Event};
use tokio_postgres::{NoTls, Row};

/// A connection to one region's database.
pub struct Db {
    client: tokio_postgres::Client,
    url: String,
}

/// One row of `checkpoints` (or the same columns of `dr_tail`); `payload` is the JSON text as
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointRow {
    pub position: i64,
    pub epoch: i64,
    pub run_id: String,
    pub recorded_at: i64,
    pub kind: String,
    pub payload: String,
}

impl CheckpointRow {
    fn of(row: &Row) -> CheckpointRow {
        CheckpointRow {
            position: row.get("position"),
            epoch: row.get("epoch"),
            run_id: row.get("run_id"),
            recorded_at: row.get("recorded_at"),
            kind: row.get("kind"),
            payload: row.get("payload"),
        }
    }

    /// The event the payload holds. Panics naming the position when it is not one.
    pub fn event(&self) -> Event {
        serde_json::from_str(&self.payload).unwrap_or_else(|error| {
            panic!(
                "checkpoint {} holds no event ({error}): {}",
                self.position, self.payload
            )
        })
    }

    /// The row without its position: what the checkpoint says, wherever it is in a log.
    pub fn content(&self) -> (i64, &str, i64, &str, &str) {
        (
            self.epoch,
            &self.run_id,
            self.recorded_at,
            &self.kind,
            &self.payload,
        )
    }
}

/// One row of `runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub run_id: String,
    pub workflow: String,
    pub version: String,
    pub status: String,
    pub created_at: i64,
    pub created_position: i64,
    pub finished_at: Option<i64>,
    pub owner_epoch: i64,
    pub owner_host: String,
    pub owner_pid: i64,
    pub owner_start_ticks: i64,
}

/// One row of `workflows` without its `registration` number (an identity of each database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRow {
    pub name: String,
    pub version: String,
    pub source: String,
    pub file_name: String,
    pub registered_at: i64,
}

/// The region's role and replication state (`log_head` and `region_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRow {
    pub role: String,
    pub region_epoch: i64,
    pub region: String,
    pub active_region: String,
    pub last_position: i64,
    pub applied_position: i64,
    pub promoted_at_position: Option<i64>,
    pub tail_from: Option<i64>,
    pub tail_to: Option<i64>,
}

/// One row of `dr_tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRow {
    pub region_epoch: i64,
    pub checkpoint: CheckpointRow,
    pub fork_position: i64,
    pub active_region: String,
}

impl Db {
    /// Connects to `url`. Panics naming it when it cannot.
    pub async fn connect(url: &str) -> Db {
        let with_timeout = format!("{url}?connect_timeout=10");
        let (client, connection) = tokio_postgres::connect(&with_timeout, NoTls)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
        tokio::spawn(async move {
            // Ends with the client; an error then is of no interest to the tests.
            let _ = connection.await;
        });
        Db {
            client,
            url: url.to_string(),
        }
    }

    async fn rows(&self, sql: &str) -> Vec<Row> {
        self.client
            .query(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql} on {}: {error}", self.url))
    }

    /// Every checkpoint, in log order.
    pub async fn checkpoints(&self) -> Vec<CheckpointRow> {
        self.rows(
            "SELECT position, epoch, run_id::text AS run_id, recorded_at, kind,
                payload::text AS payload
             FROM checkpoints ORDER BY position",
        )
        .await
        .iter()
        .map(CheckpointRow::of)
        .collect()
    }

    /// How many checkpoints have `replicated_at` set (applied from another region) and how
    /// many do not (written here).
    pub async fn replicated_counts(&self) -> (i64, i64) {
        let rows = self
            .rows(
                "SELECT count(replicated_at) AS replicated,
                    count(*) - count(replicated_at) AS own
                 FROM checkpoints",
            )
            .await;
        (rows[0].get("replicated"), rows[0].get("own"))
    }

    /// The positions after `after` of the checkpoints this region wrote itself (not applied
    /// from another region: `replicated_at` is null), in log order.
    pub async fn own_positions_after(&self, after: i64) -> Vec<i64> {
        self.client
            .query(
                "SELECT position FROM checkpoints
                 WHERE position > $1 AND replicated_at IS NULL ORDER BY position",
                &[&after],
            )
            .await
            .unwrap_or_else(|error| panic!("own checkpoints of {}: {error}", self.url))
            .iter()
            .map(|row| row.get("position"))
            .collect()
    }

    /// Every run, by run id.
    pub async fn runs(&self) -> Vec<RunRow> {
        self.rows(
            "SELECT run_id::text AS run_id, workflow, version, status, created_at,
                created_position, finished_at, owner_epoch, owner_host, owner_pid,
                owner_start_ticks
             FROM runs ORDER BY run_id",
        )
        .await
        .iter()
        .map(|row| RunRow {
            run_id: row.get("run_id"),
            workflow: row.get("workflow"),
            version: row.get("version"),
            status: row.get("status"),
            created_at: row.get("created_at"),
            created_position: row.get("created_position"),
            finished_at: row.get("finished_at"),
            owner_epoch: row.get("owner_epoch"),
            owner_host: row.get("owner_host"),
            owner_pid: row.get("owner_pid"),
            owner_start_ticks: row.get("owner_start_ticks"),
        })
        .collect()
    }

    /// Whether the region has run `run_id` (its `runs` row).
    pub async fn has_run(&self, run_id: &str) -> bool {
        let rows = self
            .client
            .query("SELECT 1 FROM runs WHERE run_id::text = $1", &[&run_id])
            .await
            .unwrap_or_else(|error| panic!("run {run_id} in {}: {error}", self.url));
        !rows.is_empty()
    }

    /// Every idempotency key and its run, by key.
    pub async fn idempotency_keys(&self) -> Vec<(String, String)> {
        self.rows(
            "SELECT idempotency_key, run_id::text AS run_id FROM idempotency_keys
             ORDER BY idempotency_key",
        )
        .await
        .iter()
        .map(|row| (row.get("idempotency_key"), row.get("run_id")))
        .collect()
    }

    /// Every workflow, in registration order.
    pub async fn workflows(&self) -> Vec<WorkflowRow> {
        self.rows(
            "SELECT name, version, source, file_name, registered_at FROM workflows
             ORDER BY registration",
        )
        .await
        .iter()
        .map(|row| WorkflowRow {
            name: row.get("name"),
            version: row.get("version"),
            source: row.get("source"),
            file_name: row.get("file_name"),
            registered_at: row.get("registered_at"),
        })
        .collect()
    }

    /// Every schedule tick: (workflow, tick, run id).
    pub async fn schedule_ticks(&self) -> Vec<(String, i64, String)> {
        self.rows(
            "SELECT workflow, tick, run_id::text AS run_id FROM schedule_ticks
             ORDER BY workflow, tick",
        )
        .await
        .iter()
        .map(|row| (row.get("workflow"), row.get("tick"), row.get("run_id")))
        .collect()
    }

    /// The region's role and replication state.
    pub async fn region(&self) -> RegionRow {
        let rows = self
            .rows(
                "SELECT h.region_role, h.region_epoch, h.last, s.region, s.active_region,
                    s.applied_position, s.promoted_at_position, s.tail_from, s.tail_to
                 FROM log_head h, region_state s",
            )
            .await;
        let row = &rows[0];
        RegionRow {
            role: row.get("region_role"),
            region_epoch: row.get("region_epoch"),
            region: row.get("region"),
            active_region: row.get("active_region"),
            last_position: row.get("last"),
            applied_position: row.get("applied_position"),
            promoted_at_position: row.get("promoted_at_position"),
            tail_from: row.get("tail_from"),
            tail_to: row.get("tail_to"),
        }
    }

    /// Every archived tail checkpoint, by region epoch and position.
    pub async fn dr_tail(&self) -> Vec<TailRow> {
        self.rows(
            "SELECT region_epoch, position, epoch, run_id::text AS run_id, recorded_at, kind,
                payload::text AS payload, fork_position, active_region
             FROM dr_tail ORDER BY region_epoch, position",
        )
        .await
        .iter()
        .map(|row| TailRow {
            region_epoch: row.get("region_epoch"),
            checkpoint: CheckpointRow::of(row),
            fork_position: row.get("fork_position"),
            active_region: row.get("active_region"),
        })
        .collect()
    }
}

/// The first place where `a` and `b` differ, as a line naming both sides; `None` when equal.
pub fn first_difference<T: std::fmt::Debug + PartialEq>(
    what: &str,
    a: &[T],
    b: &[T],
) -> Option<String> {
    if let Some(index) = a.iter().zip(b).position(|(x, y)| x != y) {
        return Some(format!(
            "{what}: first difference at index {index} of {} / {} rows:\n  {:?}\n  {:?}",
            a.len(),
            b.len(),
            a[index],
            b[index]
        ));
    }
    (a.len() != b.len()).then(|| {
        let longer = if a.len() > b.len() { a } else { b };
        format!(
            "{what}: one side has {} rows, the other {}; the first extra: {:?}",
            a.len(),
            b.len(),
            longer[a.len().min(b.len())]
        )
    })
}

/// Checks that `log`'s positions are 1..=N without a gap.
pub fn assert_contiguous(region: &str, log: &[CheckpointRow]) {
    for (index, row) in log.iter().enumerate() {
        assert_eq!(
            row.position,
            index as i64 + 1,
            "{region}'s log positions must be contiguous from 1"
        );
    }
}

/// Checks that no task that succeeded in `log` was started again afterwards, and that no
/// task has two succeeded attempts (the invariant of failovers and promotions).
pub fn assert_no_succeeded_task_ran_again(region: &str, log: &[CheckpointRow]) {
    // (run, task) -> position of its succeeded attempt's end.
    let mut succeeded: HashMap<(String, u32), i64> = HashMap::new();
    for row in log {
        match row.event() {
            Event::AttemptFinished {
                task,
                outcome: AttemptOutcome::Succeeded { .. },
                attempt,
                ..
            } => {
                if let Some(before) = succeeded.insert((row.run_id.clone(), task), row.position) {
                    panic!(
                        "{region}: run {} task {task} succeeded at position {before} and again (attempt {attempt}) at position {}",
                        row.run_id, row.position
                    );
                }
            }
            Event::AttemptStarted { task, attempt, .. } => {
                if let Some(at) = succeeded.get(&(row.run_id.clone(), task)) {
                    panic!(
                        "{region}: run {} task {task} succeeded at position {at} and was started again (attempt {attempt}) at position {}",
                        row.run_id, row.position
                    );
                }
            }
            _ => {}
        }
    }
}

/// How each run ended in `log`: run id → its `run_finished` state (`succeeded`, ...).
pub fn finished_runs(log: &[CheckpointRow]) -> BTreeMap<String, String> {
    log.iter()
        .filter_map(|row| match row.event() {
            Event::RunFinished { state, .. } => {
                let state = serde_json::to_value(state).unwrap_or_default();
                Some((
                    row.run_id.clone(),
                    state.as_str().unwrap_or_default().to_string(),
                ))
            }
            _ => None,
        })
        .collect()
}
