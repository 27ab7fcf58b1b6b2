//! `dr-drill`: `tandem dr drill --fault kill-region` on a fresh deployment per sample (the
//! method is in [`super`]).

use std::path::Path;
use std::sync::Arc;

use tandem_dr::drill::{self, DrillOptions, Fault, StepObserver};

use super::super::super::{Failure, runtime};
use super::deployment::Deployment;
use super::drill_report::{DrillResult, DrillSample};

/// The workload's name.
pub const NAME: &str = "dr-drill";

/// Runs `repeat` drills, each on a deployment of its own (started, drilled, stopped).
///
/// Errors: a deployment cannot be started or stopped, or a drill is refused before it
/// touches anything (usage or preflight: the error quotes the logs). A drill that runs and
/// fails a step or misses an objective is a sample, not an error.
pub fn run(exe: &Path, repeat: u32, dir: &Path) -> Result<DrillResult, Failure> {
    let runtime = runtime()?;
    let mut samples = Vec::new();
    for index in 1..=repeat {
        let deployment = Deployment::up(exe, dir, NAME)?;
        let mut options = DrillOptions::new(deployment.topology().clone(), Fault::KillRegion);
        options.progress = Some(StepObserver(Arc::new(move |step| {
            eprintln!(
                "{NAME} {index}/{repeat}: {} {} ({} ms)",
                step.step.as_str(),
                step.outcome.as_str(),
                step.duration_ms
            );
        })));
        let report = runtime.block_on(drill::run(options)).map_err(|error| {
            deployment.failure(format!(
                "{NAME} {index}/{repeat}: the drill was refused: {error}"
            ))
        })?;
        let sample = DrillSample::of(&report);
        eprintln!(
            "{NAME} {index}/{repeat}: {}, RTO {} ms, RPO {} ms ({} checkpoints)",
            if sample.passed { "passed" } else { "FAILED" },
            sample.rto_ms.map_or("-".to_string(), |ms| ms.to_string()),
            sample.rpo_ms.map_or("-".to_string(), |ms| ms.to_string()),
            sample
                .rpo_checkpoints
                .map_or("-".to_string(), |count| count.to_string())
        );
        deployment.down()?;
        samples.push(sample);
    }
    Ok(DrillResult { samples })
}
