#![warn(missing_docs)]

//! Tandem's gRPC API (package `tandem.v1`) and its Rust SDK.
//!
//! - [`Client`]: register workflows; start, get, list, cancel, watch and wait for runs; the
//!   region's replicas and leader ([`Client::cluster_status`]); cross-region disaster
//!   recovery ([`Client::region_status`], [`Client::promote`], [`Client::demote`],
//!   [`Client::rejoin`]).
//! - [`Worker`]: run attempts of tasks declared with `worker: { queue, type }` with async
//!   handlers: bounded concurrency, automatic heartbeats, graceful shutdown.
//! - [`ClientError`]: every failure of a call, by gRPC code, with the server's
//!   `tandem-error-code`.
//! - [`ClientConfig`]: one or more servers of a region (a comma-separated list parses with
//!   [`ClientConfig::parse`]); the client and the worker follow the region's leader across
//!   them, within a failover timeout.
//! - [`proto`]: the generated messages, tonic clients and servers of `api/proto/tandem/v1/`.
//!
//! Units follow the protos: times are milliseconds since the Unix epoch (`*_unix_ms`),
//! durations are [`std::time::Duration`] in the SDK and milliseconds (`*_ms`) on the wire.

mod backoff;
mod client;
mod cluster_status;
mod config;
mod connection;
mod dr_calls;
mod error;
mod failover;
#[cfg(test)]
mod fake_region;
mod region_status;
mod types;
mod watch;
pub mod worker;

pub use backoff::Backoff;
pub use client::{Client, ListRuns, RegisteredWorkflow, RunPage, StartRun, StartedRun, Submitted};
pub use cluster_status::{ClusterLeader, ClusterMember, ClusterStatus, MemberRole};
pub use config::{ClientConfig, parse_endpoints};
pub use error::{
    ACTIVE_REGION_KEY, ClientError, ERROR_CODE_KEY, LEADER_ADDRESS_KEY, LEADER_STARTING,
    NOT_LEADER, REGION_NOT_ACTIVE,
};
pub use region_status::{RegionRole, RegionStatus, TailRange, TailRun};
pub use types::{Run, RunState, Task, TaskCounts, TaskState};
pub use worker::{
    CancelReason, Outputs, TaskContext, TaskError, Worker, WorkerBuilder, WorkerConfigError,
    WorkerStats,
};

/// The generated code of package `tandem.v1` (prost messages, tonic clients and servers).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("tandem.v1");

    /// The encoded `FileDescriptorSet` of package `tandem.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("tandem_v1_descriptor");
}
