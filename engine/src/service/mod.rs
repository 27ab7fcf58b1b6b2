//! The region service: the engine of one region as a long-running gRPC server.
//!
//! - [`config`]: the service's settings.
//! - [`region`]: the runs it drives (start, cancel, observe); `drivers` supervises their
//!   tasks and `scheduled` starts the runs of cron schedules.
//! - [`replica`]: leader or follower, and the hand-overs between the two.
//! - [`dr`]: cross-region disaster recovery (replication stream, sync mode, region roles).
//! - [`workflow_api`], [`worker_api`], [`cluster_api`]: thin `tandem.v1` handlers over the
//!   region.
//! - [`server`]: the tonic server with health and reflection.
//! - [`convert`], [`limits`], [`error`]: messages, request limits, and the one mapping of
//!   errors to gRPC status codes.

pub mod cluster_api;
pub mod config;
pub mod convert;
pub mod dr;
mod drivers;
pub mod error;
pub mod limits;
pub mod region;
pub mod replica;
mod scheduled;
pub mod server;
pub mod worker_api;
pub mod workflow_api;

pub use config::ServiceConfig;
pub use dr::{DrConfig, ReplicationConfig, ReplicationMode};
pub use error::ServiceError;
pub use region::{Region, RegionParts};
pub use replica::{Opened, ReplicaRole};
pub use server::{ServeError, serve};

#[cfg(test)]
mod tests;
