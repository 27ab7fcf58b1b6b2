//! The service's errors and their one mapping to `tonic::Status`.
//!
//! Every status also carries the metadata key `tandem-error-code` with a stable snake_case code
//! (as Quickwit does), so the SDK can rebuild a typed error without parsing messages.

use tonic::{Code, Status};

use crate::checkpoint::RunId;
use crate::executor::remote::{RemoteError, RemoteErrorKind};
use crate::leadership::LeaderInfo;
use crate::runner::RunnerError;
use crate::store::StoreError;
use crate::store::replication::RegionRole;

/// Metadata key of the stable error code on every error status.
pub const ERROR_CODE_KEY: &str = "tandem-error-code";

/// Metadata key of the leader's address (`http://host:port`) on a `not_leader` status, when
/// a leader is known: the SDK sends the call there.
pub const LEADER_ADDRESS_KEY: &str = "tandem-leader-address";

/// Metadata key of the active region's name on a `region_not_active` status: the SDK tries
/// its next endpoint (a client given several regions' replicas follows a promotion).
pub const ACTIVE_REGION_KEY: &str = "tandem-active-region";

/// Errors of the region service's handlers.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is malformed or over its limit. `field` is the field path
    /// (`params["region"]`, `page_size`).
    #[error("invalid request field `{field}`: {message}")]
    InvalidArgument {
        /// Field path in the request.
        field: String,
        /// What was expected, what was found, and the limit where one applies.
        message: String,
    },
    /// The DAG file text does not compile; the text lists every error like `tandem validate`.
    #[error("the workflow does not validate:\n{0}")]
    InvalidWorkflow(String),
    /// No run with this id.
    #[error("run {run_id} not found in region {region}")]
    RunNotFound {
        /// The run id asked for.
        run_id: RunId,
        /// The region asked.
        region: String,
    },
    /// No workflow registered under this name (and version).
    #[error("workflow `{name}`{} is not registered in region {region}; register it first (`tandem submit FILE` does)", version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default())]
    WorkflowNotFound {
        /// Name asked for.
        name: String,
        /// Version asked for, if one was.
        version: Option<String>,
        /// The region asked.
        region: String,
    },
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Creating or resuming a run failed.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A worker call about a lease failed (a malformed field becomes
    /// [`ServiceError::InvalidArgument`] instead, see the `From` conversion).
    #[error(transparent)]
    Remote(RemoteError),
    /// The run is not driven right now (its driver is being restarted after a store error),
    /// so a request that needs its driver cannot be served yet.
    #[error(
        "run {run_id} is paused in region {region} while its driver restarts (the store was unreachable); retry shortly"
    )]
    RunPaused {
        /// The run.
        run_id: RunId,
        /// The region.
        region: String,
    },
    /// This replica does not lead its region, so it cannot serve a call that schedules or
    /// writes; the leader, when one is known, is named (and its address is in the
    /// [`LEADER_ADDRESS_KEY`] metadata).
    #[error("{}", not_leader(region, member_id, leader.as_ref()))]
    NotLeader {
        /// The region.
        region: String,
        /// This replica.
        member_id: String,
        /// The leader, when one is known.
        leader: Option<LeaderInfo>,
    },
    /// This replica was elected and is still taking over the region's runs.
    #[error(
        "replica {member_id} of region {region} was elected leader (epoch {epoch}) and is still resuming the region's runs; retry shortly"
    )]
    LeaderStarting {
        /// The region.
        region: String,
        /// This replica.
        member_id: String,
        /// Its leader epoch.
        epoch: u64,
    },
    /// This replica's region is not active (a standby applying another region's log, or a
    /// fenced ex-active region): it refuses calls that start runs, register workflows,
    /// cancel runs or serve workers, naming the active region (also in the
    /// [`ACTIVE_REGION_KEY`] metadata).
    #[error(
        "region {region} is {role}, not active: it does not start, cancel or run workflows; the active region is {active_region}, send the call there"
    )]
    RegionNotActive {
        /// This region.
        region: String,
        /// Its role.
        role: RegionRole,
        /// The region it knows as active.
        active_region: String,
    },
    /// A standby asked to replicate from this region with a higher region epoch than this
    /// region's: it was promoted after this region's log forked from it.
    #[error(
        "region {region} (region epoch {region_epoch}) cannot ship its log to region {standby_region}, whose region epoch {standby_epoch} is higher: a region was promoted after {region}'s log forked; {region} must learn the new epoch and rejoin as a standby (`tandem dr rejoin`)"
    )]
    ReplicationEpoch {
        /// This region.
        region: String,
        /// Its region epoch.
        region_epoch: u64,
        /// The standby asking.
        standby_region: String,
        /// The standby's region epoch.
        standby_epoch: u64,
    },
    /// A standby asked to resume after a position this region's log does not have: the two
    /// logs are not the same history.
    #[error(
        "region {standby_region} asked region {region} for its log after position {after_position}, but {region}'s latest position is {latest}: the standby holds positions this region never wrote (the logs diverged)"
    )]
    StandbyAhead {
        /// This region.
        region: String,
        /// Its latest position.
        latest: u64,
        /// The standby asking.
        standby_region: String,
        /// The position it asked to resume after.
        after_position: u64,
    },
    /// A disaster-recovery call reached a replica whose region has no `[dr]` settings.
    #[error(
        "region {region} is not set up for disaster recovery: start its replicas with a `[dr]` section (see `tandem serve --help`)"
    )]
    DrNotConfigured {
        /// The region.
        region: String,
    },
    /// etcd could not be read (cluster status).
    #[error("cannot read the region's members from etcd at {endpoints}: {detail}")]
    EtcdUnavailable {
        /// The etcd endpoints, comma-separated.
        endpoints: String,
        /// etcd's error.
        detail: String,
    },
}

fn not_leader(region: &str, member_id: &str, leader: Option<&LeaderInfo>) -> String {
    match leader {
        Some(leader) => format!(
            "replica {member_id} of region {region} is a follower: the leader is {} at {} (epoch {}); calls that schedule or write go there",
            leader.member_id, leader.address, leader.epoch
        ),
        None => format!(
            "replica {member_id} of region {region} is a follower and no leader is known right now (an election is under way or etcd is unreachable); retry shortly"
        ),
    }
}

impl ServiceError {
    /// The gRPC code and the stable `tandem-error-code` of this error.
    pub fn codes(&self) -> (Code, &'static str) {
        match self {
            ServiceError::InvalidArgument { .. } => (Code::InvalidArgument, "invalid_argument"),
            ServiceError::InvalidWorkflow(_) => (Code::InvalidArgument, "invalid_workflow"),
            ServiceError::RunNotFound { .. } => (Code::NotFound, "run_not_found"),
            ServiceError::WorkflowNotFound { .. } => (Code::NotFound, "workflow_not_found"),
            ServiceError::Store(error) | ServiceError::Runner(RunnerError::Store(error)) => {
                store_codes(error)
            }
            ServiceError::Runner(RunnerError::Params(_)) => {
                (Code::InvalidArgument, "invalid_params")
            }
            ServiceError::Runner(RunnerError::AlreadyFinished { .. }) => {
                (Code::FailedPrecondition, "run_finished")
            }
            ServiceError::Runner(RunnerError::OwnerAlive { .. }) => {
                (Code::FailedPrecondition, "run_owned")
            }
            ServiceError::Runner(RunnerError::Replay(_)) => (Code::DataLoss, "replay_failed"),
            ServiceError::Remote(error) => remote_codes(error),
            ServiceError::RunPaused { .. } => (Code::Unavailable, "run_paused"),
            ServiceError::NotLeader { .. } => (Code::Unavailable, "not_leader"),
            ServiceError::LeaderStarting { .. } => (Code::Unavailable, "leader_starting"),
            ServiceError::EtcdUnavailable { .. } => (Code::Unavailable, "etcd_unavailable"),
            ServiceError::RegionNotActive { .. } => (Code::FailedPrecondition, "region_not_active"),
            ServiceError::ReplicationEpoch { .. } => {
                (Code::FailedPrecondition, "replication_epoch")
            }
            ServiceError::StandbyAhead { .. } => (Code::FailedPrecondition, "replication_gap"),
            ServiceError::DrNotConfigured { .. } => (Code::FailedPrecondition, "dr_not_configured"),
        }
    }
}

fn store_codes(error: &StoreError) -> (Code, &'static str) {
    match error {
        StoreError::RunNotFound { .. } => (Code::NotFound, "run_not_found"),
        StoreError::WorkflowNotFound { .. } => (Code::NotFound, "workflow_not_found"),
        StoreError::RunExists { .. } => (Code::AlreadyExists, "run_exists"),
        StoreError::Fenced { .. } => (Code::FailedPrecondition, "fenced"),
        StoreError::Corrupt { .. } => (Code::DataLoss, "store_corrupt"),
        StoreError::SchemaTooNew { .. } => (Code::FailedPrecondition, "schema_too_new"),
        StoreError::InvalidAppend { .. } => (Code::Internal, "invalid_append"),
        StoreError::Backend { .. } => (Code::Unavailable, "store_unavailable"),
        StoreError::Superseded { .. } => (Code::Unavailable, "not_leader"),
        StoreError::NotActive { .. } => (Code::FailedPrecondition, "region_not_active"),
        StoreError::NotStandby { .. } => (Code::FailedPrecondition, "dr_role"),
        StoreError::ReplicationGap { .. } => (Code::FailedPrecondition, "replication_gap"),
        StoreError::StaleRegionEpoch { .. } => (Code::FailedPrecondition, "replication_epoch"),
        StoreError::RegionMismatch { .. } => (Code::FailedPrecondition, "region_mismatch"),
    }
}

fn remote_codes(error: &RemoteError) -> (Code, &'static str) {
    let stable = match error {
        RemoteError::InvalidLeaseId { .. } => "invalid_lease_id",
        RemoteError::InvalidArgument { .. } => "invalid_argument",
        RemoteError::UnknownLease { .. } => "unknown_lease",
        RemoteError::NotLeased { .. } => "not_leased",
        RemoteError::Ended { .. } => "lease_ended",
        RemoteError::NotAccepted { .. } => "result_not_accepted",
        RemoteError::Unavailable { .. } => "result_not_durable",
    };
    let code = match error.kind() {
        RemoteErrorKind::InvalidArgument => Code::InvalidArgument,
        RemoteErrorKind::NotFound => Code::NotFound,
        RemoteErrorKind::FailedPrecondition => Code::FailedPrecondition,
        RemoteErrorKind::Unavailable => Code::Unavailable,
    };
    (code, stable)
}

impl From<RemoteError> for ServiceError {
    /// The remote executor checks what workers report (outputs, error texts, details); its
    /// field errors read like every other request field's.
    fn from(error: RemoteError) -> ServiceError {
        match error {
            RemoteError::InvalidArgument { field, problem } => ServiceError::InvalidArgument {
                field,
                message: problem,
            },
            other => ServiceError::Remote(other),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        let (code, stable) = error.codes();
        let leader_address = match &error {
            ServiceError::NotLeader {
                leader: Some(leader),
                ..
            } => tonic::metadata::MetadataValue::try_from(leader.address.as_str()).ok(),
            _ => None,
        };
        let active_region = match &error {
            ServiceError::RegionNotActive { active_region, .. }
            | ServiceError::Store(StoreError::NotActive { active_region, .. }) => {
                tonic::metadata::MetadataValue::try_from(active_region.as_str()).ok()
            }
            _ => None,
        };
        if code == Code::Internal || code == Code::DataLoss {
            tracing::error!(%error, "request failed");
        }
        let mut status = Status::new(code, error.to_string());
        status.metadata_mut().insert(
            ERROR_CODE_KEY,
            tonic::metadata::MetadataValue::from_static(stable),
        );
        if let Some(address) = leader_address {
            status.metadata_mut().insert(LEADER_ADDRESS_KEY, address);
        }
        if let Some(region) = active_region {
            status.metadata_mut().insert(ACTIVE_REGION_KEY, region);
        }
        status
    }
}
