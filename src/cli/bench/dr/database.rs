//! Direct reads of a region's PostgreSQL database (its `postgres_url`): the region's role,
//! its log head, the standby's applied position, the replicated checkpoints with their times,
//! and the commit time of the transaction that wrote each checkpoint. The only write is the
//! server setting `track_commit_timestamp` (for those commit times). The schema is
//! `engine/migrations/` (V1: `log_head`, `checkpoints`; V3: `region_role`, `region_state`,
//! `checkpoints.replicated_at`).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::super::super::Failure;

/// Pause between two reads of a standby's applied position while waiting for it.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);

/// One replicated checkpoint of a standby, its times in ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicated {
    /// Its log position.
    pub position: u64,
    /// When the source region's leader committed it (`recorded_at`: its clock, read right
    /// before its commit).
    pub recorded_at: i64,
    /// When the standby's replicator applied it (`replicated_at`: its clock, read right
    /// before the apply transaction).
    pub replicated_at: i64,
}

/// One connection to a region's database.
pub struct Database {
    client: Client,
    url: String,
    connection: tokio::task::JoinHandle<()>,
}

impl Database {
    /// Connects to `url`.
    ///
    /// Errors: the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Database, Failure> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|error| Failure::system(format!("cannot connect to {url}: {error}")))?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "dr bench database connection ended");
            }
        });
        Ok(Database {
            client,
            url: url.to_string(),
            connection,
        })
    }

    /// The region's role as its store records it: `active`, `standby` or `fenced`.
    ///
    /// Errors: the query fails.
    pub async fn role(&self) -> Result<String, Failure> {
        let row = self
            .client
            .query_one("SELECT region_role FROM log_head", &[])
            .await
            .map_err(|error| self.error("reading the region role", &error))?;
        Ok(row.get(0))
    }

    /// The last log position of the region (`log_head.last`).
    ///
    /// Errors: the query fails.
    pub async fn latest_position(&self) -> Result<u64, Failure> {
        let row = self
            .client
            .query_one("SELECT last FROM log_head", &[])
            .await
            .map_err(|error| self.error("reading the log head", &error))?;
        Ok(unsigned(row.get(0)))
    }

    /// Asks the server to record commit times (`ALTER SYSTEM SET track_commit_timestamp =
    /// on`), which takes effect when it restarts.
    ///
    /// Errors: the statement fails (e.g. the user is no superuser).
    pub async fn enable_commit_timestamps(&self) -> Result<(), Failure> {
        self.client
            .batch_execute("ALTER SYSTEM SET track_commit_timestamp = on")
            .await
            .map_err(|error| self.error("setting track_commit_timestamp", &error))
    }

    /// Whether the server records commit times now (`track_commit_timestamp`).
    ///
    /// Errors: the query fails.
    pub async fn commit_timestamps(&self) -> Result<bool, Failure> {
        let row = self
            .client
            .query_one("SHOW track_commit_timestamp", &[])
            .await
            .map_err(|error| self.error("reading track_commit_timestamp", &error))?;
        Ok(row.get::<_, String>(0) == "on")
    }

    /// For positions `after + 1 ..= to` in order: the commit time of the transaction that
    /// wrote the checkpoint there (`pg_xact_commit_timestamp(xmin)`: when its commit record
    /// was written, just before the WAL flush), in whole ms since the Unix epoch (truncated,
    /// like the store's times); `None` when the server did not record it.
    ///
    /// Errors: the query fails or a position of the range is missing.
    pub async fn commit_times(&self, after: u64, to: u64) -> Result<Vec<Option<i64>>, Failure> {
        let rows = self
            .client
            .query(
                "SELECT position,
                     floor(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::bigint
                 FROM checkpoints WHERE position > $1 AND position <= $2 ORDER BY position",
                &[&signed(after), &signed(to)],
            )
            .await
            .map_err(|error| self.error("reading the checkpoints' commit times", &error))?;
        let positions: Vec<u64> = rows.iter().map(|row| unsigned(row.get(0))).collect();
        if !positions.iter().copied().eq(after + 1..=to) {
            return Err(Failure::system(format!(
                "{}: expected every checkpoint of positions {}..={to}, found {} of them",
                self.url,
                after + 1,
                positions.len()
            )));
        }
        Ok(rows.iter().map(|row| row.get(1)).collect())
    }

    /// The last position a standby applied (`region_state.applied_position`).
    ///
    /// Errors: the query fails.
    pub async fn applied_position(&self) -> Result<u64, Failure> {
        let row = self
            .client
            .query_one("SELECT applied_position FROM region_state", &[])
            .await
            .map_err(|error| self.error("reading the applied position", &error))?;
        Ok(unsigned(row.get(0)))
    }

    /// Waits until a standby applied `position`, reading every 10 ms.
    ///
    /// Errors: it did not within `timeout` (the error says where it stands), or a read fails.
    pub async fn wait_applied(&self, position: u64, timeout: Duration) -> Result<(), Failure> {
        let started = Instant::now();
        loop {
            let applied = self.applied_position().await?;
            if applied >= position {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(Failure::system(format!(
                    "{}: expected the standby to apply position {position} within {} s, found it at {applied}",
                    self.url,
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }

    /// The checkpoints at positions `after + 1 ..= to`, in order, with their times.
    ///
    /// Errors: the query fails, a position of the range is missing, or a checkpoint has no
    /// `replicated_at` (this region wrote it itself: it is no standby).
    pub async fn replicated(&self, after: u64, to: u64) -> Result<Vec<Replicated>, Failure> {
        let rows = self
            .client
            .query(
                "SELECT position, recorded_at, replicated_at FROM checkpoints
                 WHERE position > $1 AND position <= $2 ORDER BY position",
                &[&signed(after), &signed(to)],
            )
            .await
            .map_err(|error| self.error("reading the replicated checkpoints", &error))?;
        let mut replicated = Vec::with_capacity(rows.len());
        for (expected, row) in (after + 1..).zip(&rows) {
            let position = unsigned(row.get(0));
            if position != expected {
                return Err(Failure::system(format!(
                    "{}: expected checkpoint {expected} in positions {}..={to}, found {position} next",
                    self.url,
                    after + 1
                )));
            }
            let Some(replicated_at) = row.get::<_, Option<i64>>(2) else {
                return Err(Failure::system(format!(
                    "{}: expected checkpoint {position} to carry replicated_at (applied by replication), found NULL (written by this region itself)",
                    self.url
                )));
            };
            replicated.push(Replicated {
                position,
                recorded_at: row.get(1),
                replicated_at,
            });
        }
        if replicated.len() as u64 != to.saturating_sub(after) {
            return Err(Failure::system(format!(
                "{}: expected {} checkpoints in positions {}..={to}, found {}",
                self.url,
                to.saturating_sub(after),
                after + 1,
                replicated.len()
            )));
        }
        Ok(replicated)
    }

    fn error(&self, doing: &str, error: &tokio_postgres::Error) -> Failure {
        Failure::system(format!("{}: {doing}: {error}", self.url))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A `bigint` position as read (never negative: the schema checks it).
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A position as a `bigint` parameter.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
