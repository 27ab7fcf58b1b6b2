//! The single-client commit latency of a PostgreSQL server: the floor a chain of dependent
//! steps cannot beat when each step needs one durable commit.

use std::time::Instant;

use tokio_postgres::{Client, NoTls};

use super::super::Failure;

/// Transactions run before the measured ones (connection and table warm-up).
const WARM_UP: usize = 20;

/// A connection that measures commit latency on one table of its own.
pub struct CommitProbe {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
    url: String,
}

impl CommitProbe {
    /// Connects to `url` (one connection), checks that commits are durable there
    /// (`fsync` and `synchronous_commit` both `on`) and creates the table `commit_probe`.
    ///
    /// Errors: the server cannot be reached, a setting is not `on` (the figure would not be
    /// a durable commit's), or the table cannot be created.
    pub async fn connect(url: &str) -> Result<CommitProbe, Failure> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|error| Failure::system(format!("cannot connect to {url}: {error}")))?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "commit probe connection ended");
            }
        });
        let probe = CommitProbe {
            client,
            connection,
            url: url.to_string(),
        };
        for setting in ["fsync", "synchronous_commit"] {
            let row = probe
                .client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .map_err(|error| probe.error(&format!("SHOW {setting}"), &error))?;
            let value: String = row.get(0);
            if value != "on" {
                return Err(Failure::system(format!(
                    "{}: expected {setting} = on (durable commits), found {value}",
                    probe.url
                )));
            }
        }
        probe
            .client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS commit_probe \
                 (id bigserial PRIMARY KEY, payload text NOT NULL)",
            )
            .await
            .map_err(|error| probe.error("creating table commit_probe", &error))?;
        Ok(probe)
    }

    /// Runs `count` transactions one after the other, each `BEGIN; INSERT` of one small row
    /// `; COMMIT` sent as one simple query (one round trip), after a few unmeasured ones, and
    /// returns each one's latency in ms (from sending to the reply of its `COMMIT`).
    ///
    /// Errors: a transaction fails (the error names it).
    pub async fn latencies_ms(&self, count: usize) -> Result<Vec<f64>, Failure> {
        let mut latencies = Vec::with_capacity(count);
        for index in 0..WARM_UP + count {
            let started = Instant::now();
            self.client
                .batch_execute("BEGIN; INSERT INTO commit_probe (payload) VALUES ('x'); COMMIT")
                .await
                .map_err(|error| self.error(&format!("commit {}", index + 1), &error))?;
            if index >= WARM_UP {
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(latencies)
    }

    fn error(&self, doing: &str, error: &tokio_postgres::Error) -> Failure {
        let detail = error
            .as_db_error()
            .map(|db| db.message().to_string())
            .unwrap_or_else(|| error.to_string());
        Failure::system(format!("commit probe on {}: {doing}: {detail}", self.url))
    }
}

impl Drop for CommitProbe {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_engine::testing::TempPostgres;

    #[tokio::test(flavor = "multi_thread")]
    async fn measures_each_durable_commit_and_stores_its_row() {
        let postgres = TempPostgres::start().await.expect("PostgreSQL starts");
        let url = postgres.create_database("probe").await.expect("database");
        let probe = CommitProbe::connect(&url).await.expect("connects");
        let latencies = probe.latencies_ms(5).await.expect("commits");
        assert_eq!(latencies.len(), 5);
        assert!(latencies.iter().all(|&ms| ms > 0.0), "{latencies:?}");
        let rows: i64 = probe
            .client
            .query_one("SELECT count(*) FROM commit_probe", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(rows, (WARM_UP + 5) as i64);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn refuses_a_server_without_synchronous_commit() {
        let postgres = TempPostgres::start().await.expect("PostgreSQL starts");
        let url = postgres.create_database("lazy").await.expect("database");
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connects");
        let connection = tokio::spawn(connection);
        client
            .batch_execute("ALTER DATABASE lazy SET synchronous_commit = off")
            .await
            .expect("alter");
        drop(client);
        let _ = connection.await;
        let error = CommitProbe::connect(&url).await.err().expect("refused");
        assert!(
            error.message.contains("expected synchronous_commit = on"),
            "{}",
            error.message
        );
    }
}
