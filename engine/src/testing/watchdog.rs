//! A guardian process that stops a test server and removes its directory when the process
//! that started it is gone without cleaning up (killed, aborted, a `static` server whose
//! destructor never runs).
//!
//! `pg_ctl` detaches the server from our process group, so nothing else would stop it. The
//! guardian is a small `sh` loop in its own process group (a Ctrl-C in the terminal does not
//! reach it) that polls the owner's pid every 200 ms; [`Watchdog`]'s `Drop` kills it when the
//! owner cleans up itself.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::temp_postgres::TempPostgresError;

/// The guardian's script: `$1` the pid to watch, `$2` the directory to remove, `$3...` the
/// command that stops the server.
const SCRIPT: &str = r#"owner=$1; dir=$2; shift 2
while kill -0 "$owner" 2>/dev/null; do sleep 0.2; done
"$@" >/dev/null 2>&1
rm -rf "$dir""#;

/// A running guardian; dropping it kills it (the owner is cleaning up itself).
#[derive(Debug)]
pub(super) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts a guardian that runs `stop` and removes `dir` once this process has exited.
    pub fn spawn(dir: &Path, stop: &Command) -> Result<Watchdog, TempPostgresError> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("tandem-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(dir)
            .arg(stop.get_program())
            .args(stop.get_args());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| TempPostgresError::Io {
                doing: "starting the watchdog shell (`sh`) that cleans up after a crash".into(),
                error,
            })?;
        Ok(Watchdog { child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Already exited is fine; either way reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
