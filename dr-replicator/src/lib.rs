#![warn(missing_docs)]

//! Tandem's cross-region disaster recovery (DR).
//!
//! - [`replicator`]: [`Replicator`], the process of `tandem replicate`: while its region is a
//!   standby it streams the active region's checkpoint log and applies it to its store.
//! - [`topology`]: the DR topology file of `tandem dr` (regions, their replicas, local
//!   control for drills).
//! - [`region_client`]: `DrService` calls to one region's replicas ([`RegionClient`]), and
//!   [`region_status`]: the typed [`RegionStatus`] they return.
//! - The operations of `tandem dr`, each a library call returning a serializable result:
//!   [`status`] (every region's state and lag), [`promote`], [`rejoin`], [`switchover`].
//! - [`drill`]: `tandem dr drill`, a disaster recovery drill with measured RPO and RTO.

pub mod drill;
pub mod error;
pub mod promote;
pub mod region_client;
pub mod region_status;
pub mod rejoin;
pub mod replicator;
pub mod status;
pub mod switchover;
pub mod topology;

pub use error::DrError;
pub use promote::{Demotion, PromoteOutcome, promote};
pub use region_client::{DrClientConfig, RegionClient};
pub use region_status::{Lag, RegionStatus, ReplicationMode};
pub use rejoin::{RejoinOutcome, rejoin};
pub use replicator::{Phase, Replicator, ReplicatorConfig, ReplicatorError, ReplicatorStatus};
pub use status::{DrStatus, RegionReport, Regions};
pub use switchover::{CatchUp, SwitchoverOptions, SwitchoverOutcome, switchover};
pub use topology::{LocalControl, RegionEntry, Topology, TopologyError};
