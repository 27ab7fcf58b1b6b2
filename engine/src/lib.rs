//! Tandem's engine: the scheduler of runs, the executors that run attempts, and the
//! checkpoint stores that make every state change durable before its effect.
//!
//! - [`checkpoint`]: the events that make up a run's history.
//! - [`scheduler`]: the pure state machine of a run: (state, input) → (checkpoints, actions).
//! - [`runner`]: the I/O loop around it: commit checkpoints, then perform actions.
//! - [`executor`]: shell attempts in their own process groups.
//! - [`store`]: the `CheckpointStore` interface and its SQLite and PostgreSQL implementations.
//! - [`testing`]: a throw-away PostgreSQL server for tests and benchmarks.

pub mod checkpoint;
pub mod executor;
pub mod paths;
pub mod runner;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod testing;
