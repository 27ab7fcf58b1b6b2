//! The scheduler of a run, as a pure state machine.
//!
//! - [`state`]: [`RunState`], the fold of a run's checkpoints ([`RunState::apply`]).
//! - [`trigger`]: Airflow's trigger rules over upstream outcomes.
//! - [`machine`]: [`RunMachine::handle`]: (state, [`Input`]) → events to commit + [`Action`]s
//!   to perform after the commit.
//! - [`replay`]: rebuilding a [`RunState`] from stored checkpoints.

pub mod machine;
pub mod replay;
pub mod state;
pub mod trigger;

#[cfg(test)]
mod tests;

pub use machine::{Action, Dispatch, DispatchKind, Input, RunMachine, Step, describe};
pub use replay::{ReplayError, rebuild};
pub use state::{AttemptRecord, RunPhase, RunState, TaskCounts, TaskRuntime, TaskStatus};
