//! The steps of a live drill after its preflight: canary, fault, promote, verify, measure,
//! failback (see the parent module's docs), and the restore of the old region when a step
//! after the fault failed.

use std::time::Duration;

use tandem_api::Client;
use tandem_engine::checkpoint::now_millis;

use super::canary::{self, CanaryRun};
use super::fault::{self, Fault, FaultReport};
use super::measure::{self, LogTimes, RpoInput, RtoMethod};
use super::preflight::Preflight;
use super::report::{DrillReport, Outcome, Step, StepTimer};
use super::verify::{self, CanaryVerdict};
use super::{DrillOptions, client_config, failback};
use crate::promote::promote;
use crate::region_status::RegionStatus;
use crate::status::Regions;
use crate::topology::LocalControl;

/// How long the drill waits for the new active region to report its first dispatch once the
/// canaries are done (the status is read every 200 ms).
const FIRST_DISPATCH_WAIT: Duration = Duration::from_secs(3);

/// Runs the live steps, filling `report`.
pub(super) async fn run(
    options: &DrillOptions,
    drill_id: &str,
    preflight: &Preflight,
    fault: Fault,
    report: &mut DrillReport,
) {
    let regions = Regions::new(options.topology.clone(), options.client);
    let old = preflight.active.as_str();
    let new = preflight.standby.as_str();
    let local = match fault::capability(&options.topology, old, fault) {
        Ok(local) => local.clone(),
        Err(error) => {
            // Checked by `super::run` before; kept so this never acts without it.
            report.push(StepTimer::start(Step::Fault).finish(Outcome::Failed, error));
            return;
        }
    };
    let endpoints = |region: &str| {
        options
            .topology
            .regions
            .get(region)
            .map(|entry| entry.endpoints.clone())
            .unwrap_or_default()
    };
    let make_client =
        |region: &str| Client::connect_lazy(client_config(&endpoints(region), options));
    let after_canary = [Step::Fault, Step::Promote, Step::Verify, Step::Measure];
    let (old_client, new_client) = match (make_client(old), make_client(new)) {
        (Ok(old_client), Ok(new_client)) => (old_client, new_client),
        (Err(error), _) | (_, Err(error)) => {
            report.push(StepTimer::start(Step::Canary).finish(
                Outcome::Failed,
                format!("cannot make the SDK clients of the regions: {error}"),
            ));
            report.skip(&after_canary);
            return;
        }
    };

    // 2. canary
    let timer = StepTimer::start(Step::Canary);
    let mut runs = match canary::start(
        &old_client,
        drill_id,
        options.canaries,
        options.canary_tasks,
    )
    .await
    {
        Ok((_, runs)) => runs,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&after_canary);
            return;
        }
    };
    let caught = canary::wait_in_flight(&old_client, &mut runs, options.timeout).await;
    report.canaries = runs.clone();
    if let Err(error) = caught {
        report.push(timer.finish(Outcome::Failed, error));
        report.skip(&after_canary);
        report.notes.push(format!(
            "the canary runs were left running in {old}; no fault was injected"
        ));
        return;
    }
    report.push(timer.finish(Outcome::Passed, canary_detail(&runs, options.canary_tasks)));

    // 3. fault
    let before: Option<RegionStatus> = match regions.client(old) {
        Ok(client) => client.status().await.ok(),
        Err(_) => None,
    };
    let timer = StepTimer::start(Step::Fault);
    let injected = match fault::inject(fault, old, &local, before.as_ref(), options.timeout).await {
        Ok(injected) => injected,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&[Step::Promote, Step::Verify, Step::Measure]);
            restore(fault, &local, old, options.timeout, report).await;
            return;
        }
    };
    report.push(timer.finish(Outcome::Passed, fault_detail(&injected)));
    report.fault_injection = Some(injected.clone());

    // 4. promote
    let timer = StepTimer::start(Step::Promote);
    let promoted = match promote(&regions, new, false).await {
        Ok(outcome) => outcome,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, format!("promoting {new} failed: {error}")));
            report.skip(&[Step::Verify, Step::Measure]);
            restore(fault, &local, old, options.timeout, report).await;
            return;
        }
    };
    let standby_before: Option<RegionStatus> = promoted.before.answered(new).cloned();
    report.push(timer.finish(
        Outcome::Passed,
        format!(
            "{new} active with region epoch {}, promoted after position {} ({} ms after the fault started)",
            promoted.region_epoch,
            promoted
                .status
                .promoted_at_position
                .map_or("none".to_string(), |position| position.to_string()),
            promoted
                .status
                .promoted_at_ms
                .map_or("?".to_string(), |at| (at - injected.at_ms).to_string())
        ),
    ));
    let fork = promoted.status.promoted_at_position;
    let promoted_at_ms = promoted.status.promoted_at_ms;
    report.promotion = Some(promoted);

    // 5. verify
    let timer = StepTimer::start(Step::Verify);
    let snapshots = verify::snapshot_all(&new_client, &runs).await;
    let (checks, observed) = verify::wait_all(&new_client, &runs, snapshots, options.timeout).await;
    let first_dispatch = first_dispatch(&regions, new).await;
    report.rto = Some(measure::rto(
        injected.at_ms,
        promoted_at_ms,
        first_dispatch,
        observed,
        RtoMethod::FirstDispatchCheckpoint,
    ));
    let failed: Vec<String> = checks
        .iter()
        .filter(|check| !check.verdict.passes())
        .map(|check| {
            format!(
                "canary {} ({}): {}",
                check.index, check.run_id, check.detail
            )
        })
        .collect();
    let completed = checks
        .iter()
        .filter(|check| check.verdict == CanaryVerdict::Completed)
        .count();
    let lost = checks
        .iter()
        .filter(|check| check.verdict == CanaryVerdict::LostInTail)
        .count();
    report.push(if failed.is_empty() {
        timer.finish(
            Outcome::Passed,
            format!(
                "{completed} canary run(s) completed in {new}, no succeeded task ran again{}",
                if lost > 0 {
                    format!("; {lost} run(s) created in the lost tail never reached {new}")
                } else {
                    String::new()
                }
            ),
        )
    } else {
        timer.finish(Outcome::Failed, failed.join("; "))
    });
    report.verification = checks.clone();

    // 6. measure
    let timer = StepTimer::start(Step::Measure);
    let restore_started_at_ms = now_millis();
    if let Err(error) = fault::restore(fault, &local, options.timeout).await {
        report.push(timer.finish(
            Outcome::Failed,
            format!("bringing {old} back failed, the RPO is not measured: {error}"),
        ));
        report.skip(&[Step::Failback]);
        return;
    }
    let old_region = match regions.client(old) {
        Ok(client) => client,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error.to_string()));
            return;
        }
    };
    let learned = match measure::wait_learned(old_region, new, options.timeout).await {
        Ok(status) => status,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&[Step::Failback]);
            return;
        }
    };
    let log_times: Option<LogTimes> = match learned.tail {
        Some(tail) => {
            let read = measure::read_log_times(
                &endpoints(old),
                old,
                &format!("drill-{drill_id}"),
                fork.unwrap_or(0).saturating_sub(1),
                tail.to,
                options.timeout.min(Duration::from_secs(30)),
            )
            .await;
            match read {
                Ok(times) => Some(times),
                Err(error) => {
                    report.notes.push(format!(
                        "the tail's commit times could not be read ({error}): the RPO in seconds is the bound fault − last applied commit time"
                    ));
                    None
                }
            }
        }
        None => None,
    };
    let rpo = measure::rpo(RpoInput {
        fault_done_at_ms: injected.done_at_ms,
        fork_position: fork,
        tail: learned.tail,
        tail_runs: &learned.tail_runs,
        log_times: log_times.as_ref(),
        standby_applied_recorded_at_ms: standby_before
            .as_ref()
            .and_then(|status| status.applied_recorded_at_ms),
        sync_held: injected.sync_held(),
    });
    let detail = measure_detail(old, &learned, &rpo);
    let written_after = rpo.split_brain_checkpoints.unwrap_or(0);
    let step = match fault {
        // A killed region writes nothing until it is started again: whatever it wrote after
        // the fault, it wrote after its restart, before it learned of the promotion.
        Fault::KillRegion if written_after > 0 => timer.finish(
            Outcome::Failed,
            format!(
                "{detail}; {old} wrote {written_after} checkpoint(s) after it was started again{}, before it learned that {new} was promoted: a region that comes back must learn of the promotion before it takes over (they stay in its fenced tail, accepted nowhere)",
                rpo.first_split_brain_at_ms.map_or(String::new(), |at| format!(
                    " (the first {} ms after `start` began)",
                    at - restore_started_at_ms
                ))
            ),
        ),
        Fault::Partition if written_after > 0 => {
            report.notes.push(format!(
                "{old} kept running while cut off and wrote {written_after} checkpoint(s) after the partition, until it learned of the promotion: they stay in its fenced tail, accepted nowhere"
            ));
            timer.finish(Outcome::Passed, detail)
        }
        _ => timer.finish(Outcome::Passed, detail),
    };
    report.push(step);
    report.rpo = Some(rpo);

    // 7. failback
    if options.failback {
        let timer = StepTimer::start(Step::Failback);
        let (done, outcome) =
            failback::run(&regions, old, new, &checks, &old_client, options.timeout).await;
        report.failback = Some(done);
        report.push(match outcome {
            Ok(detail) => timer.finish(Outcome::Passed, detail),
            Err(error) => timer.finish(Outcome::Failed, error),
        });
    }
}

/// Brings `old` back after a failed step (step `restore`).
async fn restore(
    fault: Fault,
    local: &LocalControl,
    old: &str,
    timeout: Duration,
    report: &mut DrillReport,
) {
    let timer = StepTimer::start(Step::Restore);
    report.push(match fault::restore(fault, local, timeout).await {
        Ok(_) => timer.finish(
            Outcome::Passed,
            format!(
                "{old} brought back ({})",
                match fault {
                    Fault::KillRegion => "start",
                    Fault::Partition => "heal",
                }
            ),
        ),
        Err(error) => timer.finish(
            Outcome::Failed,
            format!("{old} could not be brought back: {error}"),
        ),
    });
}

/// The new active region's `first_dispatch_at_ms`, read until set or
/// [`FIRST_DISPATCH_WAIT`] passed.
async fn first_dispatch(regions: &Regions, region: &str) -> Option<i64> {
    let client = regions.client(region).ok()?;
    let deadline = tokio::time::Instant::now() + FIRST_DISPATCH_WAIT;
    loop {
        if let Ok(status) = client.status().await
            && status.first_dispatch_at_ms.is_some()
        {
            return status.first_dispatch_at_ms;
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn canary_detail(runs: &[CanaryRun], tasks: u32) -> String {
    let progress: Vec<String> = runs
        .iter()
        .filter_map(|run| run.at_fault.map(|at| (run.index, at)))
        .map(|(index, at)| {
            format!(
                "#{index} {}/{} done, {} running",
                at.succeeded, at.total, at.running
            )
        })
        .collect();
    format!(
        "{} run(s) of {} ({tasks} tasks) caught in flight: {}",
        runs.len(),
        canary::CANARY_WORKFLOW,
        progress.join("; ")
    )
}

fn fault_detail(injected: &FaultReport) -> String {
    match injected.fault {
        Fault::KillRegion => format!(
            "SIGKILL to {} process(es) of {} ({}), latest position {}",
            injected.processes_killed,
            injected.region,
            injected
                .killed
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            injected
                .active_latest_position
                .map_or("unknown".to_string(), |position| position.to_string())
        ),
        Fault::Partition => format!(
            "{} partitioned, latest position {}",
            injected.region,
            injected
                .active_latest_position
                .map_or("unknown".to_string(), |position| position.to_string())
        ),
    }
}

fn measure_detail(old: &str, learned: &RegionStatus, rpo: &measure::Rpo) -> String {
    match learned.tail {
        None => format!(
            "{old} came back as {} of the new active region with no unreplicated tail",
            learned.role
        ),
        Some(tail) => format!(
            "{old} came back {} with tail {}..={} ({} checkpoint(s) of {} run(s)): {} lost{}",
            learned.role,
            tail.from,
            tail.to,
            rpo.tail_checkpoints,
            learned.tail_runs.len(),
            rpo.lost_checkpoints
                .map_or("?".to_string(), |count| count.to_string()),
            match rpo.split_brain_checkpoints {
                Some(0) | None => String::new(),
                Some(count) => format!(", {count} written after the fault (never accepted)"),
            }
        ),
    }
}
