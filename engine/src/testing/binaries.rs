//! Finding PostgreSQL's server binaries and running them as the right user.
//!
//! Where: the directory in [`PG_BIN_ENV`] when it is set (and only there), else
//! `/usr/lib/postgresql/15/bin` (Debian's layout), else the `PATH`. PostgreSQL refuses to run
//! as root, so when this process is root every server binary runs as the user `postgres`
//! through `runuser -u postgres --`, and the directories it writes are given to that user.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::temp_postgres::TempPostgresError;

/// The environment variable naming the directory that holds `initdb`, `pg_ctl` and
/// `postgres`; when set, no other place is searched.
pub const PG_BIN_ENV: &str = "TANDEM_PG_BIN";

/// Debian's directory of the PostgreSQL 15 server binaries.
const DEBIAN_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The user the server runs as when this process is root.
const SERVER_USER: &str = "postgres";

/// The server binaries and who runs them.
#[derive(Debug, Clone)]
pub(super) struct Tools {
    /// `initdb`.
    pub initdb: PathBuf,
    /// `pg_ctl` (it finds `postgres` in its own directory).
    pub pg_ctl: PathBuf,
    /// When this process is root: the user that runs the server.
    pub run_as: Option<RunAs>,
}

/// An unprivileged user to run the server as.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    /// User name.
    pub user: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl Tools {
    /// Finds the binaries and, when root, the `postgres` user.
    ///
    /// Errors: [`TempPostgresError::BinaryNotFound`] naming the binary and every place
    /// searched; [`TempPostgresError::Command`] when running as root and the user `postgres`
    /// does not exist.
    pub fn find() -> Result<Tools, TempPostgresError> {
        let dirs = search_dirs();
        let initdb = find_binary("initdb", &dirs)?;
        let pg_ctl = find_binary("pg_ctl", &dirs)?;
        // pg_ctl starts the `postgres` next to it: check now for a clear message.
        let pg_ctl_dir = pg_ctl.parent().unwrap_or(Path::new("/"));
        find_binary("postgres", &[pg_ctl_dir.to_path_buf()])?;
        let run_as = if running_as_root() {
            Some(RunAs::lookup(SERVER_USER)?)
        } else {
            None
        };
        Ok(Tools {
            initdb,
            pg_ctl,
            run_as,
        })
    }

    /// A command that runs `program` with `args` as the server's user.
    pub fn command<I, S>(&self, program: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        match &self.run_as {
            Some(run_as) => {
                let mut command = Command::new("runuser");
                command.args(["-u", &run_as.user, "--"]).arg(program);
                command.args(args);
                command
            }
            None => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        }
    }

    /// Gives `path` to the server's user (when running as root; a no-op otherwise).
    pub fn hand_over(&self, path: &Path) -> Result<(), TempPostgresError> {
        let Some(run_as) = &self.run_as else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)).map_err(|error| {
            TempPostgresError::Io {
                doing: format!("giving {} to the user {}", path.display(), run_as.user),
                error,
            }
        })
    }
}

impl RunAs {
    /// Looks `user` up with `id` (through NSS, like `runuser` does).
    fn lookup(user: &str) -> Result<RunAs, TempPostgresError> {
        let id = |flag: &str| -> Result<u32, TempPostgresError> {
            let command = format!("id {flag} {user}");
            let output = Command::new("id")
                .args([flag, user])
                .output()
                .map_err(|error| TempPostgresError::Io {
                    doing: format!("running `{command}`"),
                    error,
                })?;
            let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
            match text.parse::<u32>() {
                Ok(value) if output.status.success() => Ok(value),
                _ => Err(TempPostgresError::Command {
                    doing: format!(
                        "running as root, PostgreSQL must run as the user `{user}`; looking it up"
                    ),
                    command,
                    status: output.status.to_string(),
                    output: format!(
                        "expected a numeric id, found `{text}` {}(create the user, e.g. by installing Debian's postgresql package)",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                }),
            }
        };
        Ok(RunAs {
            user: user.to_string(),
            uid: id("-u")?,
            gid: id("-g")?,
        })
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}

/// The directories to search, in order.
fn search_dirs() -> Vec<PathBuf> {
    if let Some(dir) = env::var_os(PG_BIN_ENV) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = vec![PathBuf::from(DEBIAN_BIN_DIR)];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    dirs
}

/// The first executable file `name` in `dirs`.
fn find_binary(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, TempPostgresError> {
    use std::os::unix::fs::PermissionsExt as _;
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(metadata) = candidate.metadata()
            && metadata.is_file()
            && metadata.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
    let origin = if env::var_os(PG_BIN_ENV).is_some() {
        format!("{PG_BIN_ENV}={}", searched.join(":"))
    } else {
        searched.join(", ")
    };
    Err(TempPostgresError::BinaryNotFound {
        name: name.to_string(),
        searched: origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_itself_and_the_places_searched() {
        let dir = tempfile::tempdir().unwrap();
        let error = find_binary("initdb", &[dir.path().to_path_buf()]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`initdb`"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains(PG_BIN_ENV), "{message}");
    }

    #[test]
    fn a_non_executable_file_is_not_a_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg_ctl"), "not a program").unwrap();
        assert!(find_binary("pg_ctl", &[dir.path().to_path_buf()]).is_err());
    }
}
