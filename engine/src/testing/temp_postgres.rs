//! [`TempPostgres`]: a private PostgreSQL server in a temp dir, on a free port.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, PoisonError};

use super::binaries::Tools;
use super::watchdog::Watchdog;

/// Errors of [`TempPostgres`]: each says what was being done and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum TempPostgresError {
    /// A PostgreSQL binary is not installed where it was looked for.
    #[error(
        "PostgreSQL binary `{name}` not found (looked in {searched}): install the PostgreSQL server (Debian: `apt-get install postgresql`) or set TANDEM_PG_BIN to the directory holding initdb, pg_ctl and postgres"
    )]
    BinaryNotFound {
        /// The binary (`initdb`, `pg_ctl`, `postgres`).
        name: String,
        /// The directories searched.
        searched: String,
    },
    /// A command exited with a failure.
    #[error("{doing}: `{command}` failed ({status}): {output}")]
    Command {
        /// What it was for.
        doing: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr (and the server log's tail, for a server that did not start).
        output: String,
    },
    /// A file system or process operation failed.
    #[error("{doing}: {error}")]
    Io {
        /// What was being done.
        doing: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// A SQL command on the server failed.
    #[error("{doing} on {url}: {error}")]
    Database {
        /// What was being done.
        doing: String,
        /// The server.
        url: String,
        /// PostgreSQL's error.
        error: String,
    },
    /// A database name that is not a plain identifier.
    #[error(
        "invalid database name `{name}`: expected 1 to 63 characters among a-z, 0-9 and _, starting with a letter"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
}

/// How [`TempPostgres::stop_server`] stops the server (`pg_ctl stop -m MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Clean shutdown: disconnect clients, checkpoint, exit (`-m fast`).
    Fast,
    /// Crash: every server process exits at once without a checkpoint; the next start runs
    /// crash recovery from the WAL (`-m immediate`).
    Immediate,
}

impl StopMode {
    fn flag(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// Settings of a [`TempPostgres`] server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempPostgresOptions {
    /// `max_connections`. Default 200 (many pools of many tests share one server).
    pub max_connections: u32,
    /// More `-c name=value` server settings (e.g. `shared_buffers`). The harness always sets
    /// `fsync=on` and `synchronous_commit=on`; a setting here overrides them.
    pub settings: Vec<(String, String)>,
}

impl Default for TempPostgresOptions {
    fn default() -> Self {
        TempPostgresOptions {
            max_connections: 200,
            settings: Vec::new(),
        }
    }
}

/// A private PostgreSQL server for tests and benchmarks: a fresh cluster (`initdb`, user
/// `postgres`, trust authentication, UTF-8) in a temp dir, listening on `127.0.0.1` on a
/// free port with its Unix socket in the temp dir, started with `pg_ctl`, durable commits
/// (`fsync=on`, `synchronous_commit=on`).
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`, blocking for up to a few
/// hundred ms) and removes the directory. If this process dies without dropping it (killed,
/// or the server lives in a `static`), a watchdog process does both within a second.
///
/// Binaries: see [`PG_BIN_ENV`](super::PG_BIN_ENV); as root, the server runs as the user
/// `postgres`. A missing binary or a failing `initdb` is an error, never a panic.
#[derive(Debug)]
pub struct TempPostgres {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tools: Tools,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    options: TempPostgresOptions,
    state: Mutex<State>,
    _watchdog: Watchdog,
    // Last: removed after the server is stopped and the watchdog is gone.
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct State {
    port: u16,
    running: bool,
}

/// Attempts at finding a free port when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;

impl TempPostgres {
    /// Creates and starts a server with default options. Takes about a second (`initdb`).
    ///
    /// Errors: [`TempPostgresError::BinaryNotFound`], [`TempPostgresError::Command`] with
    /// `initdb`'s output or the server log's tail, [`TempPostgresError::Io`].
    pub async fn start() -> Result<TempPostgres, TempPostgresError> {
        TempPostgres::start_with(TempPostgresOptions::default()).await
    }

    /// Creates and starts a server with `options`; errors as [`TempPostgres::start`].
    pub async fn start_with(
        options: TempPostgresOptions,
    ) -> Result<TempPostgres, TempPostgresError> {
        let inner = blocking(move || Inner::create(options)).await?;
        Ok(TempPostgres {
            inner: Arc::new(inner),
        })
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.inner.state().port
    }

    /// The URL of the default database `postgres`: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server (whether or not it exists).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port())
    }

    /// The server's data directory (owned by `postgres` when running as root).
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Creates the empty database `name` and returns its URL, so one server can serve many
    /// tests, each with a fresh database.
    ///
    /// Errors: [`TempPostgresError::InvalidName`] unless `name` is 1 to 63 characters of
    /// `a-z`, `0-9`, `_` starting with a letter; [`TempPostgresError::Database`] when the
    /// server refuses (e.g. the database exists).
    pub async fn create_database(&self, name: &str) -> Result<String, TempPostgresError> {
        let valid = (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(TempPostgresError::InvalidName {
                name: name.to_string(),
            });
        }
        let url = self.url();
        let database_error =
            |doing: &str, error: tokio_postgres::Error| TempPostgresError::Database {
                doing: doing.to_string(),
                url: url.clone(),
                error: describe(&error),
            };
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(|error| database_error("connecting", error))?;
        let connection = tokio::spawn(connection);
        let created = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|error| database_error(&format!("creating database {name}"), error));
        drop(client);
        let _ = connection.await;
        created?;
        Ok(self.database_url(name))
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate`, waiting until it is gone), keeping
    /// its data and port for [`TempPostgres::start_server`]. A no-op when it is not running.
    pub async fn stop_server(&self, mode: StopMode) -> Result<(), TempPostgresError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.stop(mode)).await
    }

    /// Starts the stopped server again on the same port (running crash recovery after an
    /// immediate stop). A no-op when it is running.
    pub async fn start_server(&self) -> Result<(), TempPostgresError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.start_on_same_port()).await
    }

    /// Stops the server cleanly and starts it again on the same port.
    pub async fn restart(&self) -> Result<(), TempPostgresError> {
        self.stop_server(StopMode::Fast).await?;
        self.start_server().await
    }
}

/// Runs `job` on tokio's blocking pool (the harness runs processes and waits for them).
async fn blocking<T, F>(job: F) -> Result<T, TempPostgresError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TempPostgresError> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|error| TempPostgresError::Io {
            doing: "running the PostgreSQL harness on the blocking pool".into(),
            error: std::io::Error::other(error.to_string()),
        })?
}

impl Inner {
    /// `initdb`, watchdog, first start on a free port.
    fn create(options: TempPostgresOptions) -> Result<Inner, TempPostgresError> {
        let tools = Tools::find()?;
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-")
            .tempdir()
            .map_err(|error| TempPostgresError::Io {
                doing: "creating a temp dir for PostgreSQL".into(),
                error,
            })?;
        tools.hand_over(dir.path())?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        let log_file = dir.path().join("postgres.log");
        std::fs::create_dir(&socket_dir).map_err(|error| TempPostgresError::Io {
            doing: format!("creating {}", socket_dir.display()),
            error,
        })?;
        tools.hand_over(&socket_dir)?;
        let watchdog = Watchdog::spawn(
            dir.path(),
            &stop_command(&tools, &data_dir, StopMode::Immediate),
        )?;
        let mut initdb = tools.command(
            &tools.initdb,
            [
                "-D".as_ref(),
                data_dir.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C.UTF-8".as_ref(),
                "--no-sync".as_ref(),
                "--no-instructions".as_ref(),
            ],
        );
        run(&mut initdb, "creating a PostgreSQL cluster (initdb)", None)?;
        let inner = Inner {
            tools,
            data_dir,
            socket_dir,
            log_file,
            options,
            state: Mutex::new(State {
                port: 0,
                running: false,
            }),
            _watchdog: watchdog,
            _dir: dir,
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match inner.start_on(port) {
                Ok(()) => return Ok(inner),
                Err(error) if error.to_string().contains("Address already in use") => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| TempPostgresError::Io {
            doing: "finding a free port".into(),
            error: std::io::Error::other("no attempt made"),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start_on_same_port(&self) -> Result<(), TempPostgresError> {
        let port = {
            let state = self.state();
            if state.running {
                return Ok(());
            }
            state.port
        };
        self.start_on(port)
    }

    /// `pg_ctl start` on `port`, waiting until the server accepts connections.
    fn start_on(&self, port: u16) -> Result<(), TempPostgresError> {
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections={}",
            shell_quote(&self.socket_dir.display().to_string()),
            self.options.max_connections
        );
        for (name, value) in &self.options.settings {
            let _ = write!(options, " -c {}", shell_quote(&format!("{name}={value}")));
        }
        let mut start = self.tools.command(
            &self.tools.pg_ctl,
            [
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-l".as_ref(),
                self.log_file.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        );
        run(
            &mut start,
            &format!("starting PostgreSQL on port {port}"),
            Some(&self.log_file),
        )?;
        let mut state = self.state();
        state.port = port;
        state.running = true;
        Ok(())
    }

    fn stop(&self, mode: StopMode) -> Result<(), TempPostgresError> {
        let mut state = self.state();
        if !state.running {
            return Ok(());
        }
        let mut stop = stop_command(&self.tools, &self.data_dir, mode);
        run(
            &mut stop,
            &format!("stopping PostgreSQL (-m {})", mode.flag()),
            Some(&self.log_file),
        )?;
        state.running = false;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A destructor cannot report errors. The fields are dropped next, in order: the
        // watchdog is killed, then the directory is removed.
        let _ = self.stop(StopMode::Immediate);
    }
}

/// `pg_ctl stop -m MODE -w` for the cluster in `data_dir`.
fn stop_command(tools: &Tools, data_dir: &Path, mode: StopMode) -> Command {
    tools.command(
        &tools.pg_ctl,
        [
            "-D".as_ref(),
            data_dir.as_os_str(),
            "-m".as_ref(),
            mode.flag().as_ref(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "stop".as_ref(),
        ],
    )
}

/// Runs `command`; on failure the error carries its output and, when given, the tail of
/// the server log.
fn run(
    command: &mut Command,
    doing: &str,
    log: Option<&Path>,
) -> Result<Output, TempPostgresError> {
    let line = command_line(command);
    let output = command.output().map_err(|error| TempPostgresError::Io {
        doing: format!("{doing}: running `{line}`"),
        error,
    })?;
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !stdout.is_empty() {
        let _ = write!(text, "\nstdout: {stdout}");
    }
    if let Some(log) = log {
        let _ = write!(text, "\nserver log ({}): {}", log.display(), log_tail(log));
    }
    Err(TempPostgresError::Command {
        doing: doing.to_string(),
        command: line,
        status: output.status.to_string(),
        output: text,
    })
}

/// The last 20 lines of the server log.
fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(20);
            format!("\n{}", lines[start..].join("\n"))
        }
        Err(error) => format!("cannot be read: {error}"),
    }
}

fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, TempPostgresError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| TempPostgresError::Io {
            doing: "finding a free port on 127.0.0.1".into(),
            error,
        })
}

/// `text` in single quotes for `sh` (pg_ctl passes `-o` through a shell).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A PostgreSQL error with its SQLSTATE and message when it has them.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}
