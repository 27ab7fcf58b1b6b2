//! The region service's settings, as one typed struct passed in explicitly.
//!
//! The `tandem serve` command builds it from `region.toml`, `TANDEM_*` env vars and flags
//! (flags win over env, env over the file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::dr::DrConfig;

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
    /// This replica's id among the region's replicas (unique; `tandem serve` defaults it to
    /// `<host>-<pid>`), shown in errors and `tandem cluster status`.
    pub member_id: String,
    /// The address clients use to reach this replica (`http://10.0.0.5:7233`).
    pub advertise: String,
    /// etcd client URLs of the region's leader election; empty runs a single replica without
    /// election.
    pub etcd_endpoints: Vec<String>,
    /// How long `tandem cluster status` and other etcd reads wait for etcd.
    pub etcd_timeout: Duration,
    /// Cross-region disaster recovery (`[dr]` and `[replication]`); `None`: the region runs
    /// alone, always active.
    pub dr: Option<DrConfig>,
}

impl ServiceConfig {
    /// Settings for `region` listening on `listen` with state in `state_dir`, and defaults
    /// for the rest: parallelism 64, kill grace 10 s, member id `<host>-<pid>`, advertised
    /// address `http://<listen>`, no leader election, etcd timeout 5 s, no disaster recovery.
    pub fn new(region: impl Into<String>, listen: SocketAddr, state_dir: PathBuf) -> Self {
        ServiceConfig {
            region: region.into(),
            listen,
            state_dir,
            parallelism: 64,
            kill_grace: Duration::from_secs(10),
            member_id: default_member_id(),
            advertise: format!("http://{listen}"),
            etcd_endpoints: Vec::new(),
            etcd_timeout: Duration::from_secs(5),
            dr: None,
        }
    }
}

/// `<host>-<pid>`: unique among the processes of a region.
pub fn default_member_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}
