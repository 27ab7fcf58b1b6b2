//! Test infrastructure that tests, benchmarks and `tandem bench` share: a private, throw-away
//! PostgreSQL server ([`TempPostgres`]) and etcd server ([`TempEtcd`]).
//!
//! Always compiled (not only under `cfg(test)`), so the CLI's benchmarks and the workspace's
//! integration tests can start their own PostgreSQL too. Nothing here is used by the engine
//! itself.

mod binaries;
mod temp_etcd;
mod temp_postgres;
mod watchdog;

pub use binaries::PG_BIN_ENV;
pub use temp_etcd::{ETCD_BIN_ENV, TempEtcd, TempEtcdError};
pub use temp_postgres::{StopMode, TempPostgres, TempPostgresError, TempPostgresOptions};

#[cfg(test)]
mod tests;
