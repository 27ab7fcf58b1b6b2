//! Schema migrations: refinery runs the SQL files of `engine/migrations/` (embedded at build
//! time; `V<n>__<name>.sql`, never edited once released) in one transaction, recording them in
//! table `refinery_schema_history`. An advisory lock makes concurrent starters take turns.

use super::Context;
use super::error::{backend, pg};
use super::retry::Failure;
use crate::store::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The advisory lock that serializes migrations across processes: ASCII `TANDMIGR`.
const MIGRATION_LOCK: i64 = 0x5441_4E44_4D49_4752;

/// The newest schema version this build knows (the highest embedded migration).
pub fn supported_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| migration.version())
        .max()
        .unwrap_or(0)
}

/// Brings the database to [`supported_version`], refusing one that is newer
/// ([`StoreError::SchemaTooNew`]), and warns when the server does not make commits durable.
pub(super) async fn migrate(
    context: &Context,
    client: &mut deadpool_postgres::Client,
) -> Result<(), Failure> {
    let client: &mut tokio_postgres::Client = client;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|error| pg(context, "waiting for the migration lock", error))?;
    let result = migrate_locked(context, client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|error| pg(context, "releasing the migration lock", error));
    result?;
    unlocked?;
    warn_if_not_durable(context, client).await
}

async fn migrate_locked(
    context: &Context,
    client: &mut tokio_postgres::Client,
) -> Result<(), Failure> {
    let runner = embedded::migrations::runner().set_grouped(true);
    let supported = supported_version();
    let doing = "reading the schema version";
    let has_history: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|error| pg(context, doing, error))?;
    if has_history {
        let applied = runner
            .get_applied_migrations_async(client)
            .await
            .map_err(|error| refinery_failure(context, client, doing, &error))?;
        if let Some(newest) = applied.iter().map(|migration| migration.version()).max()
            && newest > supported
        {
            return Err(Failure::Final(StoreError::SchemaTooNew {
                location: context.location.clone(),
                found: u32::try_from(newest).unwrap_or(u32::MAX),
                supported: u32::try_from(supported).unwrap_or(0),
            }));
        }
    }
    let report = runner
        .run_async(client)
        .await
        .map_err(|error| refinery_failure(context, client, "applying schema migrations", &error))?;
    for migration in report.applied_migrations() {
        tracing::info!(
            store = %context.location,
            "applied schema migration {} ({})",
            migration.version(),
            migration.name()
        );
    }
    Ok(())
}

/// A refinery error: transient when the connection broke, else final.
fn refinery_failure(
    context: &Context,
    client: &tokio_postgres::Client,
    doing: &str,
    error: &refinery::Error,
) -> Failure {
    let detail = format!("{doing}: {error}");
    if client.is_closed() {
        Failure::Transient(detail)
    } else {
        Failure::Final(backend(context, detail))
    }
}

/// Warns when acknowledged commits could be lost by a crash of the server.
async fn warn_if_not_durable(
    context: &Context,
    client: &tokio_postgres::Client,
) -> Result<(), Failure> {
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit')",
            &[],
        )
        .await
        .map_err(|error| pg(context, "reading the durability settings", error))?;
    let fsync: String = row
        .try_get(0)
        .map_err(|error| pg(context, "reading fsync", error))?;
    let synchronous_commit: String = row
        .try_get(1)
        .map_err(|error| pg(context, "reading synchronous_commit", error))?;
    if fsync != "on" || synchronous_commit == "off" {
        tracing::warn!(
            store = %context.location,
            "PostgreSQL runs with fsync={fsync} and synchronous_commit={synchronous_commit}: checkpoints acknowledged shortly before a server crash can be lost (set both to on)"
        );
    }
    Ok(())
}
