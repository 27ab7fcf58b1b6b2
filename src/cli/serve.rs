//! `tandem serve`: the engine of one region as a gRPC server over PostgreSQL.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tandem_engine::executor::remote::{RemoteConfig, TaskQueues};
use tandem_engine::service::{Region, ServiceConfig, serve as serve_api};
use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::serve_config::{ServeArgs, settings};
use super::{Failure, exit, runtime, telemetry};

/// `tandem serve`: connects to PostgreSQL (applying schema migrations), resumes the runs a
/// previous process left, prints `listening on ADDR` on stdout, and serves until SIGINT or
/// SIGTERM. Runs that are not finished then stay in the store and are resumed by the next
/// start; their shell attempts die with the process.
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
        let mut postgres = PostgresConfig::new(settings.postgres_url.clone());
        postgres.pool_size = settings.pool_size;
        postgres.connect_timeout = settings.connect_timeout;
        postgres.retry_for = settings.retry_for;
        postgres.application_name = format!("tandem-serve-{}", settings.region);
        let store = PostgresStore::connect(postgres)
            .await
            .map_err(Failure::from)?;
        let mut config = ServiceConfig::new(
            settings.region.clone(),
            settings.listen,
            settings.state_dir.clone(),
        );
        config.parallelism = settings.parallelism;
        config.kill_grace = settings.kill_grace;
        let region = Region::new(
            config,
            Arc::new(store),
            TaskQueues::new(RemoteConfig::default()),
        );
        let listener = TcpListener::bind(settings.listen).await.map_err(|error| {
            Failure::system(format!("cannot listen on {}: {error}", settings.listen))
        })?;
        let address = listener
            .local_addr()
            .map_err(|error| Failure::system(format!("cannot read the listen address: {error}")))?;
        let resumed = region.resume_all().await.map_err(|error| {
            Failure::system(format!("cannot resume the region's runs: {error}"))
        })?;
        tracing::info!(region = %settings.region, %address, resumed, "serving");
        println!(
            "tandem serve: region {} listening on {address} ({resumed} run{} resumed)",
            settings.region,
            if resumed == 1 { "" } else { "s" }
        );
        let _ = std::io::stdout().flush();
        let shutdown = shutdown_signal().await?;
        serve_api(region, listener, shutdown)
            .await
            .map_err(Failure::system)?;
        Ok(exit::OK)
    })
}

/// A future that completes at the first SIGINT or SIGTERM.
async fn shutdown_signal() -> Result<impl Future<Output = ()> + Send, Failure> {
    let install = |kind: SignalKind| {
        signal(kind).map_err(|error| Failure::system(format!("cannot handle signals: {error}")))
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: no new calls; unfinished runs stay in the store");
    })
}
