//! `tandem serve`: the engine of one region as a gRPC server over PostgreSQL.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tandem_engine::executor::remote::{RemoteConfig, TaskQueues};
use tandem_engine::leadership::{Election, ElectionConfig};
use tandem_engine::service::{
    Opened, Region, RegionParts, ServiceConfig, ServiceError, serve as serve_api,
};
use tandem_engine::store::replication::{RegionRole, ReplicationStore};
use tandem_engine::store::{LeaderFence, StoreError};
use tokio::net::TcpListener;

use super::serve_config::{ServeArgs, connect_store, settings};
use super::shutdown::shutdown_signal;
use super::{Failure, exit, runtime, telemetry};

/// Connections of the second pool a DR region's replica opens for replication and DR calls
/// (one per streaming standby, the role watch, status calls).
const DR_POOL_SIZE: usize = 4;

/// `tandem serve`: connects to PostgreSQL (applying schema migrations), prints `listening on
/// ADDR` on stdout, and serves until SIGINT or SIGTERM. Without etcd it leads alone and
/// resumes the runs a previous process left before listening; with `etcd.endpoints` it joins
/// the region's leader election and takes over the runs when elected. On SIGINT/SIGTERM it
/// gives up leadership first (another replica takes over at once); unfinished runs stay in
/// the store and their shell attempts die with the process.
///
/// With `[dr]` it first names the database's region (`init_region`: the configured role is
/// recorded at first start; later the database's role wins), then serves the replication
/// stream and the DR calls too, and leads only while its region is active.
pub fn serve(state_dir: &Path, args: ServeArgs) -> Result<u8, Failure> {
    let settings = settings(args, state_dir)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let _telemetry = telemetry::init(
            "info",
            settings.otlp_endpoint.as_deref(),
            &settings.service_name,
        )?;
        std::fs::create_dir_all(&settings.state_dir).map_err(|error| {
            Failure::system(format!(
                "cannot create the state directory {}: {error}",
                settings.state_dir.display()
            ))
        })?;
        let store = connect_store(&settings, "serve", settings.pool_size).await?;
        let fence = LeaderFence::new(0);
        let store = Arc::new(store.fenced(fence.clone()));
        if let Some(dr) = &settings.dr {
            let state = store
                .init_region(&settings.region, dr.role, &dr.active_region)
                .await
                .map_err(|error| {
                    Failure::system(format!(
                        "cannot record region {} in the database at {}: {error}",
                        settings.region, settings.postgres_url
                    ))
                })?;
            if state.role != dr.role {
                tracing::info!(region = %state.region, configured = %dr.role, recorded = %state.role, active_region = %state.active_region, region_epoch = state.region_epoch, "the database's region role wins over `dr.role` (it changed since the first start)");
            }
        }
        let listener = TcpListener::bind(settings.listen).await.map_err(|error| {
            Failure::system(format!("cannot listen on {}: {error}", settings.listen))
        })?;
        let address = listener
            .local_addr()
            .map_err(|error| Failure::system(format!("cannot read the listen address: {error}")))?;
        let advertise = settings
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        let mut config = ServiceConfig::new(
            settings.region.clone(),
            settings.listen,
            settings.state_dir.clone(),
        );
        config.parallelism = settings.parallelism;
        config.kill_grace = settings.kill_grace;
        config.member_id = settings.member_id.clone();
        config.advertise = advertise.clone();
        config.etcd_endpoints = settings.etcd_endpoints.clone();
        config.etcd_timeout = settings.etcd_connect_timeout;
        config.dr = settings.dr.clone();
        // The replication streams, the role watch and the DR calls get their own small pool
        // of connections (same fence): under load every connection of the main pool can be
        // queued on the log head behind appends, and shipping the log must not wait behind
        // the writes it ships (measured with `tandem bench -w dr-lag`).
        let replication = match &settings.dr {
            Some(_) => {
                let own = connect_store(&settings, "serve-dr", DR_POOL_SIZE).await?;
                Some(Arc::new(own.fenced(fence.clone())) as Arc<dyn ReplicationStore>)
            }
            None => None,
        };
        let election = (!settings.etcd_endpoints.is_empty()).then(|| {
            let mut election = ElectionConfig::new(
                settings.etcd_endpoints.clone(),
                settings.region.clone(),
                settings.member_id.clone(),
                advertise.clone(),
            );
            election.lease_ttl = settings.lease_ttl;
            election.connect_timeout = settings.etcd_connect_timeout;
            Election::start(election)
        });
        let region = Region::new(
            config,
            RegionParts {
                store: store.clone(),
                fence,
                queues: TaskQueues::new(RemoteConfig::default()),
                election,
                replication,
            },
        );
        let opened = region.open().await.map_err(|error| match error {
            ServiceError::Store(StoreError::Superseded { highest, .. }) => Failure::system(format!(
                "the database at {} belongs to a region with leader election (leader epoch {highest}): start this replica with `etcd.endpoints` (--etcd-endpoints) set to that region's etcd",
                settings.postgres_url
            )),
            error => Failure::system(format!("cannot resume the region's runs: {error}")),
        })?;
        let how = match opened {
            Opened::Standalone { resumed } => format!(
                "{resumed} run{} resumed",
                if resumed == 1 { "" } else { "s" }
            ),
            Opened::Elected => format!(
                "member {}, leader election through etcd at {}",
                settings.member_id,
                settings.etcd_endpoints.join(",")
            ),
            Opened::Standby { .. } => "no run resumed".to_string(),
        };
        let how = match region.region_state() {
            Some(state) if state.role == RegionRole::Active => {
                format!("{how}; active region, region epoch {}", state.region_epoch)
            }
            Some(state) => format!(
                "{how}; {} region following {}, region epoch {}",
                state.role, state.active_region, state.region_epoch
            ),
            None => how,
        };
        tracing::info!(region = %settings.region, %address, member = %settings.member_id, "serving");
        println!(
            "tandem serve: region {} listening on {address} ({how})",
            settings.region
        );
        let _ = std::io::stdout().flush();
        let shutdown =
            shutdown_signal("shutting down: no new calls; unfinished runs stay in the store")?;
        let closing = region.clone();
        let shutdown = async move {
            shutdown.await;
            // Hand leadership over before the calls in flight end.
            closing.close().await;
        };
        serve_api(region, listener, shutdown)
            .await
            .map_err(Failure::system)?;
        Ok(exit::OK)
    })
}
