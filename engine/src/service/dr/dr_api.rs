//! `tandem.v1.DrService`: the region's disaster-recovery status (every replica) and the
//! calls that change its role (the region's leader, whatever the role): promote, demote,
//! rejoin. Each change is published to the replica's role watch at once, so the leader
//! takes over (promotion) or stops every driver (demotion) without waiting for the next
//! read of the store.

use tandem_api::proto::{self, dr_service_server::DrService};
use tonic::{Request, Response, Status};

use super::Dr;
use crate::service::error::ServiceError;
use crate::service::limits::{self, invalid};
use crate::service::region::Region;
use crate::service::replica::ReplicaRole;
use crate::store::replication::{RegionRole, RegionState};
use crate::store::{RoleRefusal, StoreError};

/// The handlers of `DrService` over a [`Region`].
#[derive(Clone)]
pub struct DrApi {
    region: Region,
}

impl DrApi {
    /// Handlers for `region`.
    pub fn new(region: Region) -> Self {
        DrApi { region }
    }

    fn dr(&self) -> Result<&Dr, ServiceError> {
        self.region
            .dr()
            .map(AsRef::as_ref)
            .ok_or_else(|| ServiceError::DrNotConfigured {
                region: self.region.name().to_string(),
            })
    }

    /// The status reply after `state` (read or just written).
    async fn status(&self, state: RegionState) -> Result<proto::RegionStatus, ServiceError> {
        let dr = self.dr()?;
        dr.watch.publish(state.clone());
        let latest = dr.store.latest_position().await?;
        let tail = dr.store.tail_report().await?;
        let promotions = dr.watch.promotions();
        let promoted_at_ms = promotions.promoted_at(&state);
        let first_dispatch_at_ms = promotions
            .first_dispatch_at(dr.store.as_ref(), &state)
            .await?;
        let sync = dr.progress.sync_state();
        let (leader_member, leader_epoch) = match self.region.role() {
            ReplicaRole::Leading { epoch }
            | ReplicaRole::Starting { epoch }
            | ReplicaRole::Standby { epoch, .. } => (self.region.member_id().to_string(), epoch),
            ReplicaRole::Following {
                leader: Some(leader),
            } => (leader.member_id, leader.epoch),
            ReplicaRole::Following { leader: None } => (String::new(), 0),
        };
        let active = state.role == RegionRole::Active;
        let tail_range = state.tail.or(tail.tail);
        Ok(proto::RegionStatus {
            region: state.region,
            role: state.role.as_str().to_string(),
            region_epoch: state.region_epoch,
            active_region: state.active_region,
            latest_position: latest,
            applied_position: if active {
                latest
            } else {
                state.applied_position
            },
            applied_at_ms: state.applied_at.unwrap_or(0),
            applied_recorded_at_ms: state.applied_recorded_at.unwrap_or(0),
            source_latest_position: state.source_latest_position,
            promoted_at_position: state.promoted_at_position.unwrap_or(0),
            tail_from: tail_range.map_or(0, |range| range.from),
            tail_to: tail_range.map_or(0, |range| range.to),
            tail_runs: tail
                .runs
                .into_iter()
                .map(|run| proto::TailRun {
                    run_id: run.run_id.to_string(),
                    workflow: run.workflow,
                    checkpoints: run.checkpoints,
                    created_in_tail: run.created_in_tail,
                })
                .collect(),
            replication_mode: dr.config.replication.mode.as_str().to_string(),
            sync_degraded_since_ms: sync.degraded_since.unwrap_or(0),
            standby_acked_position: sync.acked,
            standby_region: dr.progress.standby().unwrap_or_default(),
            leader_member,
            leader_epoch,
            archived_tail_checkpoints: tail.archived_checkpoints,
            promoted_at_ms,
            first_dispatch_at_ms,
        })
    }

    /// Checks the name of the region a call says is active.
    fn other_region(&self, field: &str, name: &str) -> Result<(), ServiceError> {
        limits::required(field, name, limits::MAX_NAME_BYTES)?;
        if name == self.region.name() {
            return Err(invalid(
                field,
                format!(
                    "expected another region than this one, found `{name}` (this region is {})",
                    self.region.name()
                ),
            ));
        }
        Ok(())
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl DrService for DrApi {
    async fn get_region_status(
        &self,
        _request: Request<proto::GetRegionStatusRequest>,
    ) -> Reply<proto::RegionStatus> {
        let state = self
            .dr()?
            .store
            .region_state()
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(self.status(state).await?))
    }

    async fn promote(&self, request: Request<proto::PromoteRequest>) -> Reply<proto::RegionStatus> {
        let dr = self.dr()?;
        self.region.require_region_leader()?;
        let asked = request.into_inner().region_epoch;
        let state = dr.store.region_state().await.map_err(ServiceError::from)?;
        if state.role == RegionRole::Active && asked != 0 && state.region_epoch == asked {
            // A promotion sent again after its reply was lost.
            return Ok(Response::new(self.status(state).await?));
        }
        let epoch = if asked == 0 {
            state.region_epoch.saturating_add(1)
        } else {
            asked
        };
        let promoted = dr.store.promote(epoch).await.map_err(ServiceError::from)?;
        tracing::warn!(region = %promoted.region, region_epoch = epoch, promoted_at_position = ?promoted.promoted_at_position, "the region was promoted: it is active now and its leader resumes every unfinished run");
        Ok(Response::new(self.status(promoted).await?))
    }

    async fn demote(&self, request: Request<proto::DemoteRequest>) -> Reply<proto::RegionStatus> {
        let dr = self.dr()?;
        self.region.require_region_leader()?;
        let request = request.into_inner();
        self.other_region("new_active", &request.new_active)?;
        let before = dr.store.region_state().await.map_err(ServiceError::from)?;
        let state = dr
            .store
            .demote(
                &request.new_active,
                request.region_epoch,
                request.fork_position,
            )
            .await
            .map_err(ServiceError::from)?;
        if state != before {
            tracing::warn!(region = %state.region, role = %state.role, new_active = %request.new_active, region_epoch = request.region_epoch, "the region was demoted");
            dr.watch.publish(state.clone());
            dr.report_tail(&state).await;
        }
        Ok(Response::new(self.status(state).await?))
    }

    async fn rejoin(&self, request: Request<proto::RejoinRequest>) -> Reply<proto::RegionStatus> {
        let dr = self.dr()?;
        self.region.require_region_leader()?;
        let request = request.into_inner();
        self.other_region("active_region", &request.active_region)?;
        let state = dr.store.region_state().await.map_err(ServiceError::from)?;
        if request.region_epoch > state.region_epoch {
            let demoted = dr
                .store
                .demote(
                    &request.active_region,
                    request.region_epoch,
                    request.fork_position,
                )
                .await
                .map_err(ServiceError::from)?;
            dr.watch.publish(demoted.clone());
            dr.report_tail(&demoted).await;
        } else if state.role != RegionRole::Active && state.active_region != request.active_region {
            return Err(ServiceError::Store(StoreError::NotStandby(Box::new(RoleRefusal {
                action: format!("rejoining region {}", request.active_region),
                region: state.region,
                role: state.role.as_str().to_string(),
                active_region: state.active_region,
                expected: format!(
                    "a region that knows {} as active (give its region epoch, higher than {}, to learn it)",
                    request.active_region, state.region_epoch
                ),
                location: dr.store.location(),
            })))
            .into());
        }
        let rejoined = dr.store.rejoin().await.map_err(ServiceError::from)?;
        tracing::warn!(region = %rejoined.region, active_region = %rejoined.active_region, applied_position = rejoined.applied_position, "the region rejoined as a standby; its replicator follows the active region");
        Ok(Response::new(self.status(rejoined).await?))
    }
}
