//! How `tandem dr` prints: the regions table, the outcome lines of promote, rejoin and
//! switchover, their JSON, and the catch-up bar of a switchover.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tandem_dr::{
    CatchUp, DrStatus, PromoteOutcome, RegionReport, RejoinOutcome, SwitchoverOutcome,
};
use tandem_engine::store::replication::{RegionRole, TailRun};

use super::super::{Failure, OutputFormat, table};

/// Prints an operation's outcome and the regions' status after it: as text then the table,
/// or as JSON `{"outcome": ..., "status": ...}`.
pub fn print<T: Serialize>(
    output: OutputFormat,
    outcome: &T,
    after: &DrStatus,
    text: impl FnOnce() -> String,
) -> Result<(), Failure> {
    match output {
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct Both<'a, T> {
                outcome: &'a T,
                status: &'a DrStatus,
            }
            println!(
                "{}",
                json(&Both {
                    outcome,
                    status: after
                })?
            );
        }
        OutputFormat::Table => println!("{}\n\n{}", text(), status(after)),
    }
    Ok(())
}

/// Pretty JSON.
pub fn json<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(Failure::system)
}

/// The regions table, then a line per unreachable region, tail and archive.
pub fn status(status: &DrStatus) -> String {
    let mut out = Table::new();
    out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "REGION", "ROLE", "EPOCH", "ACTIVE", "LEADER", "LATEST", "APPLIED", "LAG", "LAG TIME",
        "MODE", "SYNC", "TAIL",
    ]);
    if out.width().is_some_and(|width| width >= 80) {
        out.set_content_arrangement(ContentArrangement::Dynamic);
    }
    let mut notes = Vec::new();
    for report in &status.regions {
        out.add_row(row(report));
        notes.extend(notes_of(report));
    }
    let mut text = out.to_string();
    for note in notes {
        text.push('\n');
        text.push_str(&note);
    }
    text
}

fn row(report: &RegionReport) -> Vec<String> {
    let dash = || "-".to_string();
    let Some(status) = &report.status else {
        let mut row = vec![report.region.clone(), "unreachable".to_string()];
        row.resize(12, dash());
        return row;
    };
    let standby = status.role == RegionRole::Standby;
    vec![
        status.region.clone(),
        status.role.to_string(),
        status.region_epoch.to_string(),
        status.active_region.clone(),
        match (&status.leader_member, status.leader_epoch) {
            (Some(member), Some(epoch)) => format!("{member} (epoch {epoch})"),
            (Some(member), None) => member.clone(),
            (None, _) => "none".to_string(),
        },
        status.latest_position.to_string(),
        if standby {
            status.applied_position.to_string()
        } else {
            dash()
        },
        report
            .lag
            .map_or_else(dash, |lag| lag.positions.to_string()),
        report
            .lag
            .and_then(|lag| lag.millis)
            .map_or_else(dash, |millis| table::format_millis(millis as i64)),
        status.replication_mode.as_str().to_string(),
        match (status.role, status.sync_degraded_since_ms) {
            (RegionRole::Active, Some(since)) => {
                format!("degraded since {}", table::format_timestamp(since))
            }
            (RegionRole::Active, None) => match status.standby_region.as_deref() {
                Some(standby) => format!("ok ({standby} streaming)"),
                None => "no standby".to_string(),
            },
            _ => dash(),
        },
        match status.tail {
            Some(tail) => format!("{}..={}", tail.from, tail.to),
            None => dash(),
        },
    ]
}

/// The lines under the table about `report`: why it is unreachable, its tail's runs, its
/// archive.
fn notes_of(report: &RegionReport) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(status) = &report.status else {
        notes.push(format!(
            "{}: {}",
            report.region,
            report.error.as_deref().unwrap_or("no reply")
        ));
        return notes;
    };
    if let Some(tail) = status.tail {
        notes.push(format!(
            "{}: unreplicated tail, positions {}..={} ({} checkpoints): {}; `tandem dr rejoin --region {}` archives it and makes the region a standby",
            status.region,
            tail.from,
            tail.to,
            tail.to.saturating_sub(tail.from) + 1,
            runs_text(&status.tail_runs),
            status.region
        ));
    }
    if status.archived_tail_checkpoints > 0 {
        notes.push(format!(
            "{}: {} checkpoints of earlier tails archived in dr_tail",
            status.region, status.archived_tail_checkpoints
        ));
    }
    notes
}

/// `run R (workflow w): 5 checkpoints, created in the tail; ...` or `no runs`.
fn runs_text(runs: &[TailRun]) -> String {
    if runs.is_empty() {
        return "no runs".to_string();
    }
    runs.iter()
        .map(|run| {
            format!(
                "run {} ({}): {}",
                run.run_id,
                run.workflow,
                run.checkpoints_text()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What `promote` prints above the table.
pub fn promoted(outcome: &PromoteOutcome) -> String {
    let mut lines = vec![format!(
        "promoted {} to active with region epoch {}{} (it was a standby of {}; {}) in {}",
        outcome.region,
        outcome.region_epoch,
        if outcome.forced { " (--force)" } else { "" },
        outcome.previous_active,
        match outcome.lag_before {
            Some(lag) => format!(
                "lag at promotion: {} positions{}",
                lag.positions,
                lag.millis
                    .map(|millis| format!(", {}", table::format_millis(millis as i64)))
                    .unwrap_or_default()
            ),
            None => "lag unknown".to_string(),
        },
        table::format_millis(outcome.took_ms as i64)
    )];
    for demotion in &outcome.demotions {
        lines.push(match (&demotion.status, &demotion.error) {
            (Some(status), _) => format!(
                "{}: told, now {} (region epoch {}){}",
                demotion.region,
                status.role,
                status.region_epoch,
                status
                    .tail
                    .map(|tail| format!(
                        ", unreplicated tail {}..={}: `tandem dr rejoin --region {}`",
                        tail.from, tail.to, demotion.region
                    ))
                    .unwrap_or_default()
            ),
            (None, error) => format!(
                "{}: not told ({}); it learns of the promotion from {} when it answers again",
                demotion.region,
                error.as_deref().unwrap_or("no reply"),
                outcome.region
            ),
        });
    }
    lines.join("\n")
}

/// What `rejoin` prints above the table.
pub fn rejoined(outcome: &RejoinOutcome) -> String {
    let demoted = if outcome.demoted_first {
        " (it still answered as active and was demoted first)"
    } else {
        ""
    };
    match outcome.tail {
        Some(tail) => format!(
            "{} is now a standby of {} (region epoch {}), its log cut back to position {}{demoted}\narchived tail (kept in dr_tail): positions {}..={}, {} checkpoints; {}",
            outcome.region,
            outcome.active_region,
            outcome.region_epoch,
            outcome.fork_position,
            tail.from,
            tail.to,
            outcome.archived_checkpoints,
            runs_text(&outcome.tail_runs)
        ),
        None => format!(
            "{} is a standby of {} (region epoch {}){demoted}: it had no unreplicated tail, nothing was archived",
            outcome.region, outcome.active_region, outcome.region_epoch
        ),
    }
}

/// What `switchover` prints above the table.
pub fn switched(outcome: &SwitchoverOutcome) -> String {
    format!(
        "switched over from {} to {}: region epoch {}, every checkpoint up to position {} carried over{}\nwrites paused for {} (catch-up {}); took {}",
        outcome.from,
        outcome.to,
        outcome.region_epoch,
        outcome.fork_position,
        if outcome.was_fenced {
            " (writes that slipped in before the demotion were carried over too)"
        } else {
            ""
        },
        table::format_millis(outcome.writes_paused_ms as i64),
        table::format_millis(outcome.catch_up_ms as i64),
        table::format_millis(outcome.took_ms as i64)
    )
}

/// The standby's catch-up during a switchover, as a bar on stderr (only on a terminal).
pub struct CatchUpBar {
    bar: ProgressBar,
}

impl CatchUpBar {
    /// A bar drawn when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool) -> CatchUpBar {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let style = ProgressStyle::with_template(
            "{spinner} catching up [{elapsed_precise}] {bar:30.cyan/blue} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        CatchUpBar { bar }
    }

    /// Shows `catch_up`.
    pub fn update(&self, catch_up: &CatchUp) {
        let total = catch_up
            .target_position
            .saturating_sub(catch_up.start_position)
            .max(1);
        self.bar.set_length(total);
        self.bar.set_position(
            catch_up
                .applied_position
                .saturating_sub(catch_up.start_position)
                .min(total),
        );
        self.bar.set_message(format!(
            "applied {} of {}",
            catch_up.applied_position, catch_up.target_position
        ));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests;
