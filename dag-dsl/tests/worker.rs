//! Compiling worker tasks: `worker`, `input` (templates at any depth, JSON scalars kept,
//! matrix values substituted), `heartbeat_timeout`, `retry.non_retryable_errors`, and what
//! `defaults` do and do not apply to them.

use std::path::Path;
use std::time::Duration;

use serde_json::Number;
use tandem_dsl::{
    InputValue, RetryPolicy, Segment, TaskAction, TaskIndex, Template, TemplateContext,
    WorkflowSpec, compile, compile_file,
};

fn ok(text: &str) -> WorkflowSpec {
    compile("test.yaml", text).unwrap_or_else(|errors| panic!("{errors}"))
}

fn text(s: &str) -> InputValue {
    InputValue::String(Template::literal(s))
}

/// The queue, type, input and heartbeat timeout of worker task `id`.
fn worker(spec: &WorkflowSpec, id: &str) -> (String, String, InputValue, Duration) {
    let index = spec
        .task_index(id)
        .unwrap_or_else(|| panic!("no task {id}"));
    match &spec.task(index).action {
        TaskAction::Worker {
            queue,
            task_type,
            input,
            heartbeat_timeout,
        } => (
            queue.clone(),
            task_type.clone(),
            input.clone(),
            *heartbeat_timeout,
        ),
        other => panic!("{id} is not a worker task: {other:?}"),
    }
}

#[test]
fn the_full_example_has_a_worker_task() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/full.yaml");
    let spec = compile_file(&path).unwrap_or_else(|errors| panic!("{errors}"));
    let (queue, task_type, input, heartbeat) = worker(&spec, "publish");
    assert_eq!(
        (queue.as_str(), task_type.as_str()),
        ("publishers", "publish_day")
    );
    assert_eq!(heartbeat, Duration::from_secs(60));
    let publish = spec.task(spec.task_index("publish").unwrap());
    // `defaults.env` and `defaults.working_dir` are for shell tasks; `timeout` and the retry
    // defaults apply to every task.
    assert!(publish.env.is_empty());
    assert_eq!(publish.timeout, Some(Duration::from_secs(600)));
    assert_eq!(publish.retry.max_attempts, 3);
    assert_eq!(
        publish.retry.non_retryable_errors,
        ["InvalidInput".to_string(), "NotFound".to_string()]
    );
    assert_eq!(
        input,
        InputValue::Map(vec![
            (
                "day".into(),
                InputValue::String(Template {
                    segments: vec![Segment::Param("day".into())]
                })
            ),
            (
                "path".into(),
                InputValue::String(Template {
                    segments: vec![Segment::TaskOutput {
                        task: 0,
                        key: "path".into()
                    }]
                })
            ),
            ("shards".into(), InputValue::Number(Number::from(3))),
            (
                "options".into(),
                InputValue::Map(vec![
                    ("dry_run".into(), InputValue::Bool(false)),
                    (
                        "ratio".into(),
                        InputValue::Number(Number::from_f64(0.5).unwrap())
                    ),
                    ("tag".into(), InputValue::Null),
                    (
                        "labels".into(),
                        InputValue::List(vec![
                            text("nightly"),
                            InputValue::String(Template {
                                segments: vec![Segment::WorkflowName]
                            }),
                        ])
                    ),
                ])
            ),
        ])
    );
    assert_eq!(input.output_dependencies(), [0]);
}

struct Run;

impl TemplateContext for Run {
    fn param(&self, name: &str) -> Option<&str> {
        (name == "day").then_some("2024-01-01")
    }
    fn task_output(&self, task: TaskIndex, key: &str) -> Option<&str> {
        (task == 0 && key == "path").then_some("/data/x.csv")
    }
    fn task_id(&self, _task: TaskIndex) -> &str {
        "extract"
    }
    fn run_id(&self) -> &str {
        "run-1"
    }
    fn workflow_name(&self) -> &str {
        "w"
    }
}

#[test]
fn matrix_instances_get_their_values_in_the_input() {
    let spec = ok("
name: w
params: { day: '2024-01-01' }
tasks:
  extract: { run: ./extract.sh }
  load:
    needs: [extract]
    matrix: { shard: [1, 2], table: [users] }
    worker: { queue: loaders, type: load_table }
    input:
      table: ${{ matrix.table }}_${{ params.day }}
      shard: ${{ matrix.shard }}
      source: { path: '${{ tasks.extract.outputs.path }}', run: '${{ run.id }}' }
");
    let ids: Vec<&str> = spec.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "extract",
            "load[shard=1,table=users]",
            "load[shard=2,table=users]"
        ]
    );
    let (queue, task_type, input, heartbeat) = worker(&spec, "load[shard=2,table=users]");
    assert_eq!(
        (queue.as_str(), task_type.as_str()),
        ("loaders", "load_table")
    );
    assert_eq!(heartbeat, TaskAction::DEFAULT_HEARTBEAT_TIMEOUT);
    assert_eq!(heartbeat, Duration::from_secs(30));
    // A matrix value in a string stays a string, like in `run`.
    assert_eq!(
        input.render(&Run).unwrap(),
        serde_json::json!({
            "table": "users_2024-01-01",
            "shard": "2",
            "source": { "path": "/data/x.csv", "run": "run-1" },
        })
    );
    assert_eq!(spec.task(2).upstream, [0]);
}

#[test]
fn a_worker_task_without_input_gets_an_empty_mapping() {
    let spec = ok("name: w\ntasks:\n  t: { worker: { queue: q.eu-1, type: _t } }\n");
    let (queue, task_type, input, _) = worker(&spec, "t");
    assert_eq!((queue.as_str(), task_type.as_str()), ("q.eu-1", "_t"));
    assert_eq!(input, InputValue::Map(Vec::new()));
    assert_eq!(input.render(&Run).unwrap(), serde_json::json!({}));
}

#[test]
fn input_keeps_numbers_as_json_and_keys_as_text() {
    let spec = ok("
name: w
tasks:
  t:
    worker: { queue: q, type: t }
    input: { 1: one, big: 18446744073709551615, neg: -7, hex: 0x1F, 'yes': yes, list: [] }
");
    let (_, _, input, _) = worker(&spec, "t");
    assert_eq!(
        input.render(&Run).unwrap(),
        serde_json::json!({
            "1": "one",
            "big": u64::MAX,
            "neg": -7,
            "hex": 31,
            "yes": "yes",
            "list": [],
        })
    );
}

#[test]
fn non_retryable_errors_merge_from_defaults_like_other_retry_fields() {
    let spec = ok("
name: w
defaults:
  retry: { max_attempts: 4, non_retryable_errors: [Fatal, Fatal, BadInput] }
tasks:
  inherits: { worker: { queue: q, type: t } }
  overrides:
    worker: { queue: q, type: t }
    retry: { non_retryable_errors: [] }
  other_field: { run: x, retry: { jitter: none } }
");
    let inherited = &spec.task(0).retry;
    assert_eq!(inherited.non_retryable_errors, ["BadInput", "Fatal"]);
    assert!(!inherited.is_retryable_error_type("Fatal"));
    assert!(inherited.is_retryable_error_type("fatal"));
    assert_eq!(
        spec.task(1).retry,
        RetryPolicy {
            max_attempts: 4,
            non_retryable_errors: vec![],
            ..RetryPolicy::default()
        }
    );
    assert_eq!(
        spec.task(2).retry.non_retryable_errors,
        ["BadInput", "Fatal"]
    );
}

#[test]
fn heartbeat_timeout_limits() {
    let file = |timeout: &str| {
        format!(
            "name: w\ntasks:\n  t: {{ worker: {{ queue: q, type: t }}, heartbeat_timeout: {timeout} }}\n"
        )
    };
    let (_, _, _, heartbeat) = worker(&ok(&file("24h")), "t");
    assert_eq!(heartbeat, Duration::from_secs(86_400));
    let (_, _, _, heartbeat) = worker(&ok(&file("250ms")), "t");
    assert_eq!(heartbeat, Duration::from_millis(250));
    let errors = compile("f.yaml", &file("24h1s")).unwrap_err().to_string();
    assert!(errors.contains("at most 24h, found `24h1s`"), "{errors}");
}
