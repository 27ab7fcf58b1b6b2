//! `region.toml`: the settings of `tandem serve`, merged from the file, `TANDEM_*` env vars
//! and flags (a flag wins over its env var, which wins over the file).
//!
//! ```toml
//! region = "eu-west"                # the region's name
//! listen = "127.0.0.1:7233"         # gRPC address (port 0 = a free port)
//!
//! [postgres]
//! url = "postgres://tandem@db.example:5432/tandem"
//! pool_size = 16                    # connections
//! connect_timeout = "10s"
//! retry_for = "5m"                  # how long a write waits out an outage before failing
//!
//! [engine]
//! parallelism = 64                  # shell attempts at once, per run
//! kill_grace = "10s"                # SIGTERM → SIGKILL
//!
//! [telemetry]
//! otlp_endpoint = "http://127.0.0.1:4317"   # OTLP/gRPC; unset = no export
//! service_name = "tandem"
//!
//! [cluster]
//! member_id = "eu-west-1"           # unique per replica; default <host>-<pid>
//! advertise = "http://10.0.0.5:7233"   # how clients reach this replica; default http://<listen>
//!
//! [etcd]                            # leader election; without it one replica runs alone
//! endpoints = ["http://127.0.0.1:2379"]
//! lease_ttl = "5s"                  # whole seconds, at least 2s
//! connect_timeout = "5s"
//!
//! [dr]                              # cross-region disaster recovery; without it the region
//!                                   # runs alone, always active
//! role = "active"                   # recorded at first start: active | standby
//! active_region = "eu-west"         # a standby's active region at first start
//! peers = { us-east = "http://127.0.0.1:7301,http://127.0.0.1:7302" }   # the other regions
//! peer_check_interval = "1s"        # how often the active leader asks its peers
//!
//! [replication]                     # needs [dr]
//! mode = "async"                    # async | sync (a write waits for the standby)
//! sync_timeout = "2s"               # sync: longest wait before degrading to async
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::{Failure, parse_duration_arg};

mod dr;
mod store;

pub use dr::DrArgs;
pub use store::connect_store;

/// The file's shape. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    region: Option<String>,
    /// Parsed while reading, so a bad address is reported with its line and column.
    listen: Option<SocketAddr>,
    #[serde(default)]
    postgres: PostgresSection,
    #[serde(default)]
    engine: EngineSection,
    #[serde(default)]
    telemetry: TelemetrySection,
    #[serde(default)]
    cluster: ClusterSection,
    #[serde(default)]
    etcd: EtcdSection,
    /// Present: disaster recovery is on.
    dr: Option<dr::DrSection>,
    replication: Option<dr::ReplicationSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    member_id: Option<String>,
    advertise: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdSection {
    endpoints: Option<Vec<String>>,
    lease_ttl: Option<DurationText>,
    connect_timeout: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresSection {
    url: Option<String>,
    pool_size: Option<usize>,
    connect_timeout: Option<DurationText>,
    retry_for: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineSection {
    parallelism: Option<usize>,
    kill_grace: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetrySection {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
}

/// The flags that name a region's settings file, the region and its PostgreSQL store:
/// shared by `tandem serve` and `tandem replicate` (each also read from its `TANDEM_*` env
/// var). The help texts are `serve`'s; `replicate` words `--config` and `--postgres-url` for
/// itself.
#[derive(Debug, Default, Args)]
pub struct RegionArgs {
    /// The settings file (TOML); flags and env vars override it.
    #[arg(long, env = "TANDEM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The region's name [default: local].
    #[arg(long, env = "TANDEM_REGION", value_name = "NAME")]
    pub region: Option<String>,
    /// PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long, env = "TANDEM_POSTGRES_URL", value_name = "URL")]
    pub postgres_url: Option<String>,
    /// PostgreSQL connections in the pool [default: 16].
    #[arg(long, env = "TANDEM_POSTGRES_POOL_SIZE", value_name = "N")]
    pub pool_size: Option<usize>,
}

/// Flags of `tandem serve` (each also read from its `TANDEM_*` env var).
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// The settings file, the region and its store.
    #[command(flatten)]
    pub common: RegionArgs,
    /// gRPC listen address [default: 127.0.0.1:7233; port 0 picks a free port].
    #[arg(long, env = "TANDEM_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Shell attempts at once, per run [default: 64].
    #[arg(long, env = "TANDEM_PARALLELISM", value_name = "N")]
    pub parallelism: Option<usize>,
    /// Grace between SIGTERM and SIGKILL when a shell attempt stops [default: 10s].
    #[arg(long, env = "TANDEM_KILL_GRACE", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub kill_grace: Option<Duration>,
    /// OTLP/gRPC endpoint for traces (e.g. http://127.0.0.1:4317); unset = no export.
    #[arg(long, env = "TANDEM_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// This replica's id in the region, unique per replica [default: <host>-<pid>].
    #[arg(long, env = "TANDEM_MEMBER_ID", value_name = "ID")]
    pub member_id: Option<String>,
    /// The address clients use to reach this replica [default: http://<listen address>].
    #[arg(long, env = "TANDEM_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// etcd client URLs for leader election, comma-separated; unset = a single replica
    /// without election.
    #[arg(
        long,
        env = "TANDEM_ETCD_ENDPOINTS",
        value_name = "URLS",
        value_delimiter = ','
    )]
    pub etcd_endpoints: Option<Vec<String>>,
    /// TTL of the leader's etcd lease, whole seconds [default: 5s]: a dead leader is replaced
    /// within about this time; too short risks false failovers (see the README).
    #[arg(long, env = "TANDEM_LEASE_TTL", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub lease_ttl: Option<Duration>,
    /// Cross-region disaster recovery (`[dr]`, `[replication]`).
    #[command(flatten)]
    pub dr: DrArgs,
}

/// The merged settings of `tandem serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// Region name.
    pub region: String,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// State directory (shell attempts' logs).
    pub state_dir: PathBuf,
    /// PostgreSQL URL.
    pub postgres_url: String,
    /// Pool size.
    pub pool_size: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// How long a store call waits out an outage.
    pub retry_for: Duration,
    /// Shell attempts at once per run.
    pub parallelism: usize,
    /// SIGTERM → SIGKILL grace.
    pub kill_grace: Duration,
    /// OTLP endpoint, if traces are exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported traces.
    pub service_name: String,
    /// This replica's member id.
    pub member_id: String,
    /// The address clients use for this replica; `None` = `http://<bound address>`.
    pub advertise: Option<String>,
    /// etcd client URLs; empty = no leader election.
    pub etcd_endpoints: Vec<String>,
    /// The leader lease's TTL.
    pub lease_ttl: Duration,
    /// How long an etcd connection attempt waits.
    pub etcd_connect_timeout: Duration,
    /// Cross-region disaster recovery; `None`: off.
    pub dr: Option<tandem_engine::service::DrConfig>,
}

/// Default TTL of the leader's lease.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// Checks a lease TTL: whole seconds (etcd's unit), at least 2 s.
fn check_lease_ttl(origin: &str, ttl: Duration) -> Result<Duration, Failure> {
    if ttl.subsec_nanos() != 0 || ttl < Duration::from_secs(2) {
        return Err(Failure::invalid(format!(
            "{origin}: `etcd.lease_ttl`: expected whole seconds, at least 2s (etcd leases count in seconds), found {}",
            humantime::format_duration(ttl)
        )));
    }
    Ok(ttl)
}

/// A duration written like `10s` or `250ms`, parsed while reading (errors carry the line).
#[derive(Debug, Clone, Copy)]
struct DurationText(Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration_arg(&text)
            .map(DurationText)
            .map_err(serde::de::Error::custom)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::invalid(format!("cannot read {}: {error}", path.display())))?;
    toml::from_str(&text).map_err(|error| {
        // toml's message names the line, column and key.
        Failure::invalid(format!("{}: {error}", path.display()))
    })
}

/// Merges `args` over the file they name (if any) over the defaults. `state_dir` is the global
/// `--state-dir` / `TANDEM_STATE_DIR` (shell attempts' logs and working directory).
pub fn settings(args: ServeArgs, state_dir: &Path) -> Result<ServeSettings, Failure> {
    let (file, origin) = match &args.common.config {
        Some(path) => (read_file(path)?, path.display().to_string()),
        None => (FileConfig::default(), "settings".to_string()),
    };
    let listen = match args.listen {
        Some(text) => text.parse().map_err(|error| {
            Failure::invalid(format!(
                "--listen / TANDEM_LISTEN: expected HOST:PORT with an IP address (like 127.0.0.1:7233), found `{text}`: {error}"
            ))
        })?,
        None => file
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7233))),
    };
    let postgres_url = args.common.postgres_url.or(file.postgres.url).ok_or_else(|| {
        Failure::invalid(format!(
            "{origin}: no PostgreSQL URL: set `postgres.url` in the file, TANDEM_POSTGRES_URL or --postgres-url"
        ))
    })?;
    let state_dir = state_dir.to_path_buf();
    let pool_size = args
        .common
        .pool_size
        .or(file.postgres.pool_size)
        .unwrap_or(16);
    if pool_size == 0 {
        return Err(Failure::invalid(format!(
            "{origin}: `postgres.pool_size`: expected at least 1, found 0"
        )));
    }
    let parallelism = args.parallelism.or(file.engine.parallelism).unwrap_or(64);
    if parallelism == 0 {
        return Err(Failure::invalid(format!(
            "{origin}: `engine.parallelism`: expected at least 1, found 0"
        )));
    }
    let kill_grace = match args.kill_grace {
        Some(grace) => grace,
        None => file
            .engine
            .kill_grace
            .map_or(Duration::from_secs(10), |grace| grace.0),
    };
    let etcd_endpoints: Vec<String> = args
        .etcd_endpoints
        .or(file.etcd.endpoints)
        .unwrap_or_default()
        .into_iter()
        .map(|endpoint| endpoint.trim().to_string())
        .filter(|endpoint| !endpoint.is_empty())
        .collect();
    let lease_ttl = check_lease_ttl(
        &origin,
        args.lease_ttl
            .or(file.etcd.lease_ttl.map(|ttl| ttl.0))
            .unwrap_or(DEFAULT_LEASE_TTL),
    )?;
    let member_id = args
        .member_id
        .or(file.cluster.member_id)
        .unwrap_or_else(tandem_engine::service::config::default_member_id);
    if member_id.is_empty() || member_id.contains('/') || member_id.len() > 128 {
        return Err(Failure::invalid(format!(
            "{origin}: `cluster.member_id`: expected 1 to 128 characters without `/`, found `{member_id}`"
        )));
    }
    let region = args
        .common
        .region
        .or(file.region)
        .unwrap_or_else(|| "local".to_string());
    let dr = dr::dr_settings(&origin, &region, args.dr, file.dr, file.replication)?;
    Ok(ServeSettings {
        dr,
        member_id,
        advertise: args.advertise.or(file.cluster.advertise),
        etcd_endpoints,
        lease_ttl,
        etcd_connect_timeout: file
            .etcd
            .connect_timeout
            .map_or(Duration::from_secs(5), |timeout| timeout.0),
        region,
        listen,
        state_dir,
        postgres_url,
        pool_size,
        connect_timeout: file
            .postgres
            .connect_timeout
            .map_or(Duration::from_secs(10), |timeout| timeout.0),
        retry_for: file
            .postgres
            .retry_for
            .map_or(Duration::from_secs(300), |retry| retry.0),
        parallelism,
        kill_grace,
        otlp_endpoint: args.otlp_endpoint.or(file.telemetry.otlp_endpoint),
        service_name: file
            .telemetry
            .service_name
            .unwrap_or_else(|| "tandem".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> ServeArgs {
        let mut args = ServeArgs::default();
        args.common.config = config;
        args
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region.toml");
        std::fs::write(
            &path,
            "region = \"eu-west\"\nlisten = \"127.0.0.1:9000\"\n[postgres]\nurl = \"postgres://a@b/c\"\npool_size = 4\n[engine]\nkill_grace = \"3s\"\n",
        )
        .unwrap();
        let mut flags = args(Some(path.clone()));
        flags.common.region = Some("us-east".into());
        let merged = settings(flags, Path::new(".tandem")).unwrap();
        assert_eq!(merged.region, "us-east");
        assert_eq!(merged.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(merged.pool_size, 4);
        assert_eq!(merged.kill_grace, Duration::from_secs(3));
        assert_eq!(merged.parallelism, 64);
        assert_eq!(merged.postgres_url, "postgres://a@b/c");
    }

    #[test]
    fn the_example_file_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/region.toml");
        let merged = settings(args(Some(path)), Path::new(".tandem")).unwrap();
        assert_eq!(merged.region, "eu-west");
        assert_eq!(merged.retry_for, Duration::from_secs(300));
        assert_eq!(merged.otlp_endpoint, None);
        assert_eq!(
            merged.etcd_endpoints,
            vec!["http://127.0.0.1:2379".to_string()]
        );
        assert_eq!(merged.lease_ttl, Duration::from_secs(5));
        assert_eq!(merged.member_id, "eu-west-1");
        assert_eq!(merged.dr, None, "the DR sections are commented out");
    }

    #[test]
    fn the_commented_out_examples_in_deploy_are_valid_too() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/region.toml"),
        )
        .unwrap();
        // Uncomment every commented-out key and section.
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(key, _)| !key.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region.toml");
        std::fs::write(&path, uncommented).unwrap();
        let merged = settings(args(Some(path)), Path::new(".")).unwrap();
        let dr = merged.dr.expect("the [dr] example");
        assert_eq!(dr.active_region, "eu-west");
        assert_eq!(
            dr.peers["us-east"],
            vec!["http://127.0.0.1:7301", "http://127.0.0.1:7302"]
        );
        assert_eq!(dr.replication.sync_timeout, Duration::from_secs(2));
        assert!(merged.otlp_endpoint.is_some());
    }

    #[test]
    fn dr_and_replication_sections_are_read_with_their_places() {
        use tandem_engine::service::ReplicationMode;
        use tandem_engine::store::replication::RegionRole;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region.toml");
        std::fs::write(
            &path,
            "region = \"us-east\"\n[postgres]\nurl = \"x\"\n[dr]\nrole = \"standby\"\nactive_region = \"eu-west\"\npeers = { eu-west = \"http://127.0.0.1:7101,127.0.0.1:7102\", ap-south = [\"http://h:1\"] }\npeer_check_interval = \"500ms\"\n[replication]\nmode = \"sync\"\nsync_timeout = \"3s\"\n",
        )
        .unwrap();
        let dr = settings(args(Some(path.clone())), Path::new("."))
            .unwrap()
            .dr
            .expect("dr on");
        assert_eq!(dr.role, RegionRole::Standby);
        assert_eq!(dr.active_region, "eu-west");
        assert_eq!(
            dr.peers["eu-west"],
            vec!["http://127.0.0.1:7101", "http://127.0.0.1:7102"]
        );
        assert_eq!(dr.peers["ap-south"], vec!["http://h:1"]);
        assert_eq!(dr.peer_check_interval, Duration::from_millis(500));
        assert_eq!(dr.replication.mode, ReplicationMode::Sync);
        assert_eq!(dr.replication.sync_timeout, Duration::from_secs(3));

        // A flag wins over the file.
        let mut flags = args(Some(path.clone()));
        flags.dr.replication_mode = Some(ReplicationMode::Async);
        let dr = settings(flags, Path::new(".")).unwrap().dr.unwrap();
        assert_eq!(dr.replication.mode, ReplicationMode::Async);

        for (text, line, key) in [
            (
                "[postgres]\nurl = \"x\"\n[dr]\nrole = \"primary\"\n",
                "line 4",
                "primary",
            ),
            (
                "[postgres]\nurl = \"x\"\n[dr]\nrol = \"active\"\n",
                "line 4",
                "rol",
            ),
            (
                "[postgres]\nurl = \"x\"\n[dr]\n[replication]\nmode = \"semi\"\n",
                "line 5",
                "semi",
            ),
            (
                "[postgres]\nurl = \"x\"\n[dr]\npeers = { us-east = \"ftp://h\" }\n",
                "line 4",
                "us-east",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let failure = settings(args(Some(path.clone())), Path::new(".")).unwrap_err();
            assert!(
                failure.message.contains(line),
                "{text}: {}",
                failure.message
            );
            assert!(failure.message.contains(key), "{text}: {}", failure.message);
        }
        std::fs::write(
            &path,
            "region = \"eu-west\"\n[postgres]\nurl = \"x\"\n[replication]\nmode = \"sync\"\n",
        )
        .unwrap();
        let failure = settings(args(Some(path.clone())), Path::new(".")).unwrap_err();
        assert!(
            failure.message.contains("without `[dr]`"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn lease_ttl_must_be_whole_seconds_of_at_least_two() {
        let mut flags = args(None);
        flags.common.postgres_url = Some("postgres://a@b/c".into());
        flags.lease_ttl = Some(Duration::from_millis(1500));
        let failure = settings(flags, Path::new(".")).unwrap_err();
        assert!(
            failure.message.contains("etcd.lease_ttl"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("1s 500ms"), "{}", failure.message);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region.toml");
        std::fs::write(&path, "[postgres]\nurl = \"x\"\npool_sise = 4\n").unwrap();
        let failure = settings(args(Some(path.clone())), Path::new(".")).unwrap_err();
        assert!(failure.message.contains("pool_sise"), "{}", failure.message);
        assert!(failure.message.contains("line 3"), "{}", failure.message);
        std::fs::write(&path, "listen = \"localhost\"\n[postgres]\nurl = \"x\"\n").unwrap();
        let failure = settings(args(Some(path.clone())), Path::new(".")).unwrap_err();
        assert!(failure.message.contains("listen"), "{}", failure.message);
        assert!(failure.message.contains("line 1"), "{}", failure.message);
        std::fs::write(&path, "[postgres]\nurl = \"x\"\nretry_for = \"soon\"\n").unwrap();
        let failure = settings(args(Some(path.clone())), Path::new(".")).unwrap_err();
        assert!(failure.message.contains("line 3"), "{}", failure.message);
        assert!(failure.message.contains("retry_for"), "{}", failure.message);
        let failure = settings(args(None), Path::new(".")).unwrap_err();
        assert!(
            failure.message.contains("TANDEM_POSTGRES_URL"),
            "{}",
            failure.message
        );
    }
}
