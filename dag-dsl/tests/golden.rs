//! Golden tests: every `tests/golden/NAME.yaml` is a bad workflow file whose exact error
//! output (the Display of `Diagnostics`) is stored in `NAME.expected`.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate change of
//! messages, then review the diff: these are the product's error messages.

use std::fs;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_bad_file_gives_exactly_the_expected_errors() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= 20,
        "expected at least 20 golden files, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(case).expect("readable golden file");
        let actual = match tandem_dsl::compile(&name, &text) {
            Ok(_) => format!("{name} compiled without errors\n"),
            Err(errors) => format!("{errors}\n"),
        };
        let expected_path = case.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).expect("writable expected file");
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "--- {name}: expected\n{expected}--- {name}: actual\n{actual}"
            )),
            Err(error) => failures.push(format!(
                "--- {name}: cannot read {}: {error}",
                expected_path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_expected_file_has_its_yaml_file() {
    let orphans: Vec<String> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "expected"))
        .filter(|path| !path.with_extension("yaml").exists())
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        orphans.is_empty(),
        "expected files without a yaml file: {orphans:?}"
    );
}
