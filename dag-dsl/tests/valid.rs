//! Compiling good files: defaults merging, matrix expansion, templates, graph edges and the
//! version hash, on `tests/valid/full.yaml` (every feature) and small inline files.

use std::path::Path;
use std::time::Duration;

use tandem_dsl::{
    Jitter, ParamSpec, RetryPolicy, Segment, TaskAction, Template, TriggerRule, WorkflowSpec,
    compile, compile_file,
};

fn full() -> WorkflowSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/full.yaml");
    compile_file(&path).unwrap_or_else(|errors| panic!("{errors}"))
}

fn ok(text: &str) -> WorkflowSpec {
    compile("test.yaml", text).unwrap_or_else(|errors| panic!("{errors}"))
}

fn text(s: &str) -> Segment {
    Segment::Text(s.to_string())
}

fn shell(spec: &WorkflowSpec, id: &str) -> (Template, Option<Template>) {
    let index = spec
        .task_index(id)
        .unwrap_or_else(|| panic!("no task {id}"));
    match &spec.task(index).action {
        TaskAction::Shell { run, working_dir } => (run.clone(), working_dir.clone()),
        TaskAction::Empty | TaskAction::Worker { .. } => panic!("{id} has no run"),
    }
}

#[test]
fn full_example_has_every_instance_in_file_and_matrix_order() {
    let spec = full();
    let ids: Vec<&str> = spec.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "extract",
            "transform[shard=1,format=csv]",
            "transform[shard=1,format=parquet]",
            "transform[shard=2,format=csv]",
            "transform[shard=2,format=parquet]",
            "transform[shard=3,format=csv]",
            "transform[shard=3,format=parquet]",
            "collect",
            "load",
            "report",
            "publish",
        ]
    );
    let transform = spec.task(2);
    assert_eq!(transform.key, "transform");
    assert_eq!(
        transform.matrix,
        [
            ("shard".to_string(), "1".to_string()),
            ("format".to_string(), "parquet".to_string())
        ]
    );
    assert_eq!(spec.name, "nightly-etl");
    assert_eq!(
        spec.description.as_deref(),
        Some("Extract, transform in shards and load, every night.")
    );
    assert_eq!(spec.deadline, Some(Duration::from_secs(7200)));
}

#[test]
fn params_keep_file_order_and_text_defaults() {
    let spec = full();
    let params: Vec<(&str, &ParamSpec)> =
        spec.params.iter().map(|(k, v)| (k.as_str(), v)).collect();
    assert_eq!(
        params,
        [
            (
                "day",
                &ParamSpec {
                    default: Some("2024-01-01".into())
                }
            ),
            ("region", &ParamSpec { default: None }),
            (
                "shards",
                &ParamSpec {
                    default: Some("3".into())
                }
            ),
        ]
    );
}

#[test]
fn needs_expand_to_every_instance_both_ways() {
    let spec = full();
    assert_eq!(spec.task(0).upstream, Vec::<u32>::new());
    assert_eq!(spec.task(0).downstream, [1, 2, 3, 4, 5, 6]);
    for index in 1..=6 {
        assert_eq!(spec.task(index).upstream, [0]);
        assert_eq!(spec.task(index).downstream, [7, 9]);
    }
    assert_eq!(spec.task(7).upstream, [1, 2, 3, 4, 5, 6]);
    assert_eq!(spec.task(8).upstream, [7]);
    // `report` needs `load` and `transform`: sorted, without duplicates.
    assert_eq!(spec.task(9).upstream, [1, 2, 3, 4, 5, 6, 8]);
    assert_eq!(spec.task(9).downstream, Vec::<u32>::new());
}

#[test]
fn matrix_values_are_substituted_and_outputs_resolved() {
    let spec = full();
    let (run, working_dir) = shell(&spec, "transform[shard=2,format=csv]");
    assert_eq!(
        run.segments,
        [
            text("./transform.sh 2 csv \""),
            Segment::TaskOutput {
                task: 0,
                key: "path".into()
            },
            text("\""),
        ]
    );
    assert_eq!(working_dir, Some(Template::literal("work/csv")));
    let (run, working_dir) = shell(&spec, "extract");
    assert_eq!(
        run.segments,
        [
            text("./extract.sh \""),
            Segment::Param("day".into()),
            text("\" --region "),
            Segment::Param("region".into()),
            text(" --run "),
            Segment::RunId,
        ]
    );
    // No working_dir of its own: the default one.
    assert_eq!(working_dir, Some(Template::literal("work")));
    let (run, _) = shell(&spec, "load");
    assert_eq!(run.segments.last(), Some(&Segment::WorkflowName));
}

#[test]
fn env_merges_defaults_under_the_task_and_is_sorted() {
    let spec = full();
    let transform = &spec.tasks[spec.task_index("transform[shard=3,format=csv]").unwrap() as usize];
    assert_eq!(
        transform.env,
        [
            (
                "DAY".to_string(),
                Template {
                    segments: vec![Segment::Param("day".into())]
                }
            ),
            ("LANG".to_string(), Template::literal("en_US.UTF-8")),
            ("SHARD".to_string(), Template::literal("3")),
        ]
    );
    let extract = spec.task(0);
    assert_eq!(
        extract.env,
        [
            (
                "DAY".to_string(),
                Template {
                    segments: vec![Segment::Param("day".into())]
                }
            ),
            ("LANG".to_string(), Template::literal("C.UTF-8")),
        ]
    );
}

#[test]
fn retry_merges_field_by_field_over_defaults() {
    let spec = full();
    let defaults = RetryPolicy {
        max_attempts: 3,
        initial_interval: Duration::from_secs(1),
        backoff_coefficient: 2.0,
        max_interval: Duration::from_secs(60),
        jitter: Jitter::Full,
        non_retryable_exit_codes: vec![],
        non_retryable_errors: vec![],
    };
    assert_eq!(spec.task(0).retry, defaults);
    assert_eq!(
        spec.task(1).retry,
        RetryPolicy {
            max_attempts: 5,
            jitter: Jitter::None,
            non_retryable_exit_codes: vec![2, 64],
            ..defaults.clone()
        }
    );
    assert_eq!(
        spec.task(9).retry,
        RetryPolicy {
            initial_interval: Duration::from_secs(5),
            ..defaults
        }
    );
}

#[test]
fn built_in_retry_defaults_apply_without_any_retry() {
    let spec =
        ok("name: w\ntasks:\n  a: { run: x, retry: { initial_interval: 2s } }\n  b: { run: y }\n");
    assert_eq!(spec.task(1).retry, RetryPolicy::default());
    // max_interval defaults to 100 x initial_interval.
    assert_eq!(spec.task(0).retry.max_interval, Duration::from_secs(200));
    assert_eq!(spec.task(0).retry.max_attempts, 1);
}

#[test]
fn timeouts_trigger_rules_and_empty_tasks() {
    let spec = full();
    assert_eq!(spec.task(0).timeout, Some(Duration::from_secs(600)));
    assert_eq!(spec.task(8).timeout, Some(Duration::from_secs(30)));
    assert_eq!(spec.task(7).action, TaskAction::Empty);
    assert_eq!(spec.task(7).trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(spec.task(8).trigger_rule, TriggerRule::NoneFailed);
    assert_eq!(spec.task(9).trigger_rule, TriggerRule::AllDone);
    let bare = ok("name: w\ntasks:\n  a: { run: x }\n");
    assert_eq!(bare.task(0).timeout, None);
    assert_eq!(bare.deadline, None);
    assert_eq!(bare.task(0).env, []);
}

#[test]
fn outputs_of_transitive_upstreams_resolve_to_their_index() {
    let spec = ok("
name: w
tasks:
  a: { run: 'echo x=1 >> $TANDEM_OUTPUT' }
  b: { needs: [a], run: b }
  c: { needs: [b], run: 'use ${{ tasks.a.outputs.x }}${{tasks.b.outputs.y}}' }
");
    let (run, _) = shell(&spec, "c");
    assert_eq!(
        run.segments,
        [
            text("use "),
            Segment::TaskOutput {
                task: 0,
                key: "x".into()
            },
            Segment::TaskOutput {
                task: 1,
                key: "y".into()
            },
        ]
    );
    assert_eq!(run.output_dependencies().collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn a_need_on_a_matrix_task_waits_for_all_its_instances() {
    let spec = ok("
name: w
tasks:
  fan:
    matrix: { os: [linux, mac], arch: [x86, arm] }
    run: build ${{ matrix.os }}-${{ matrix.arch }}
  join: { needs: [fan] }
  after:
    needs: [join]
    matrix: { n: [1, 2] }
    run: echo ${{ matrix.n }}
");
    let ids: Vec<&str> = spec.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "fan[os=linux,arch=x86]",
            "fan[os=linux,arch=arm]",
            "fan[os=mac,arch=x86]",
            "fan[os=mac,arch=arm]",
            "join",
            "after[n=1]",
            "after[n=2]",
        ]
    );
    assert_eq!(spec.task(4).upstream, [0, 1, 2, 3]);
    assert_eq!(spec.task(4).downstream, [5, 6]);
    let (run, _) = shell(&spec, "fan[os=mac,arch=arm]");
    assert_eq!(run, Template::literal("build mac-arm"));
}

#[test]
fn scalars_keep_the_text_the_file_spells() {
    let spec = ok("
name: w
tasks:
  a: { run: 'true' }
  b: { needs: [a], run: true }
  c: { needs: [b], run: 1.10, env: { N: 0x1F, FLAG: yes } }
");
    assert_eq!(shell(&spec, "a").0, Template::literal("true"));
    assert_eq!(shell(&spec, "b").0, Template::literal("true"));
    assert_eq!(shell(&spec, "c").0, Template::literal("1.10"));
    assert_eq!(
        spec.task(2).env,
        [
            ("FLAG".to_string(), Template::literal("yes")),
            ("N".to_string(), Template::literal("0x1F")),
        ]
    );
}

#[test]
fn merge_keys_share_task_settings() {
    let spec = ok("
name: w
tasks:
  a: &base
    retry: { max_attempts: 4 }
    timeout: 1m
    run: echo a
  b:
    <<: *base
    needs: [a]
    run: echo b
");
    let b = spec.task(1);
    assert_eq!(b.retry.max_attempts, 4);
    assert_eq!(b.timeout, Some(Duration::from_secs(60)));
    assert_eq!(shell(&spec, "b").0, Template::literal("echo b"));
}

#[test]
fn version_is_the_sha256_of_the_text() {
    // printf 'name: h\ntasks:\n  a: {}\n' | sha256sum
    let spec = ok("name: h\ntasks:\n  a: {}\n");
    assert_eq!(
        spec.version,
        "6a662e8a0e0deac5b10c2a08afd5293d0ec34292aa17e60704961e8e3ac6ccf9"
    );
    assert_ne!(ok("name: h\ntasks:\n  a: {}\n\n").version, spec.version);
}

#[test]
fn unreadable_file_gives_one_error_without_position() {
    let path = Path::new("/nonexistent/dir/wf.yaml");
    let errors = compile_file(path).unwrap_err();
    assert_eq!(errors.len(), 1);
    let error = &errors.0[0];
    assert_eq!((error.line, error.column), (0, 0));
    assert_eq!(error.file, "/nonexistent/dir/wf.yaml");
    assert!(
        error
            .message
            .starts_with("cannot read `/nonexistent/dir/wf.yaml`: No such file"),
        "{error}"
    );
}

#[test]
fn compile_file_names_the_path_in_errors() {
    let dir = std::env::temp_dir().join(format!("tandem-dsl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "name: w\ntasks:\n  a: { nedds: [] }\n").unwrap();
    let errors = compile_file(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        errors.to_string().starts_with(&format!(
            "{}:3:8: error: tasks.a: unknown field `nedds`",
            path.display()
        )),
        "{errors}"
    );
}
