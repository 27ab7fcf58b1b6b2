//! The region's PostgreSQL store, connected as [`super::ServeSettings`] say: shared by
//! `tandem serve` and `tandem replicate`.

use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};

use super::{Failure, ServeSettings};

/// Connects to the region's store at `settings.postgres_url` with `pool_size` connections
/// (usually the settings' pool size) and the settings' connect timeout and retry window,
/// applying schema migrations. The connections are named `tandem-<program>-<region>` in
/// `pg_stat_activity` (`program`: `serve`, `serve-dr`, `replicate`).
///
/// Errors: the store's connect error as a [`Failure`] (exit 3: unreachable server, refused
/// authentication, missing database, failed migration, schema newer than this build).
pub async fn connect_store(
    settings: &ServeSettings,
    program: &str,
    pool_size: usize,
) -> Result<PostgresStore, Failure> {
    let mut postgres = PostgresConfig::new(settings.postgres_url.clone());
    postgres.pool_size = pool_size;
    postgres.connect_timeout = settings.connect_timeout;
    postgres.retry_for = settings.retry_for;
    postgres.application_name = format!("tandem-{program}-{}", settings.region);
    PostgresStore::connect(postgres)
        .await
        .map_err(Failure::from)
}
