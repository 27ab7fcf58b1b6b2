//! The etcd harness itself: a server starts healthy, keeps its data and ports across a
//! kill and a graceful stop, can be paused, and leaves nothing behind when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::{TempEtcd, TempEtcdError, find_in};

async fn client(endpoint: &str) -> Client {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
    Client::connect([endpoint], Some(options))
        .await
        .unwrap_or_else(|error| panic!("connecting to {endpoint}: {error}"))
}

/// The value of `key`, read within `within`; `Err` when the server does not answer.
async fn read(endpoint: &str, key: &str, within: Duration) -> Result<Option<String>, String> {
    let attempt = async {
        let mut client = client(endpoint).await;
        let response = client.get(key, None).await.map_err(|e| e.to_string())?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {within:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_etcd_serves_survives_kill_pause_and_stop_and_cleans_up() {
    let server = TempEtcd::start()
        .await
        .unwrap_or_else(|error| panic!("starting a temp etcd: {error}"));
    let endpoint = server.endpoint();
    assert_eq!(
        endpoint,
        format!("http://127.0.0.1:{}", server.client_port())
    );
    assert_eq!(server.endpoints(), vec![endpoint.clone()]);
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(server.data_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o700, "etcd wants its data dir private");
    client(&endpoint)
        .await
        .put("kept", "42", None)
        .await
        .unwrap();

    let pid = server.pid().expect("running after start");
    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "a killed server is reaped"
    );
    assert!(
        read(&endpoint, "kept", Duration::from_secs(1))
            .await
            .is_err(),
        "a killed server does not answer"
    );
    server.kill().expect("killing twice is a no-op");

    server.start_again().await.unwrap();
    assert_eq!(server.endpoint(), endpoint, "the same port after a restart");
    assert_eq!(
        read(&endpoint, "kept", Duration::from_secs(5))
            .await
            .unwrap(),
        Some("42".into()),
        "written data survives a kill"
    );

    server.pause().unwrap();
    assert!(
        read(&endpoint, "kept", Duration::from_millis(700))
            .await
            .is_err(),
        "a paused server does not answer"
    );
    server.resume().unwrap();
    assert_eq!(
        read(&endpoint, "kept", Duration::from_secs(5))
            .await
            .unwrap(),
        Some("42".into())
    );

    server.pause().unwrap();
    server
        .stop()
        .await
        .expect("a paused server stops gracefully");
    assert!(!server.is_running());
    server.start_again().await.unwrap();
    server.start_again().await.expect("a no-op when running");
    assert_eq!(
        read(&endpoint, "kept", Duration::from_secs(5))
            .await
            .unwrap(),
        Some("42".into())
    );

    let root = server
        .data_dir()
        .parent()
        .expect("the data dir is inside the temp dir")
        .to_path_buf();
    let pid = server.pid().unwrap();
    drop(server);
    assert!(!root.exists(), "{} is removed on drop", root.display());
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "the server is gone after drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_etcd_servers_do_not_share_ports_or_data() {
    let (one, two) = tokio::join!(TempEtcd::start(), TempEtcd::start());
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_ne!(one.client_port(), two.client_port());
    client(&one.endpoint())
        .await
        .put("only-in-one", "1", None)
        .await
        .unwrap();
    assert_eq!(
        read(&two.endpoint(), "only-in-one", Duration::from_secs(5))
            .await
            .unwrap(),
        None
    );
}

#[test]
fn temp_etcd_names_the_places_searched_for_a_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("etcd"), "not executable").unwrap();
    let error = find_in(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(matches!(error, TempEtcdError::BinaryNotFound { .. }));
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("TANDEM_ETCD_BIN"), "{message}");
}

/// Set in the child process of the watchdog test.
const CHILD_ENV: &str = "TANDEM_TEMP_ETCD_WATCHDOG_CHILD";

/// Run in a child process by
/// `temp_etcd_is_killed_and_removed_by_the_watchdog_when_its_process_dies`: starts a server,
/// prints its pid and directory, and exits without dropping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the watchdog test"]
async fn temp_etcd_watchdog_child_exits_without_cleaning_up() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let server = TempEtcd::start().await.unwrap();
    let root = server.data_dir().parent().unwrap().display().to_string();
    println!("SERVER {} {root}", server.pid().unwrap());
    std::process::exit(0);
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z"),
        Err(_) => true,
    }
}

#[test]
fn temp_etcd_is_killed_and_removed_by_the_watchdog_when_its_process_dies() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "testing::temp_etcd::tests::temp_etcd_watchdog_child_exits_without_cleaning_up",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("SERVER ").map(|(_, server)| server.trim()))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no server: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let (pid, root) = line.split_once(' ').unwrap();
    let (pid, root): (u32, &Path) = (pid.parse().unwrap(), Path::new(root));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !process_gone(pid) || root.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "etcd (pid {pid}) or {} outlived its process by 5 s",
            root.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
