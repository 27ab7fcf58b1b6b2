//! The disaster-recovery calls of [`Client`] (`tandem.v1.DrService`): a region's status,
//! promotion, demotion and rejoining. What `tandem dr` drives.
//!
//! The status is answered by any replica; the other calls by the region's leader (the
//! client follows `not_leader` to it). They are never refused as `region_not_active`: they
//! are how a region's role changes.

use tonic::transport::Channel;

use crate::client::{Client, protocol};
use crate::error::ClientError;
use crate::failover::{Resend, Route};
use crate::proto;
use crate::proto::dr_service_client::DrServiceClient;
use crate::region_status::RegionStatus;

impl Client {
    /// The region's disaster-recovery status: role, epochs, log positions, the standby's
    /// replication state (see [`RegionStatus`]). Answered by any replica.
    /// [`ClientError::Unavailable`] when no replica can be reached or its store cannot be
    /// read; `FAILED_PRECONDITION` (`dr_not_configured`) for a region without `[dr]`.
    pub async fn region_status(&self) -> Result<RegionStatus, ClientError> {
        let answer = self
            .endpoints
            .call(Route::any(), |channel| async move {
                dr(channel)
                    .get_region_status(proto::GetRegionStatusRequest {})
                    .await
            })
            .await?;
        RegionStatus::from_proto(answer.response.into_inner(), &answer.endpoint)
            .map_err(|error| protocol(&answer.endpoint, error))
    }

    /// Makes this standby region active with `region_epoch` (0: one more than the highest
    /// region epoch the region knows); its leader then resumes every non-terminal run.
    /// Returns the region's status after the promotion.
    ///
    /// Promoting an active region to the epoch it has is answered with its status (so a
    /// promotion whose reply was lost can be sent again); with epoch 0 it is sent again only
    /// when connecting failed. Errors: `FAILED_PRECONDITION` with code `dr_role` when the
    /// region is not a standby, `replication_epoch` when `region_epoch` is not higher than
    /// the region's.
    pub async fn promote(&self, region_epoch: u64) -> Result<RegionStatus, ClientError> {
        let resend = if region_epoch == 0 {
            Resend::OnlyIfNotSent
        } else {
            Resend::Safe
        };
        let request = proto::PromoteRequest { region_epoch };
        self.dr_call(resend, move |mut client| async move {
            client.promote(request).await
        })
        .await
    }

    /// Tells this region that `new_active` is active with `region_epoch`, which forked from
    /// this region's log after `fork_position` (the new active region's
    /// `promoted_at_position`). An active region stops scheduling at once and refuses every
    /// write; it becomes a standby of `new_active` when its log has nothing after
    /// `fork_position`, else `fenced` with that tail. Ignored (the status is returned) when
    /// `region_epoch` is not higher than the region's, so it is safe to send again.
    pub async fn demote(
        &self,
        new_active: impl Into<String>,
        region_epoch: u64,
        fork_position: u64,
    ) -> Result<RegionStatus, ClientError> {
        let request = proto::DemoteRequest {
            new_active: new_active.into(),
            region_epoch,
            fork_position,
        };
        self.dr_call(Resend::Safe, move |mut client| {
            let request = request.clone();
            async move { client.demote(request).await }
        })
        .await
    }

    /// Makes this fenced (or not yet demoted) region a standby of `active_region`, which is
    /// active with `region_epoch` and was promoted after `fork_position` (read them from the
    /// active region's status: `region_epoch` and `promoted_at_position`): the region first
    /// learns that epoch when it is newer than its own (as [`Client::demote`] does), then
    /// its unreplicated tail is archived (kept in `dr_tail`) and its log cut back to the fork
    /// position; its replicator then pulls from `active_region`. A standby is answered with
    /// its status, so it is safe to send again. Errors: `FAILED_PRECONDITION` (`dr_role`)
    /// when the region is still active after that.
    pub async fn rejoin(
        &self,
        active_region: impl Into<String>,
        region_epoch: u64,
        fork_position: u64,
    ) -> Result<RegionStatus, ClientError> {
        let request = proto::RejoinRequest {
            active_region: active_region.into(),
            region_epoch,
            fork_position,
        };
        self.dr_call(Resend::Safe, move |mut client| {
            let request = request.clone();
            async move { client.rejoin(request).await }
        })
        .await
    }

    /// Sends a DR call that needs the region's leader and converts its status reply.
    async fn dr_call<F, Fut>(
        &self,
        resend: Resend,
        mut send: F,
    ) -> Result<RegionStatus, ClientError>
    where
        F: FnMut(DrServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<proto::RegionStatus>, tonic::Status>>,
    {
        let answer = self
            .endpoints
            .call(Route::leader(resend), |channel| send(dr(channel)))
            .await?;
        RegionStatus::from_proto(answer.response.into_inner(), &answer.endpoint)
            .map_err(|error| protocol(&answer.endpoint, error))
    }
}

/// A `DrService` client on `channel`.
fn dr(channel: Channel) -> DrServiceClient<Channel> {
    DrServiceClient::new(channel)
}
