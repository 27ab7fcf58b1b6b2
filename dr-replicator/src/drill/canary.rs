//! The drill's canary: an embedded workflow ([`canary_source`]) of shell tasks with short
//! sleeps in waves, started [`start`]ed `--canaries` times on the active region and waited
//! for until each run is caught in flight ([`wait_in_flight`]): at least a third of its tasks
//! succeeded and some running, so that a fault then hits runs with finished, running and
//! pending tasks.
//!
//! Shape (`--canary-tasks N`, 8 to 600): `start` → `wave1` → … → `waveK` → `join`, each wave
//! a matrix fan-out whose instances sleep 1.00 to 1.99 s; K = 6 waves from 26 tasks (3
//! below), the N − 2 wave tasks spread evenly over them. Every task may be tried 5 times, 100
//! ms apart: an attempt in flight at the fault is interrupted and tried again in the new
//! region.

use std::time::Duration;

use serde::Serialize;
use tandem_api::{Client, RegisteredWorkflow, Run, RunState, StartRun};
use tandem_engine::checkpoint::{UnixMillis, now_millis};
use tokio::time::Instant;

use super::verify::POLL_INTERVAL;

/// The canary workflow's name.
pub const CANARY_WORKFLOW: &str = "tandem-drill-canary";
/// Fewest tasks a canary may have (start, 3 waves of 2, join).
pub const MIN_TASKS: u32 = 8;
/// Most tasks a canary may have (6 waves of at most 100: the sleep's hundredths).
pub const MAX_TASKS: u32 = 602;
/// Most canary runs a drill starts.
pub const MAX_CANARIES: u32 = 100;

/// A canary run started on the active region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanaryRun {
    /// Its index, from 1.
    pub index: u32,
    /// The run id.
    pub run_id: String,
    /// `drill-<drill id>-<index>`.
    pub idempotency_key: String,
    /// False when the key matched a run started before (a repeated drill id).
    pub created: bool,
    /// Its progress as last read before the fault.
    pub at_fault: Option<CanaryProgress>,
}

/// A canary run's progress at one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CanaryProgress {
    /// Its state.
    pub state: RunState,
    /// Tasks in all.
    pub total: u32,
    /// Tasks succeeded.
    pub succeeded: u32,
    /// Tasks running.
    pub running: u32,
    /// When it was read, ms since the Unix epoch.
    pub read_at_ms: UnixMillis,
}

impl CanaryProgress {
    /// The progress of `run` read at `read_at_ms`.
    pub fn of(run: &Run, read_at_ms: UnixMillis) -> CanaryProgress {
        CanaryProgress {
            state: run.state,
            total: run.counts.total,
            succeeded: run.counts.succeeded,
            running: run.counts.running,
            read_at_ms,
        }
    }

    /// Caught in flight: still running, at least a third of its tasks succeeded, and at least
    /// one running.
    pub fn in_flight(&self) -> bool {
        self.state == RunState::Running
            && self.total > 0
            && u64::from(self.succeeded) * 3 >= u64::from(self.total)
            && self.running >= 1
    }
}

/// Waves of a canary of `tasks` tasks: the number of instances of each wave.
pub fn wave_widths(tasks: u32) -> Result<Vec<u32>, String> {
    if !(MIN_TASKS..=MAX_TASKS).contains(&tasks) {
        return Err(format!(
            "--canary-tasks: expected {MIN_TASKS} to {MAX_TASKS} tasks per canary run, found {tasks}"
        ));
    }
    let spread = tasks - 2;
    let waves: u32 = if spread >= 24 { 6 } else { 3 };
    Ok((0..waves)
        .map(|wave| spread / waves + u32::from(wave < spread % waves))
        .collect())
}

/// The canary workflow's YAML for `tasks` tasks (see the module docs). Errors when `tasks`
/// is outside [`MIN_TASKS`]..=[`MAX_TASKS`].
pub fn canary_source(tasks: u32) -> Result<String, String> {
    let widths = wave_widths(tasks)?;
    let mut text = format!(
        "# The canary of `tandem dr drill`: {tasks} shell tasks in {} waves of sleeps.\n\
         name: {CANARY_WORKFLOW}\n\
         description: \"Disaster recovery drill canary: start, {} waves of 1-2 s sleeps, join.\"\n\
         defaults:\n  timeout: 1m\n  retry:\n    max_attempts: 5\n    initial_interval: 100ms\n    backoff_coefficient: 1.0\n    jitter: none\n\
         tasks:\n  start:\n    run: sleep 0.2\n",
        widths.len(),
        widths.len()
    );
    for (index, &width) in widths.iter().enumerate() {
        let wave = index + 1;
        let needs = if wave == 1 {
            "start".to_string()
        } else {
            format!("wave{}", wave - 1)
        };
        let step = 100 / width;
        let values: Vec<String> = (0..width).map(|i| format!("\"{:02}\"", i * step)).collect();
        text.push_str(&format!(
            "  wave{wave}:\n    needs: [{needs}]\n    matrix:\n      i: [{}]\n    run: sleep 1.${{{{ matrix.i }}}}\n",
            values.join(", ")
        ));
    }
    text.push_str(&format!(
        "  join:\n    needs: [wave{}]\n    run: \"true\"\n",
        widths.len()
    ));
    Ok(text)
}

/// The idempotency key of canary `index` of drill `drill_id`.
pub fn idempotency_key(drill_id: &str, index: u32) -> String {
    format!("drill-{drill_id}-{index}")
}

/// Registers the canary workflow of `tasks` tasks on the active region's `client` and starts
/// `count` runs of that version with idempotency keys `drill-<drill_id>-<i>` (i from 1).
/// Errors: a text naming the call that failed.
pub async fn start(
    client: &Client,
    drill_id: &str,
    count: u32,
    tasks: u32,
) -> Result<(RegisteredWorkflow, Vec<CanaryRun>), String> {
    let source = canary_source(tasks)?;
    let workflow = client
        .register_workflow(source, format!("{CANARY_WORKFLOW}.yaml"))
        .await
        .map_err(|error| format!("cannot register the canary workflow: {error}"))?;
    let mut runs = Vec::with_capacity(count as usize);
    for index in 1..=count {
        let key = idempotency_key(drill_id, index);
        let started = client
            .start_run(
                StartRun::new(&workflow.name)
                    .version(&workflow.version)
                    .idempotency_key(&key),
            )
            .await
            .map_err(|error| format!("cannot start canary run {index} (key {key}): {error}"))?;
        runs.push(CanaryRun {
            index,
            run_id: started.run_id,
            idempotency_key: key,
            created: started.created,
            at_fault: None,
        });
    }
    Ok((workflow, runs))
}

/// Polls the runs (every [`POLL_INTERVAL`], up to `timeout`) until every one is
/// [`CanaryProgress::in_flight`] at the same read; records that progress in each run's
/// `at_fault`. Errors: a run ended first (the canary is too short for this deployment), a
/// read failed, or the time ran out (each run's progress is listed).
pub async fn wait_in_flight(
    client: &Client,
    runs: &mut [CanaryRun],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut progress = Vec::with_capacity(runs.len());
        for run in runs.iter() {
            let read = client
                .get_run(run.run_id.clone())
                .await
                .map_err(|error| format!("cannot read canary run {}: {error}", run.run_id))?;
            let now = CanaryProgress::of(&read, now_millis());
            if now.state.is_final() {
                return Err(format!(
                    "canary run {} ({}) ended {} with {} of {} tasks succeeded before it was caught in flight (expected a third succeeded and some running): give more --canary-tasks",
                    run.index, run.run_id, now.state, now.succeeded, now.total
                ));
            }
            progress.push(now);
        }
        let caught = progress.iter().all(CanaryProgress::in_flight);
        if caught {
            for (run, now) in runs.iter_mut().zip(progress) {
                run.at_fault = Some(now);
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = runs
                .iter()
                .zip(&progress)
                .map(|(run, now)| {
                    format!(
                        "run {}: {}/{} succeeded, {} running",
                        run.index, now.succeeded, now.total, now.running
                    )
                })
                .collect();
            return Err(format!(
                "the canary runs were not all in flight (a third of their tasks succeeded and some running) within {} s: {}",
                timeout.as_secs(),
                list.join("; ")
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_spread_the_tasks_evenly() {
        assert_eq!(wave_widths(60).unwrap(), vec![10, 10, 10, 10, 9, 9]);
        assert_eq!(wave_widths(8).unwrap(), vec![2, 2, 2]);
        assert_eq!(wave_widths(25).unwrap(), vec![8, 8, 7]);
        assert_eq!(wave_widths(26).unwrap(), vec![4, 4, 4, 4, 4, 4]);
        assert_eq!(wave_widths(602).unwrap(), vec![100; 6]);
        for tasks in MIN_TASKS..=MAX_TASKS {
            let widths = wave_widths(tasks).unwrap();
            assert_eq!(widths.iter().sum::<u32>() + 2, tasks);
            assert!(widths.iter().all(|&width| width >= 2));
        }
        assert!(wave_widths(7).unwrap_err().contains("found 7"));
        assert!(wave_widths(603).is_err());
    }

    #[test]
    fn the_source_is_a_valid_workflow_of_the_asked_size() {
        for tasks in [8, 25, 60, 602] {
            let source = canary_source(tasks).unwrap();
            let spec = tandem_dsl::compile("canary.yaml", &source)
                .unwrap_or_else(|errors| panic!("{tasks} tasks: {errors:?}\n{source}"));
            assert_eq!(spec.name, CANARY_WORKFLOW);
            assert_eq!(spec.tasks.len(), tasks as usize, "{source}");
        }
    }

    #[test]
    fn matrix_values_are_distinct_hundredths() {
        let source = canary_source(602).unwrap();
        assert!(source.contains("\"00\", \"01\""), "{source}");
        assert!(source.contains("\"99\"]"), "{source}");
        let small = canary_source(60).unwrap();
        assert!(small.contains("i: [\"00\", \"10\", \"20\""), "{small}");
        assert!(small.contains("run: sleep 1.${{ matrix.i }}"), "{small}");
    }

    #[test]
    fn in_flight_needs_a_third_succeeded_and_one_running() {
        let progress = |state, succeeded, running| CanaryProgress {
            state,
            total: 60,
            succeeded,
            running,
            read_at_ms: 0,
        };
        assert!(progress(RunState::Running, 20, 1).in_flight());
        assert!(!progress(RunState::Running, 19, 10).in_flight());
        assert!(!progress(RunState::Running, 30, 0).in_flight());
        assert!(!progress(RunState::Succeeded, 60, 0).in_flight());
    }
}
