//! `tandem dr` and `tandem replicate` as real processes, on bad input and unreachable
//! regions (no server needed): exit codes and messages naming what is wrong and where.

mod common;

use std::process::Output;

use common::Workspace;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tandem ARGS` without a topology from the environment.
fn tandem(workspace: &Workspace, args: &[&str]) -> Output {
    workspace
        .tandem()
        .env_remove("TANDEM_DR_TOPOLOGY")
        .env_remove("TANDEM_CONFIG")
        .env_remove("TANDEM_POSTGRES_URL")
        .args(args)
        .output()
        .expect("run tandem")
}

fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// An address where nothing listens.
fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A topology of two regions whose replicas do not run.
fn dead_topology(workspace: &Workspace) -> String {
    let path = workspace.write(
        "dr.toml",
        &format!(
            "[regions.eu-west]\nendpoints = [\"{}\"]\n\n[regions.us-east]\nendpoints = [\"{}\"]\n",
            closed_port(),
            closed_port()
        ),
    );
    path.display().to_string()
}

#[test]
fn without_a_topology_the_flag_and_the_env_var_are_named() {
    let workspace = Workspace::new();
    let output = tandem(&workspace, &["dr", "status"]);
    expect_code(&output, 2);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--topology"), "{stderr}");
    assert!(stderr.contains("TANDEM_DR_TOPOLOGY"), "{stderr}");
}

#[test]
fn a_bad_topology_is_reported_with_file_line_and_column() {
    let workspace = Workspace::new();
    let path = workspace.write(
        "dr.toml",
        "[regions.eu-west]\nendpoints = [\"http://127.0.0.1:7101\", \"ftp://x:1\"]\n",
    );
    let output = tandem(
        &workspace,
        &["dr", "--topology", path.to_str().unwrap(), "status"],
    );
    expect_code(&output, 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2:39:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("regions.eu-west.endpoints[1]"), "{stderr}");
    // The env var works as the flag does; a missing file is named.
    let output = workspace
        .tandem()
        .env("TANDEM_DR_TOPOLOGY", workspace.path().join("missing.toml"))
        .args(["dr", "status"])
        .output()
        .unwrap();
    expect_code(&output, 2);
    assert!(text(&output.stderr).contains("missing.toml"));
}

#[test]
fn an_unknown_region_lists_the_topology_regions() {
    let workspace = Workspace::new();
    let topology = dead_topology(&workspace);
    for args in [
        vec!["promote", "--region", "ap-south"],
        vec!["rejoin", "--region", "ap-south"],
        vec!["switchover", "--to", "ap-south"],
    ] {
        let mut full = vec!["dr", "--topology", topology.as_str()];
        full.extend(args);
        let output = tandem(&workspace, &full);
        expect_code(&output, 2);
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("region `ap-south` is not in the DR topology"),
            "{stderr}"
        );
        assert!(stderr.contains("eu-west, us-east"), "{stderr}");
    }
}

#[test]
fn unreachable_regions_are_shown_as_such_with_exit_3() {
    let workspace = Workspace::new();
    let topology = dead_topology(&workspace);
    let output = tandem(&workspace, &["dr", "--topology", &topology, "status"]);
    expect_code(&output, 3);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("eu-west: region eu-west is unreachable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("us-east: region us-east is unreachable"),
        "{stdout}"
    );
    let rows = stdout
        .lines()
        .filter(|line| line.contains("┆ unreachable"))
        .count();
    assert_eq!(rows, 2, "{stdout}");
    let output = tandem(
        &workspace,
        &["dr", "status", "--topology", &topology, "--output", "json"],
    );
    expect_code(&output, 3);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["regions"][0]["region"], "eu-west");
    assert_eq!(json["regions"][0]["reachable"], false);
    assert!(
        json["regions"][1]["error"]
            .as_str()
            .unwrap()
            .contains("us-east")
    );
}

#[test]
fn operations_on_unreachable_regions_are_refused_without_changing_anything() {
    let workspace = Workspace::new();
    let topology = dead_topology(&workspace);
    let output = tandem(
        &workspace,
        &[
            "dr",
            "--topology",
            &topology,
            "promote",
            "--region",
            "us-east",
        ],
    );
    expect_code(&output, 1);
    assert!(
        text(&output.stderr).contains("cannot promote region us-east: it does not answer"),
        "{}",
        text(&output.stderr)
    );
    let output = tandem(
        &workspace,
        &[
            "dr",
            "--topology",
            &topology,
            "switchover",
            "--to",
            "us-east",
        ],
    );
    expect_code(&output, 1);
    let output = tandem(
        &workspace,
        &[
            "dr",
            "--topology",
            &topology,
            "rejoin",
            "--region",
            "eu-west",
        ],
    );
    expect_code(&output, 1);
}

#[test]
fn argument_errors_are_usage_errors() {
    let workspace = Workspace::new();
    let topology = dead_topology(&workspace);
    for args in [
        vec!["dr", "--topology", topology.as_str(), "promote"],
        vec![
            "dr",
            "--topology",
            topology.as_str(),
            "switchover",
            "--to",
            "us-east",
            "--timeout",
            "soon",
        ],
        vec![
            "dr",
            "--topology",
            topology.as_str(),
            "status",
            "--output",
            "yaml",
        ],
        vec!["dr", "--topology", topology.as_str(), "demote"],
    ] {
        let output = tandem(&workspace, &args);
        expect_code(&output, 2);
    }
}

#[test]
fn replicate_needs_dr_settings_and_checks_them() {
    let workspace = Workspace::new();
    let config = workspace.write(
        "region.toml",
        "region = \"us-east\"\n[postgres]\nurl = \"postgres://tandem@127.0.0.1:1/tandem\"\n",
    );
    let output = tandem(
        &workspace,
        &["replicate", "--config", config.to_str().unwrap()],
    );
    expect_code(&output, 2);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("[dr]"), "{stderr}");
    assert!(stderr.contains("region.toml"), "{stderr}");

    let config = workspace.write(
        "bad.toml",
        "region = \"us-east\"\n[postgres]\nurl = \"postgres://tandem@127.0.0.1:1/tandem\"\n[dr]\nrole = \"standby\"\nactive = \"eu-west\"\n",
    );
    let output = tandem(
        &workspace,
        &["replicate", "--config", config.to_str().unwrap()],
    );
    expect_code(&output, 2);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("line 6"), "{stderr}");
    assert!(stderr.contains("active"), "{stderr}");
}
