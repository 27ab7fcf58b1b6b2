//! A real `tandem serve` process over a private PostgreSQL, for integration tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tandem_engine::testing::TempPostgres;

/// A running `tandem serve` (killed on drop) with its state dir and database URL.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The PostgreSQL database it uses.
    pub database_url: String,
    /// Its state dir (attempt logs).
    pub state_dir: PathBuf,
    /// Its process.
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A fresh database on `postgres`, unique in this test process.
pub async fn fresh_database(postgres: &TempPostgres) -> String {
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    postgres
        .create_database(&name)
        .await
        .expect("create database")
}

impl Server {
    /// Starts `tandem serve` on a free port against `database_url` with `extra` args, and
    /// waits for its `listening on` line.
    pub fn start(database_url: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let state_dir = dir.path().join("state");
        let log = dir.path().join("serve.log");
        let (child, url) = spawn(
            dir.path(),
            &state_dir,
            &log,
            database_url,
            "127.0.0.1:0",
            extra,
        );
        Server {
            url,
            database_url: database_url.to_string(),
            state_dir,
            child,
            log,
            _dir: dir,
        }
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills this process and starts another on the same database and state dir (a new port).
    pub fn restart(&mut self, extra: &[&str]) {
        self.restart_on("127.0.0.1:0", extra);
    }

    /// Kills this process and starts another on the same database, state dir and port (so
    /// clients that know its address find it again).
    pub fn restart_same_port(&mut self, extra: &[&str]) {
        let listen = self.url.trim_start_matches("http://").to_string();
        self.restart_on(&listen, extra);
    }

    fn restart_on(&mut self, listen: &str, extra: &[&str]) {
        self.kill();
        let (child, url) = spawn(
            self._dir.path(),
            &self.state_dir,
            &self.log,
            &self.database_url,
            listen,
            extra,
        );
        self.child = child;
        self.url = url;
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `tandem serve` and returns it with its URL once it listens.
fn spawn(
    dir: &std::path::Path,
    state_dir: &std::path::Path,
    log: &std::path::Path,
    database_url: &str,
    listen: &str,
    extra: &[&str],
) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--listen", listen, "--region", "test"])
        .args(extra)
        .env("TANDEM_STATE_DIR", state_dir)
        .env("TANDEM_POSTGRES_URL", database_url)
        .env("TANDEM_LOG", "info")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start tandem serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("listening on ") {
                let address = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(address);
            }
        }
    });
    let address = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "tandem serve did not start; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    };
    (child, format!("http://{address}"))
}

/// Every checkpoint of run `run_id` in the database `database_url`, in log order, read with
/// a store of its own (as another process of the region would).
pub async fn checkpoints(
    database_url: &str,
    run_id: &str,
) -> Vec<tandem_engine::checkpoint::Checkpoint> {
    use tandem_engine::store::CheckpointStore;
    use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};
    let store = PostgresStore::connect(PostgresConfig::new(database_url))
        .await
        .expect("open the PostgreSQL store");
    let run_id = run_id.parse().expect("a run id");
    store.read_run(run_id).await.expect("read the run")
}
