//! One private PostgreSQL per test binary, shared by its tests (each test uses a fresh
//! database). It is never dropped; its watchdog stops it when the test process exits.

use tandem_engine::testing::TempPostgres;
use tokio::sync::OnceCell;

static POSTGRES: OnceCell<TempPostgres> = OnceCell::const_new();

/// The shared server, started on first use.
pub async fn shared() -> &'static TempPostgres {
    POSTGRES
        .get_or_init(|| async {
            match TempPostgres::start().await {
                Ok(postgres) => postgres,
                Err(error) => panic!("cannot start PostgreSQL for the tests: {error}"),
            }
        })
        .await
}
