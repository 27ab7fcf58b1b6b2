//! The live progress bar of `tandem run` / `tandem resume` (on stderr, only on a terminal).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tandem_engine::runner::Progress;
use tokio::sync::watch;

/// A progress bar fed by the runner's progress snapshots.
#[derive(Clone)]
pub struct ProgressDisplay {
    bar: ProgressBar,
}

impl ProgressDisplay {
    /// Starts drawing (when `enabled` and stderr is a terminal) the progress of a run of
    /// `total` tasks, updated from `updates`.
    pub fn start(total: usize, enabled: bool, mut updates: watch::Receiver<Progress>) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} done  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        let updated = bar.clone();
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let progress = *updates.borrow_and_update();
                updated.set_position(progress.counts.terminal() as u64);
                updated.set_message(message(&progress));
            }
        });
        ProgressDisplay { bar }
    }

    /// Prints a line above the bar (or plainly, when the bar is hidden).
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn message(progress: &Progress) -> String {
    let counts = &progress.counts;
    let mut parts = vec![format!("running {}", counts.running)];
    if counts.waiting_retry > 0 {
        parts.push(format!("retrying {}", counts.waiting_retry));
    }
    parts.push(format!("failed {}", counts.failed));
    if counts.skipped + counts.upstream_failed > 0 {
        parts.push(format!(
            "skipped {}",
            counts.skipped + counts.upstream_failed
        ));
    }
    if progress.cancelling {
        parts.push("cancelling".to_string());
    }
    parts.join(" · ")
}
