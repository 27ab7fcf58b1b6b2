//! The shipped examples run as documented (on a copy of `examples/`, so the source tree is
//! not written to).

mod common;

use std::path::Path;

use common::{Workspace, run_id_of};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "out" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn examples() -> Workspace {
    let workspace = Workspace::new();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        &workspace.path().join("examples"),
    );
    workspace
}

fn states(shown: &serde_json::Value) -> Vec<(String, String)> {
    shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            (
                task["id"].as_str().unwrap().to_string(),
                task["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_example_validates() {
    let workspace = examples();
    let mut files: Vec<String> = std::fs::read_dir(workspace.path().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| path.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let output = workspace.output(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn trigger_rules_example_ends_as_its_readme_says() {
    let workspace = examples();
    let output = workspace.output(&["run", "examples/trigger-rules.yaml"]);
    assert_eq!(output.status.code(), Some(1), "the run fails on purpose");
    let run_id = run_id_of(&String::from_utf8_lossy(&output.stdout));
    let shown = workspace.show(&run_id);
    assert_eq!(shown["status"], "failed");
    let expected = [
        ("extract", "succeeded"),
        ("load", "failed"),
        ("publish", "upstream_failed"),
        ("announce", "upstream_failed"),
        ("cleanup", "succeeded"),
        ("rollback", "succeeded"),
        ("page_oncall", "skipped"),
        ("page_followup", "skipped"),
        ("notify", "succeeded"),
        ("open_incident", "succeeded"),
        ("quiet_check", "skipped"),
        ("tidy", "succeeded"),
        ("archive", "upstream_failed"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(id, state)| (id.to_string(), state.to_string()))
        .collect();
    assert_eq!(states(&shown), expected);
}

#[test]
fn airports_pipeline_fans_out_and_joins_on_real_data() {
    let workspace = examples();
    let output = workspace.output(&["run", "examples/airports.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_id = run_id_of(&stdout);
    let shown = workspace.show(&run_id);
    let states = states(&shown);
    let instances = states
        .iter()
        .filter(|(id, _)| id.starts_with("state["))
        .count();
    assert!(instances >= 50, "fan-out of {instances} instances");
    assert!(
        states.iter().all(|(_, state)| state == "succeeded"),
        "{states:?}"
    );
    let task = |id: &str| {
        shown["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|task| task["id"] == id)
            .unwrap_or_else(|| panic!("no task {id}"))
            .clone()
    };
    // The join saw every airport of the data set, and wrote its report where it says.
    let report = task("report");
    assert_eq!(report["outputs"]["airports"], "3376", "{report}");
    assert_eq!(
        report["outputs"]["states"],
        instances.to_string(),
        "{report}"
    );
    let markdown = report["outputs"]["report"].as_str().unwrap();
    let text = std::fs::read_to_string(markdown).unwrap();
    assert!(text.contains("| CA "), "{text}");
    assert!(
        markdown.starts_with(workspace.path().to_str().unwrap()),
        "{markdown}"
    );
}
