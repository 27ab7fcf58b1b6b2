//! The region service's settings, as one typed struct passed in explicitly.
//!
//! The `tandem serve` command builds it from `region.toml`, `TANDEM_*` env vars and flags
//! (flags win over env, env over the file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one region's engine.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The region's name (`eu-west`), shown in errors and spans.
    pub region: String,
    /// Address the gRPC server listens on (`127.0.0.1:7233`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Directory for shell attempts' stdout, stderr and outputs files, and the working
    /// directory of shell tasks without `working_dir` (relative ones resolve against it).
    pub state_dir: PathBuf,
    /// Most shell attempts running at once per run (≥ 1).
    pub parallelism: usize,
    /// Grace between SIGTERM and SIGKILL when a shell attempt is cancelled or times out.
    pub kill_grace: Duration,
}

impl ServiceConfig {
    /// Settings for `region` listening on `listen` with state in `state_dir`, and defaults
    /// for the rest: parallelism 64, kill grace 10 s.
    pub fn new(region: impl Into<String>, listen: SocketAddr, state_dir: PathBuf) -> Self {
        ServiceConfig {
            region: region.into(),
            listen,
            state_dir,
            parallelism: 64,
            kill_grace: Duration::from_secs(10),
        }
    }
}
