//! The harness itself: a server starts, serves fresh databases, survives a crash-restart with
//! its data, and leaves nothing behind when dropped.

use std::time::Duration;

use super::{StopMode, TempPostgres, TempPostgresError};

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_postgres_serves_databases_and_survives_a_crash() {
    let server = TempPostgres::start()
        .await
        .unwrap_or_else(|error| panic!("starting a temp PostgreSQL: {error}"));
    let root = server
        .data_dir()
        .parent()
        .expect("the data dir is inside the temp dir")
        .to_path_buf();
    assert_eq!(
        server.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", server.port())
    );
    let url = server.create_database("harness_one").await.unwrap();
    assert!(url.ends_with("/harness_one"), "{url}");
    let client = connect(&url).await;
    for (setting, expected) in [("fsync", "on"), ("synchronous_commit", "on")] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "{setting}");
    }
    client
        .batch_execute("CREATE TABLE kept (value int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    drop(client);

    let again = server.create_database("harness_one").await.unwrap_err();
    assert!(
        matches!(&again, TempPostgresError::Database { error, .. } if error.contains("already exists")),
        "{again}"
    );
    let invalid = server.create_database("Robert'); DROP").await.unwrap_err();
    assert!(
        matches!(invalid, TempPostgresError::InvalidName { .. }),
        "{invalid}"
    );

    let port = server.port();
    server.stop_server(StopMode::Immediate).await.unwrap();
    assert!(
        tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a stopped server refuses connections"
    );
    server
        .stop_server(StopMode::Immediate)
        .await
        .expect("stopping twice is a no-op");
    server.start_server().await.unwrap();
    assert_eq!(server.port(), port, "a restarted server keeps its port");
    let client = connect(&url).await;
    let row = client
        .query_one("SELECT value FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42, "committed data survives a crash");
    drop(client);
    server.restart().await.unwrap();
    connect(&url).await;

    drop(server);
    assert!(
        !root.exists(),
        "dropping the server removes {}",
        root.display()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err(),
        "dropping the server stops it"
    );
}
