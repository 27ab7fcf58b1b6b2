//! `tandem replicate --config region.toml`: the replicator of one region (crate `tandem-dr`).
//! It runs in every region: while its region is a standby it streams the active region's
//! checkpoint log into the region's PostgreSQL store; while the region is active (or fenced)
//! it idles and follows role changes (promotion, rejoin, switchover) without a restart.
//!
//! It reads the same `region.toml` as `tandem serve` (`region`, `[postgres]`, `[dr]`;
//! the other sections are accepted and ignored), with the same flags and env vars.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use clap::Args;
use tandem_dr::{Phase, Replicator, ReplicatorConfig, ReplicatorStatus};
use tandem_engine::store::replication::{RegionRole, ReplicationStore};
use tokio::sync::watch;

use super::serve_config::{DrArgs, RegionArgs, ServeArgs, connect_store, settings};
use super::shutdown::shutdown_signal;
use super::{Failure, exit, runtime, telemetry};

/// Flags of `tandem replicate` (each also read from its `TANDEM_*` env var): `tandem
/// serve`'s settings file, region and store flags, with `--config` and `--postgres-url` worded
/// for the replicator, and its `[dr]` flags.
#[derive(Debug, Args)]
#[command(
    mut_arg("config", |arg| arg.help(
        "The region's settings file (TOML, as for `tandem serve`); flags and env vars override it"
    )),
    mut_arg("postgres_url", |arg| arg.help(
        "PostgreSQL URL of the region's store (postgres://user@host:port/db)"
    ))
)]
pub struct ReplicateArgs {
    /// The settings file, the region and its store (as for `tandem serve`).
    #[command(flatten)]
    pub common: RegionArgs,
    /// Cross-region disaster recovery (`[dr]`; `[replication]` is the active region's).
    #[command(flatten)]
    pub dr: DrArgs,
}

/// `tandem replicate`: connects to the region's store (applying schema migrations), records
/// the region's initial role if the store has none (`[dr] role`, `active_region`), prints
/// `replicating region R from A` (or that the region is active and idles) on stdout, and
/// runs until SIGINT or SIGTERM. Exit 2 for bad settings (no `[dr]`), 3 when the store
/// cannot be reached or belongs to another region.
pub fn replicate(state_dir: &Path, args: ReplicateArgs) -> Result<u8, Failure> {
    let origin = args
        .common
        .config
        .as_ref()
        .map_or("the settings".to_string(), |path| {
            path.display().to_string()
        });
    let serve = ServeArgs {
        common: args.common,
        dr: args.dr,
        ..ServeArgs::default()
    };
    let settings = settings(serve, state_dir)?;
    let Some(dr) = settings.dr.clone() else {
        return Err(Failure::invalid(format!(
            "{origin}: tandem replicate needs the region's disaster recovery settings: a `[dr]` section (role, active_region, peers), or --dr-role / --dr-active-region / --dr-peers"
        )));
    };
    runtime()?.block_on(async move {
        let _telemetry = telemetry::init(
            "info",
            settings.otlp_endpoint.as_deref(),
            &settings.service_name,
        )?;
        let store = connect_store(&settings, "replicate", settings.pool_size).await?;
        let state = store
            .init_region(&settings.region, dr.role, &dr.active_region)
            .await
            .map_err(|error| Failure::system(format!("cannot initialize the region: {error}")))?;
        let config = ReplicatorConfig::new(settings.region.clone(), dr.peers.clone());
        let replicator = Replicator::new(Arc::new(store), config);
        let mut updates = replicator.status();
        let first = match state.role {
            RegionRole::Standby => {
                println!(
                    "replicating region {} from {}",
                    settings.region, state.active_region
                );
                (Phase::Streaming, Some(state.active_region.clone()))
            }
            role => {
                println!(
                    "region {} is {role}: nothing to replicate until it becomes a standby",
                    settings.region
                );
                (Phase::Idle, None)
            }
        };
        let _ = std::io::stdout().flush();
        let announcer = tokio::spawn(async move { announce(&mut updates, first).await });
        let shutdown = shutdown_signal("shutting down the replicator")?;
        let result = replicator.run(shutdown).await;
        announcer.abort();
        result.map_err(Failure::system)?;
        Ok(exit::OK)
    })
}

/// Prints a line on stdout whenever the region starts replicating from another region than
/// `first` said, or stops replicating (the logs say more).
async fn announce(updates: &mut watch::Receiver<ReplicatorStatus>, first: (Phase, Option<String>)) {
    let mut last = Some(first);
    while updates.changed().await.is_ok() {
        let status = updates.borrow_and_update().clone();
        let now = match status.phase {
            Phase::Streaming => (Phase::Streaming, status.active_region.clone()),
            Phase::Idle => (Phase::Idle, None),
            _ => continue,
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        match &now {
            (Phase::Streaming, Some(active)) => println!(
                "replicating region {} from {} ({})",
                status.region,
                active,
                status.connected_source.as_deref().unwrap_or("?")
            ),
            _ => println!(
                "region {} is {}: replication idle",
                status.region,
                status.role.map_or("not a standby", RegionRole::as_str)
            ),
        }
        let _ = std::io::stdout().flush();
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use clap::Command;

    use super::*;

    fn help(command: &Command, id: &str) -> String {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .unwrap_or_else(|| panic!("no argument `{id}`"));
        arg.get_help().map(ToString::to_string).unwrap_or_default()
    }

    #[test]
    fn replicate_takes_serves_region_flags_worded_for_itself() {
        let replicate = ReplicateArgs::augment_args(Command::new("replicate"));
        let serve = ServeArgs::augment_args(Command::new("serve"));
        for id in ["config", "region", "postgres_url", "pool_size"] {
            let flag = |command: &Command| {
                let arg = command.get_arguments().find(|arg| arg.get_id() == id);
                arg.map(|arg| {
                    (
                        arg.get_long().map(str::to_string),
                        arg.get_env().map(ToOwned::to_owned),
                    )
                })
            };
            assert!(flag(&replicate).is_some(), "replicate lacks `{id}`");
            assert_eq!(flag(&replicate), flag(&serve), "`{id}`");
        }
        assert_eq!(help(&replicate, "region"), help(&serve, "region"));
        assert!(help(&replicate, "config").contains("as for `tandem serve`"));
        assert!(help(&replicate, "postgres_url").contains("of the region's store"));
        assert!(!help(&serve, "postgres_url").contains("of the region's store"));
    }
}
