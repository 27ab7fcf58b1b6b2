//! Tandem's engine: the scheduler of runs, the executors that run attempts, and the
//! checkpoint stores that make every state change durable before its effect.
//!
//! - [`checkpoint`]: the events that make up a run's history.
//! - [`scheduler`]: the pure state machine of a run: (state, input) → (checkpoints, actions).
//! - [`runner`]: the I/O loop around it: commit checkpoints, then perform actions.
//! - [`executor`]: shell attempts in their own process groups.
//! - [`leadership`]: leader election inside a region through etcd (epoch, lease, members).
//! - [`schedule`]: cron schedules: the due ticks of a workflow and the ticker that fires them.
//! - [`store`]: the `CheckpointStore` interface and its SQLite and PostgreSQL implementations.
//! - [`testing`]: throw-away PostgreSQL and etcd servers for tests and benchmarks.

pub mod checkpoint;
pub mod executor;
pub mod leadership;
pub mod paths;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod testing;
