//! `tandem serve` when PostgreSQL goes away mid-run, meets a schema newer than it knows, or
//! cannot start (bad settings file, unreachable database).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::server::{Server, checkpoints, fresh_database};
use tandem_api::{Client, Run, RunState};
use tandem_engine::checkpoint::{Event, RunEnd};
use tandem_engine::store::CheckpointStore;
use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};
use tandem_engine::testing::{StopMode, TempPostgres};

/// Six shell tasks in a chain, 0.3 s each.
fn chain_dag() -> String {
    let mut dag = String::from("name: outage-chain\ntasks:\n");
    for step in 1..=6 {
        dag.push_str(&format!("  step{step}:\n    run: sleep 0.3\n"));
        if step > 1 {
            dag.push_str(&format!("    needs: [step{}]\n", step - 1));
        }
    }
    dag
}

/// How PostgreSQL goes away.
enum Outage {
    /// `pg_ctl stop -m fast` then start.
    Restart,
    /// `pg_ctl stop -m immediate` (a crash), 2 s down, then start (with crash recovery).
    CrashFor2s,
}

/// The run, read over and over until it is final (calls during the outage may fail).
async fn wait_final(client: &Client, run_id: &str, limit: Duration) -> Run {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(run) = client.get_run(run_id).await
            && run.state.is_final()
        {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not finish within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_through_an_outage(outage: Outage) {
    let postgres = TempPostgres::start().await.expect("start PostgreSQL");
    let database = fresh_database(&postgres).await;
    let server = Server::start(&database, &[]);
    let client = Client::connect(&server.url).await.unwrap();
    let run_id = client
        .submit(chain_dag(), "chain.yaml", BTreeMap::new(), None)
        .await
        .unwrap()
        .run
        .run_id;
    // Mid-run: the first step has succeeded, most of the chain is still ahead.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = client.get_run(&run_id).await.unwrap();
        assert!(!run.state.is_final(), "finished before the outage: {run:?}");
        if run.counts.succeeded >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "step1 never finished: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let crashed = match outage {
        Outage::Restart => {
            postgres.restart().await.expect("restart PostgreSQL");
            false
        }
        Outage::CrashFor2s => {
            postgres
                .stop_server(StopMode::Immediate)
                .await
                .expect("crash PostgreSQL");
            tokio::time::sleep(Duration::from_secs(2)).await;
            postgres.start_server().await.expect("start PostgreSQL");
            true
        }
    };

    let run = wait_final(&client, &run_id, Duration::from_secs(30)).await;
    assert_eq!(
        run.state,
        RunState::Succeeded,
        "{run:?}\nserver log:\n{}",
        server.log_text()
    );
    assert!(run.tasks.iter().all(|task| task.attempts == 1), "{run:?}");
    if crashed {
        // Steps finished while the database was down: their checkpoints waited for it.
        let log = server.log_text();
        assert!(
            log.contains("appending checkpoints") && log.contains("retrying"),
            "no append waited out the outage:\n{log}"
        );
    }

    // The log: each attempt started and finished exactly once, positions strictly
    // increasing, one RunFinished at the end.
    let log = checkpoints(&database, &run_id).await;
    let positions: Vec<u64> = log.iter().map(|checkpoint| checkpoint.position).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "positions not strictly increasing: {positions:?}"
    );
    let mut started = BTreeMap::<(u32, u32), usize>::new();
    let mut ended = BTreeMap::<(u32, u32), usize>::new();
    let mut finished = Vec::new();
    let mut created = 0;
    for checkpoint in &log {
        match &checkpoint.event {
            Event::RunCreated { .. } => created += 1,
            Event::AttemptStarted { task, attempt, .. } => {
                *started.entry((*task, *attempt)).or_default() += 1
            }
            Event::AttemptFinished {
                task,
                attempt,
                outcome,
                ..
            } => {
                assert!(outcome.is_success(), "{outcome:?}");
                *ended.entry((*task, *attempt)).or_default() += 1
            }
            Event::RunFinished { state, .. } => finished.push(*state),
            _ => {}
        }
    }
    let once: BTreeMap<(u32, u32), usize> = (0..6).map(|task| ((task, 1), 1)).collect();
    assert_eq!(started, once, "AttemptStarted per (task, attempt)");
    assert_eq!(ended, once, "AttemptFinished per (task, attempt)");
    assert_eq!(created, 1);
    assert_eq!(finished, vec![RunEnd::Succeeded]);
    assert!(matches!(
        log.last().map(|checkpoint| &checkpoint.event),
        Some(Event::RunFinished { .. })
    ));

    // The region's whole log has no gap and no duplicate, and holds exactly this run.
    let store = PostgresStore::connect(PostgresConfig::new(database.clone()))
        .await
        .unwrap();
    let whole = store.read_log(0, 100_000).await.unwrap();
    let whole_positions: Vec<u64> = whole.iter().map(|checkpoint| checkpoint.position).collect();
    assert_eq!(
        whole_positions,
        (1..=whole.len() as u64).collect::<Vec<_>>(),
        "log positions"
    );
    assert_eq!(whole, log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_survives_a_postgres_restart_without_lost_or_duplicated_checkpoints() {
    run_through_an_outage(Outage::Restart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_survives_a_postgres_crash_without_lost_or_duplicated_checkpoints() {
    run_through_an_outage(Outage::CrashFor2s).await;
}

/// `tandem serve ARGS` with no `TANDEM_*` settings from the environment, to its end (killed
/// and failed after 60 s).
fn serve(dir: &std::path::Path, args: &[&str], postgres_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("TANDEM_") && key != "TANDEM_PG_BIN" {
            command.env_remove(key);
        }
    }
    command.env("TANDEM_STATE_DIR", dir.join("state"));
    if let Some(url) = postgres_url {
        command.env("TANDEM_POSTGRES_URL", url);
    }
    let mut child = command.spawn().expect("start tandem serve");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for tandem serve").is_some() {
            return child.wait_with_output().expect("read its output");
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let output = child.wait_with_output().expect("read its output");
            panic!(
                "tandem serve {args:?} still runs after 60 s; it should have exited.\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_schema_newer_than_it_knows() {
    let postgres = common::postgres::shared().await;
    let database = fresh_database(postgres).await;
    let mut server = Server::start(&database, &[]);
    server.kill();

    let (client, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let known: i32 = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert!(known >= 1);
    let newer = known + 7;
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ($1, 'from_a_newer_tandem', '2031-01-01T00:00:00Z', '0')",
            &[&newer],
        )
        .await
        .unwrap();
    drop(client);
    let _ = connection.await;

    let dir = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let database = database.clone();
        move || serve(&dir, &["--listen", "127.0.0.1:0"], Some(&database))
    })
    .await
    .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("schema version {newer}")),
        "names the database's version: {text}"
    );
    assert!(
        text.contains(&format!("newer than the {known} ")),
        "names the version this build knows: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening on"),
        "it must not serve"
    );
}

#[test]
fn serve_refuses_an_unknown_settings_key_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("region.toml");

    std::fs::write(
        &config,
        "region = \"eu\"\nlisten = \"127.0.0.1:0\"\n\n[postgres]\nurl = \"postgres://tandem@127.0.0.1:1/db\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let output = serve(dir.path(), &["--config", "region.toml"], None);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for needle in ["region.toml", "line 6", "colour"] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn serve_refuses_a_bad_listen_address_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("region.toml");
    std::fs::write(
        &config,
        "region = \"eu\"\n\nlisten = \"nowhere:http\"\n[postgres]\nurl = \"postgres://tandem@127.0.0.1:1/db\"\n",
    )
    .unwrap();
    let output = serve(dir.path(), &["--config", "region.toml"], None);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for needle in ["region.toml", "line 3", "listen = ", "nowhere:http"] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn serve_gives_up_on_an_unreachable_postgres_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://tandem@127.0.0.1:{port}/regiondb");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("region.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n[postgres]\nurl = \"{url}\"\nretry_for = \"1s\"\nconnect_timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let output = serve(dir.path(), &["--config", "region.toml"], None);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains(&url), "names {url}: {text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up after {:?} with retry_for = 1s",
        started.elapsed()
    );
}
