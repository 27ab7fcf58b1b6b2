use super::*;

fn parse(text: &str) -> Result<Topology, TopologyError> {
    Topology::parse(text, Path::new("dr.toml"))
}

/// The error's `FILE:LINE:COLUMN: message` text, asserting it is an `Invalid` one.
fn invalid(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(TopologyError::Invalid {
            path,
            line,
            column,
            message,
        }) => {
            assert_eq!(path, "dr.toml");
            (line, column, message)
        }
        other => panic!("expected an Invalid error for:\n{text}\ngot {other:?}"),
    }
}

const FULL: &str = r#"
[regions.eu-west]
endpoints = ["http://127.0.0.1:7101", "127.0.0.1:7102"]

[regions.eu-west.local]
pid_dir = "/run/eu-west/pids"
start = ["/deploy/region.sh", "start", "eu-west"]
partition = ["/deploy/region.sh", "partition", "eu-west"]
heal = ["/deploy/region.sh", "heal", "eu-west"]
postgres_url = "postgres://postgres@127.0.0.1:7140/tandem"

[regions.us-east]
endpoints = ["http://127.0.0.1:7201"]
"#;

#[test]
fn reads_regions_endpoints_and_local_control() {
    let topology = parse(FULL).unwrap();
    assert_eq!(topology.names(), ["eu-west", "us-east"]);
    let eu = topology.region("eu-west").unwrap();
    assert_eq!(
        eu.endpoints,
        ["http://127.0.0.1:7101", "http://127.0.0.1:7102"]
    );
    let local = eu.local.as_ref().unwrap();
    assert_eq!(local.pid_dir, Path::new("/run/eu-west/pids"));
    assert_eq!(local.start, ["/deploy/region.sh", "start", "eu-west"]);
    assert_eq!(
        local.partition.as_deref(),
        Some(
            &[
                "/deploy/region.sh".to_string(),
                "partition".into(),
                "eu-west".into()
            ][..]
        )
    );
    assert_eq!(local.heal.as_ref().unwrap()[1], "heal");
    assert_eq!(
        local.postgres_url.as_deref(),
        Some("postgres://postgres@127.0.0.1:7140/tandem")
    );
    let us = topology.region("us-east").unwrap();
    assert_eq!(us.local, None);
}

#[test]
fn an_unknown_region_lists_the_known_ones() {
    let topology = parse(FULL).unwrap();
    let error = topology.region("ap-south").unwrap_err().to_string();
    assert!(error.contains("`ap-south`"), "{error}");
    assert!(error.contains("eu-west, us-east"), "{error}");
    assert!(error.contains("dr.toml"), "{error}");
}

#[test]
fn unknown_keys_are_refused_with_their_place() {
    let (line, column, message) =
        invalid("[regions.eu-west]\nendpoints = [\"http://a:1\"]\nendpoint = \"x\"\n");
    assert_eq!((line, column), (3, 1), "{message}");
    assert!(message.contains("endpoint"), "{message}");
    let (line, _, message) = invalid(
        "[regions.eu-west]\nendpoints = [\"http://a:1\"]\n[regions.eu-west.local]\npid_dir = \"/p\"\nstart = [\"s\"]\nstop = [\"x\"]\n",
    );
    assert_eq!(line, 6, "{message}");
    assert!(message.contains("stop"), "{message}");
    let (line, _, message) = invalid("[region.eu-west]\nendpoints = []\n");
    assert_eq!(line, 1, "{message}");
    assert!(message.contains("region"), "{message}");
}

#[test]
fn wrong_types_and_syntax_errors_name_the_line() {
    let (line, column, message) = invalid("[regions.eu-west]\nendpoints = \"http://a:1\"\n");
    assert_eq!((line, column), (2, 13), "{message}");
    let (line, _, _) = invalid("[regions.eu-west]\nendpoints = [\"http://a:1\"\n");
    assert!(line >= 2);
    let (line, _, message) = invalid("[regions.eu-west]\n");
    assert_eq!(line, 1, "{message}");
    assert!(message.contains("endpoints"), "{message}");
}

#[test]
fn no_regions_is_refused() {
    let (_, _, message) = invalid("regions = {}\n");
    assert!(message.contains("at least one region"), "{message}");
    let (_, _, message) = invalid("");
    assert!(message.contains("regions"), "{message}");
}

#[test]
fn endpoints_are_checked_one_by_one() {
    let (line, column, message) = invalid("[regions.a]\nendpoints = []\n");
    assert_eq!((line, column), (2, 13), "{message}");
    assert!(message.contains("regions.a.endpoints"), "{message}");
    let (line, column, message) =
        invalid("[regions.a]\nendpoints = [\"http://h:1\", \"ftp://h:2\"]\n");
    assert_eq!((line, column), (2, 28), "{message}");
    assert!(message.contains("regions.a.endpoints[1]"), "{message}");
    assert!(message.contains("ftp://h:2"), "{message}");
    let (_, column, message) = invalid("[regions.a]\nendpoints = [\"http://h:1\", \"h:1\"]\n");
    assert_eq!(column, 28, "{message}");
    assert!(message.contains("twice"), "{message}");
    let (_, _, message) = invalid("[regions.a]\nendpoints = [\"http://h:1,http://h:2\"]\n");
    assert!(message.contains("regions.a.endpoints[0]"), "{message}");
}

#[test]
fn region_names_are_checked() {
    let (line, column, message) = invalid("[regions.\"eu/west\"]\nendpoints = [\"h:1\"]\n");
    assert_eq!((line, column), (1, 10), "{message}");
    assert!(message.contains("eu/west"), "{message}");
}

#[test]
fn local_control_is_checked() {
    let base = "[regions.a]\nendpoints = [\"h:1\"]\n[regions.a.local]\n";
    let (line, _, message) = invalid(&format!("{base}pid_dir = \"pids\"\nstart = [\"s\"]\n"));
    assert_eq!(line, 4, "{message}");
    assert!(message.contains("absolute path"), "{message}");
    let (line, column, message) = invalid(&format!("{base}pid_dir = \"/p\"\nstart = []\n"));
    assert_eq!((line, column), (5, 9), "{message}");
    assert!(message.contains("regions.a.local.start"), "{message}");
    let (line, column, message) =
        invalid(&format!("{base}pid_dir = \"/p\"\nstart = [\" \", \"x\"]\n"));
    assert_eq!((line, column), (5, 10), "{message}");
    assert!(message.contains("start[0]"), "{message}");
    let (line, _, message) = invalid(&format!(
        "{base}pid_dir = \"/p\"\nstart = [\"s\"]\npartition = [\"p\"]\n"
    ));
    assert_eq!(line, 6, "{message}");
    assert!(message.contains("without `heal`"), "{message}");
    let (line, _, message) = invalid(&format!(
        "{base}pid_dir = \"/p\"\nstart = [\"s\"]\nheal = [\"h\"]\n"
    ));
    assert_eq!(line, 6, "{message}");
    assert!(message.contains("without `partition`"), "{message}");
    let (_, _, message) = invalid(&format!("{base}start = [\"s\"]\n"));
    assert!(message.contains("pid_dir"), "{message}");
    let (line, _, message) = invalid(&format!(
        "{base}pid_dir = \"/p\"\nstart = [\"s\"]\npostgres_url = \"\"\n"
    ));
    assert_eq!(line, 6, "{message}");
    assert!(message.contains("postgres_url"), "{message}");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(line_column("é = 1\nab", 0), (1, 1));
    assert_eq!(line_column("é = 1\nab", 2), (1, 2));
    assert_eq!(line_column("é = 1\nab", 8), (2, 2));
    assert_eq!(line_column("ab", 99), (1, 3));
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dr.toml");
    std::fs::write(&path, FULL).unwrap();
    let topology = Topology::load(&path).unwrap();
    assert_eq!(topology.path, path);
    let missing = dir.path().join("nope.toml");
    let error = Topology::load(&missing).unwrap_err().to_string();
    assert!(error.contains("nope.toml"), "{error}");
    std::fs::write(&path, "[regions.a]\nendpoints = [1]\n").unwrap();
    let error = Topology::load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}:2:14: ", path.display())),
        "{error}"
    );
}
