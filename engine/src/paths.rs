//! Layout of a state directory (default `.tandem/`).
//!
//! ```text
//! STATE_DIR/
//!   tandem.db                              the embedded checkpoint store (SQLite, WAL mode)
//!   runs/RUN_ID/TASK/ATTEMPT.stdout        captured standard output of an attempt
//!   runs/RUN_ID/TASK/ATTEMPT.stderr        captured standard error of an attempt
//!   runs/RUN_ID/TASK/ATTEMPT.outputs       the attempt's $TANDEM_OUTPUT file
//! ```
//!
//! `TASK` is the task instance id with every byte outside `[A-Za-z0-9._=,-]` percent-encoded
//! (so `transform[shard=1]` is stored as `transform%5Bshard=1%5D`).

use std::path::{Path, PathBuf};

use crate::checkpoint::RunId;

/// File name of the embedded store inside a state directory.
pub const STORE_FILE: &str = "tandem.db";

/// Paths inside one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

/// Which captured file of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFile {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// The `$TANDEM_OUTPUT` file.
    Outputs,
}

impl AttemptFile {
    fn extension(self) -> &'static str {
        match self {
            AttemptFile::Stdout => "stdout",
            AttemptFile::Stderr => "stderr",
            AttemptFile::Outputs => "outputs",
        }
    }
}

impl StateDir {
    /// A state directory rooted at `root` (not created until used).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the embedded store file.
    pub fn store_file(&self) -> PathBuf {
        self.root.join(STORE_FILE)
    }

    /// Directory holding the captured files of every attempt of one task instance.
    pub fn task_dir(&self, run_id: RunId, task_id: &str) -> PathBuf {
        self.root
            .join("runs")
            .join(run_id.to_string())
            .join(encode_file_name(task_id))
    }

    /// Path of one captured file of attempt `attempt` (from 1) of a task instance.
    pub fn attempt_file(
        &self,
        run_id: RunId,
        task_id: &str,
        attempt: u32,
        file: AttemptFile,
    ) -> PathBuf {
        self.task_dir(run_id, task_id)
            .join(format!("{attempt}.{}", file.extension()))
    }
}

/// Percent-encodes every byte of `id` outside `[A-Za-z0-9._=,-]`, and a leading `.`, so any
/// task instance id is a safe, reversible file name.
pub fn encode_file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (index, byte) in id.bytes().enumerate() {
        let safe = byte.is_ascii_alphanumeric()
            || matches!(byte, b'_' | b'=' | b',' | b'-')
            || (byte == b'.' && index > 0);
        if safe {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_become_safe_file_names() {
        assert_eq!(encode_file_name("extract"), "extract");
        assert_eq!(
            encode_file_name("transform[shard=1]"),
            "transform%5Bshard=1%5D"
        );
        assert_eq!(encode_file_name("t[p=a/b]"), "t%5Bp=a%2Fb%5D");
        assert_eq!(encode_file_name(".."), "%2E.");
    }
}
