//! The report of a region that stopped being active: a standby lost nothing; a fenced
//! region's unreplicated tail is logged at ERROR with its runs (never dropped silently:
//! `tandem dr status` shows it, `tandem dr rejoin` archives it).

use super::Dr;
use crate::store::replication::{RegionRole, RegionState};

impl Dr {
    /// Logs a fenced region's unreplicated tail at ERROR, with its runs (never dropped
    /// silently: `tandem dr status` shows it, `tandem dr rejoin` archives it).
    pub(crate) async fn report_tail(&self, state: &RegionState) {
        match state.role {
            RegionRole::Standby => {
                tracing::warn!(region = %state.region, active_region = %state.active_region, region_epoch = state.region_epoch, "this region is a standby now; nothing of its log was lost");
            }
            RegionRole::Fenced => {
                let report = match self.store.tail_report().await {
                    Ok(report) => report,
                    Err(error) => {
                        tracing::error!(region = %state.region, tail = ?state.tail, %error, "this region is fenced with an unreplicated tail, which cannot be listed now; see `tandem dr status`");
                        return;
                    }
                };
                let runs: Vec<String> = report
                    .runs
                    .iter()
                    .map(|run| {
                        format!(
                            "{} ({}, {})",
                            run.run_id,
                            run.workflow,
                            run.checkpoints_text()
                        )
                    })
                    .collect();
                tracing::error!(
                    region = %state.region,
                    active_region = %state.active_region,
                    tail_from = report.tail.map(|tail| tail.from),
                    tail_to = report.tail.map(|tail| tail.to),
                    runs = %runs.join("; "),
                    "this region is fenced: these checkpoints were never replicated to the active region and are not part of its history; they are kept until `tandem dr rejoin` archives them"
                );
            }
            RegionRole::Active => {}
        }
    }
}
