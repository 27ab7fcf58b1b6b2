//! Running a topology command (`start`, `partition`, `heal` of `[regions.NAME.local]`) or a
//! PostgreSQL tool, with a time limit, and saying clearly how it failed.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Lines of output kept for a message.
const TAIL_LINES: usize = 8;

/// `argv` as one shell-like line for messages.
pub fn display(argv: &[String]) -> String {
    argv.join(" ")
}

/// Runs `argv` (program and arguments; stdin closed, stdout and stderr captured) and waits up
/// to `timeout`. Returns the last lines of its stdout. Errors: a text naming the command and
/// saying whether it could not start, exited with a failure (with the last lines of its
/// stderr, else stdout) or ran out of time (it is killed).
pub async fn run(argv: &[String], timeout: Duration) -> Result<String, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "an empty command was given".to_string())?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|error| format!("cannot run `{}`: {error}", display(argv)))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => {
            return Err(format!("waiting for `{}` failed: {error}", display(argv)));
        }
        Err(_) => {
            return Err(format!(
                "`{}` did not finish within {} (stopped)",
                display(argv),
                super::report::format_ms(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
            ));
        }
    };
    let stdout = tail(&String::from_utf8_lossy(&output.stdout));
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = tail(&String::from_utf8_lossy(&output.stderr));
    let said = if stderr.is_empty() { stdout } else { stderr };
    Err(format!(
        "`{}` failed ({}){}",
        display(argv),
        output.status,
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}

/// The last [`TAIL_LINES`] non-empty lines of `text`, joined with ` | `.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[tokio::test]
    async fn success_returns_the_output_tail() {
        let out = run(
            &argv(&["sh", "-c", "echo one; echo; echo two"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out, "one | two");
    }

    #[tokio::test]
    async fn failure_names_the_command_status_and_stderr() {
        let error = run(
            &argv(&["sh", "-c", "echo out; echo broken >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(error.contains("`sh -c"), "{error}");
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(error.ends_with("broken"), "{error}");
        let missing = run(&argv(&["/nonexistent/program"]), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            missing.contains("cannot run `/nonexistent/program`"),
            "{missing}"
        );
        assert!(run(&[], Duration::from_secs(1)).await.is_err());
    }

    #[tokio::test]
    async fn a_slow_command_is_stopped() {
        let error = run(&argv(&["sleep", "5"]), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(error.contains("did not finish within 200 ms"), "{error}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&text).split(" | ").count(), TAIL_LINES);
        assert!(tail(&text).ends_with("line 20"));
    }
}
