//! Step 2 of compiling: the file's structure as written ("raw"), with the position of every
//! key and value. Types are checked (a list is a list), values are not validated yet (a
//! duration is still text). Produced by [`crate::convert`], validated by [`crate::check`].
//!
//! These structs also define the JSON Schema of the file format ([`crate::json_schema`]):
//! their doc comments are the field descriptions editors show. Each struct's `FIELDS` lists
//! the keys the converter accepts; a test checks that they equal the schema's properties.

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::names::NameKind;
use crate::spec::TriggerRule;
use crate::yaml::Pos;

/// A value with the position of the YAML node it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sp<T> {
    /// The value.
    pub value: T,
    /// Where it is written.
    pub pos: Pos,
}

impl<T> Sp<T> {
    /// `value` at `pos`.
    pub(crate) fn new(value: T, pos: Pos) -> Sp<T> {
        Sp { value, pos }
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A mapping whose keys the user chooses (task ids, env var names, ...), in file order. `K`
/// only gives the key rule to the JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entries<K, V> {
    /// Position of the mapping.
    pub pos: Pos,
    /// The entries in file order; keys are unique (duplicates were reported and dropped).
    pub entries: Vec<(Sp<String>, V)>,
    /// The key rule.
    pub keys: PhantomData<K>,
}

impl<K: KeyRule, V: JsonSchema> JsonSchema for Entries<K, V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Map_of_{}", V::schema_name()))
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let values = generator.subschema_for::<V>();
        json_schema!({
            "type": "object",
            "propertyNames": {
                "type": "string",
                "pattern": K::KIND.pattern(),
                "description": format!("Each key is a {}: {}.", K::KIND.noun(), K::KIND.rule()),
            },
            "additionalProperties": values,
        })
    }
}

/// The spelling rule of the keys of an [`Entries`].
pub(crate) trait KeyRule {
    /// The rule.
    const KIND: NameKind;
}

/// Keys are task ids.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskKeys;
impl KeyRule for TaskKeys {
    const KIND: NameKind = NameKind::Task;
}

/// Keys are param names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamKeys;
impl KeyRule for ParamKeys {
    const KIND: NameKind = NameKind::Param;
}

/// Keys are env var names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EnvKeys;
impl KeyRule for EnvKeys {
    const KIND: NameKind = NameKind::EnvVar;
}

/// Keys are matrix dimension names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DimensionKeys;
impl KeyRule for DimensionKeys {
    const KIND: NameKind = NameKind::MatrixDimension;
}

/// Declares a newtype over `String` with a hand-written JSON Schema.
macro_rules! text_type {
    ($(#[$meta:meta])* $name:ident, $schema_name:literal, $schema:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct $name(pub String);

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }

            fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

text_type!(
    /// A workflow name, as written.
    WorkflowName,
    "WorkflowName",
    json_schema!({
        "type": "string",
        "pattern": NameKind::Workflow.pattern(),
    })
);

text_type!(
    /// A duration, as written (`250ms`, `30s`, `10m`, `2h`, `1h30m`).
    DurationText,
    "Duration",
    json_schema!({
        "type": "string",
        "description": "A duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`), or several such parts.",
        "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*[A-Za-zµ]+\\s*)+$",
        "examples": ["250ms", "30s", "10m", "1h30m"],
    })
);

text_type!(
    /// A scalar (string, number or boolean) as the file spells it; used as text.
    ScalarText,
    "Scalar",
    json_schema!({
        "type": ["string", "number", "boolean"],
        "description": "A string, number or boolean, used as text as written.",
    })
);

text_type!(
    /// A trigger rule, as written.
    TriggerRuleText,
    "TriggerRule",
    json_schema!({
        "type": "string",
        "enum": TriggerRule::ALL.iter().map(|(_, name)| *name).collect::<Vec<_>>(),
        "description": "When a task may start given its upstream states (Airflow's trigger rules).",
    })
);

text_type!(
    /// A jitter mode, as written.
    JitterText,
    "Jitter",
    json_schema!({
        "type": "string",
        "enum": ["full", "none"],
        "description": "`full`: the delay is uniform in [0, backoff]; `none`: exactly the backoff.",
    })
);

/// A param's default as text; `None` when the file gives null (the param is required).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamDefault(pub Option<String>);

impl JsonSchema for ParamDefault {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ParamDefault")
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "number", "boolean", "null"],
            "description": "The param's default value (used as text as written); null (`~`) makes the param required.",
        })
    }
}

/// An exit code in `non_retryable_exit_codes`, as written (range not checked yet).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExitCode {
    /// Index in the list as written (items of a wrong type are dropped before checking).
    pub index: usize,
    /// The code.
    pub code: i64,
}

impl JsonSchema for ExitCode {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ExitCode")
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": 255 })
    }
}

/// An error type in `non_retryable_errors`, as written (not checked yet).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorType {
    /// Index in the list as written (items of a wrong type are dropped before checking).
    pub index: usize,
    /// The error type.
    pub text: String,
}

impl JsonSchema for ErrorType {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorType")
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": crate::limits::MAX_ERROR_TYPE_BYTES,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
            "description": "An error type reported by a worker (e.g. `InvalidInput`), compared exactly.",
        })
    }
}

text_type!(
    /// A queue name or task type of `worker`, as written (not checked yet).
    WorkerName,
    "WorkerName",
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": crate::limits::MAX_WORKER_NAME_BYTES,
        "pattern": NameKind::Queue.pattern(),
    })
);

/// The values of one matrix dimension (emptiness not checked yet).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MatrixValues(pub Vec<Sp<ScalarText>>);

impl JsonSchema for MatrixValues {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("MatrixValues")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<ScalarText>();
        json_schema!({
            "type": "array",
            "minItems": 1,
            "items": item,
            "description": "The values of this dimension (strings, numbers or booleans, used as text; without `,`, `=`, `[`, `]` or control characters).",
        })
    }
}

/// A Tandem workflow: a DAG of tasks run with retries, timeouts and durable checkpoints.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename = "Workflow", deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    /// Where the file's top-level mapping starts.
    #[schemars(skip)]
    pub pos: Pos,
    /// The workflow's name: letters, digits, `-` and `_`. With the file's content hash it
    /// identifies the workflow.
    #[schemars(required)]
    pub name: Option<Sp<WorkflowName>>,
    /// Free text describing the workflow.
    pub description: Option<Sp<String>>,
    /// Run params: name -> default value. A null default (`~`) makes the param required at run
    /// start (`--param NAME=VALUE`); `--param` overrides any default. Used as
    /// `${{ params.NAME }}`.
    pub params: Option<Entries<ParamKeys, Sp<ParamDefault>>>,
    /// Run-level deadline (a duration like `2h`): the whole run is stopped, as `timed_out`,
    /// after this long.
    pub deadline: Option<Sp<DurationText>>,
    /// Start runs on a cron schedule (`tandem serve` only): `cron`, and optionally `timezone`,
    /// `catchup` and `catchup_window`. Every param must have a default: a scheduled run
    /// starts with the defaults.
    pub schedule: Option<RawSchedule>,
    /// Settings applied to every task unless the task sets its own.
    pub defaults: Option<RawDefaults>,
    /// The tasks: task id -> task, in file order. At least one.
    #[schemars(required, extend("minProperties" = 1))]
    pub tasks: Option<Entries<TaskKeys, RawTask>>,
}

impl RawWorkflow {
    /// The keys accepted in the top-level mapping.
    pub(crate) const FIELDS: &'static [&'static str] = &[
        "name",
        "description",
        "params",
        "deadline",
        "schedule",
        "defaults",
        "tasks",
    ];
}

text_type!(
    /// A cron expression, as written (not checked yet).
    CronText,
    "Cron",
    json_schema!({
        "type": "string",
        "minLength": 1,
        "description": "Standard cron: 5 fields `minute hour day-of-month month day-of-week` (numbers, `*`, `,`, `-`, `/`, month and day names like `JAN` and `MON`), or `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. No seconds field, no `L`, `W`, `#` or `?`.",
        "examples": ["30 2 * * 1-5", "*/15 * * * *", "0 6 1 * *", "@daily"],
    })
);

text_type!(
    /// A time zone name, as written (not checked yet).
    TimezoneText,
    "Timezone",
    json_schema!({
        "type": "string",
        "description": "An IANA time zone name (the tz database), e.g. `Europe/Paris`, `America/New_York` or `UTC`.",
        "examples": ["UTC", "Europe/Paris", "America/New_York"],
    })
);

text_type!(
    /// A catch-up policy, as written.
    CatchupText,
    "Catchup",
    json_schema!({
        "type": "string",
        "enum": crate::schedule::Catchup::ALL.iter().map(|(_, name)| *name).collect::<Vec<_>>(),
        "description": "`latest`: fire only the latest missed tick (the default); `all`: every missed tick, oldest first.",
    })
);

/// A cron schedule: `schedule: { cron: "30 2 * * 1-5", timezone: Europe/Paris }`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename = "Schedule", deny_unknown_fields)]
pub(crate) struct RawSchedule {
    /// Where the mapping starts.
    #[schemars(skip)]
    pub pos: Pos,
    /// When to start a run: a standard 5-field cron expression (minute hour day-of-month
    /// month day-of-week), read in `timezone`. Quote it in YAML: `cron: "*/15 * * * *"`.
    #[schemars(required)]
    pub cron: Option<Sp<CronText>>,
    /// The IANA time zone the expression is read in (e.g. `Europe/Paris`); default `UTC`.
    /// Across daylight-saving changes a fixed time ticks once a day (in a skipped hour, at
    /// the first minute after it); wildcard and step times skip the missing hour and tick in
    /// both passes of a repeated one.
    pub timezone: Option<Sp<TimezoneText>>,
    /// Which ticks missed while no leader ran the region to fire when one does: `latest`
    /// (only the latest, the default) or `all` (every one, oldest first). Ticks older than
    /// `catchup_window` are skipped either way.
    pub catchup: Option<Sp<CatchupText>>,
    /// How old a missed tick may be and still be fired (a duration from `1m` to `366d`);
    /// default `24h`.
    pub catchup_window: Option<Sp<DurationText>>,
}

impl RawSchedule {
    /// The keys accepted in `schedule`.
    pub(crate) const FIELDS: &'static [&'static str] =
        &["cron", "timezone", "catchup", "catchup_window"];
}

/// Settings applied to every task unless the task overrides them.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename = "Defaults", deny_unknown_fields)]
pub(crate) struct RawDefaults {
    /// Where the mapping starts.
    #[schemars(skip)]
    pub pos: Pos,
    /// Default retry policy; a task's `retry` is merged over it field by field.
    pub retry: Option<RawRetry>,
    /// Default per-attempt timeout (a duration like `10m`): the attempt's whole process group
    /// is killed after this long.
    pub timeout: Option<Sp<DurationText>>,
    /// Environment variables for every task; a task's `env` is merged over them (the task
    /// wins). Values may use `${{ params.NAME }}`, `${{ run.id }}` and `${{ workflow.name }}`.
    pub env: Option<Entries<EnvKeys, Sp<ScalarText>>>,
    /// Default working directory of shell tasks, relative to the workflow file's directory.
    pub working_dir: Option<Sp<String>>,
}

impl RawDefaults {
    /// The keys accepted in `defaults`.
    pub(crate) const FIELDS: &'static [&'static str] = &["retry", "timeout", "env", "working_dir"];
}

/// A task: a node of the DAG.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename = "Task", deny_unknown_fields)]
pub(crate) struct RawTask {
    /// Where the task's mapping starts.
    #[schemars(skip)]
    pub pos: Pos,
    /// Free text describing the task.
    pub description: Option<Sp<String>>,
    /// Upstream task ids: this task starts when they are done (see `trigger_rule`). A need on
    /// a matrix task waits for all its instances.
    pub needs: Option<Sp<Vec<Sp<String>>>>,
    /// Shell command, run with `sh -c` in `working_dir`. May use `${{ params.NAME }}`,
    /// `${{ matrix.NAME }}`, `${{ tasks.ID.outputs.KEY }}` (ID an upstream, non-matrix task),
    /// `${{ run.id }}` and `${{ workflow.name }}`. Without `run` the task is an empty join
    /// point that succeeds at once.
    pub run: Option<Sp<ScalarText>>,
    /// Static fan-out: dimension -> non-empty list of values. The task runs once per
    /// combination (instance id `task[dim=value,...]`); `${{ matrix.DIM }}` is its value.
    #[schemars(extend("minProperties" = 1))]
    pub matrix: Option<Entries<DimensionKeys, Sp<MatrixValues>>>,
    /// When the task may start given its upstream states: `all_success` (default), `all_done`,
    /// `all_failed`, `one_success`, `one_failed`, `none_failed`.
    pub trigger_rule: Option<Sp<TriggerRuleText>>,
    /// Per-attempt timeout (a duration like `30s`), overriding `defaults.timeout`.
    pub timeout: Option<Sp<DurationText>>,
    /// Retry policy, merged field by field over `defaults.retry`.
    pub retry: Option<RawRetry>,
    /// Environment variables, merged over `defaults.env` (the task wins). Values are templates
    /// like `run`.
    pub env: Option<Entries<EnvKeys, Sp<ScalarText>>>,
    /// Working directory, relative to the workflow file's directory; overrides
    /// `defaults.working_dir`. A template like `run`.
    pub working_dir: Option<Sp<String>>,
    /// Run the task in a remote worker instead of a shell command: the task queue its
    /// workers poll and the task type they dispatch on. Not with `run`, `env` or
    /// `working_dir` (`defaults.env` and `defaults.working_dir` apply to shell tasks only).
    pub worker: Option<RawWorker>,
    /// The input handed to the worker (only with `worker`): a mapping of any nesting. Every
    /// string in it is a template like `run`; numbers, booleans and null are kept as JSON
    /// values; keys are literal.
    pub input: Option<Sp<RawInput>>,
    /// How long a worker may go without heartbeating an attempt before the attempt is taken
    /// back and counts as failed (only with `worker`; a duration above zero, at most `24h`).
    /// Default `30s`.
    pub heartbeat_timeout: Option<Sp<DurationText>>,
}

impl RawTask {
    /// The keys accepted in a task.
    pub(crate) const FIELDS: &'static [&'static str] = &[
        "description",
        "needs",
        "run",
        "matrix",
        "trigger_rule",
        "timeout",
        "retry",
        "env",
        "working_dir",
        "worker",
        "input",
        "heartbeat_timeout",
    ];
}

/// Where a worker task's attempts go: `worker: { queue: loaders, type: load_table }`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename = "Worker", deny_unknown_fields)]
pub(crate) struct RawWorker {
    /// Where the mapping starts.
    #[schemars(skip)]
    pub pos: Pos,
    /// The task queue the workers poll: a letter or `_`, then letters, digits, `_`, `-` and
    /// `.`; at most 128 bytes.
    #[schemars(required)]
    pub queue: Option<Sp<WorkerName>>,
    /// The task type a worker dispatches on (the name its handler is registered under); same
    /// rule as `queue`.
    #[schemars(required, rename = "type")]
    pub task_type: Option<Sp<WorkerName>>,
}

impl RawWorker {
    /// The keys accepted in `worker`.
    pub(crate) const FIELDS: &'static [&'static str] = &["queue", "type"];
}

/// A value of a worker task's `input`, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue {
    /// `~` or `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number JSON can carry (finite).
    Number(serde_json::Number),
    /// A string: a template.
    Text(String),
    /// A list.
    List(Vec<Sp<RawValue>>),
    /// A mapping with unique keys (duplicates were reported and dropped), in file order.
    Map(Vec<(Sp<String>, Sp<RawValue>)>),
}

/// A worker task's `input`: the entries of its top-level mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawInput(pub Vec<(Sp<String>, Sp<RawValue>)>);

impl JsonSchema for RawInput {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("WorkerInput")
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "The worker's input: a mapping of any nesting; strings are templates, numbers, booleans and null are kept as JSON values.",
        })
    }
}

/// A retry policy (Temporal's terms). Every field is optional; unset fields come from
/// `defaults.retry`, then from the built-in defaults.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename = "RetryPolicy", deny_unknown_fields)]
pub(crate) struct RawRetry {
    /// Where the mapping starts.
    #[schemars(skip)]
    pub pos: Pos,
    /// Total attempts allowed, including the first (at least 1; 1 means no retry). Default 1.
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub max_attempts: Option<Sp<i64>>,
    /// Backoff before the second attempt (a duration). Default `1s`.
    pub initial_interval: Option<Sp<DurationText>>,
    /// Growth factor of the backoff (at least 1.0). Default 2.0.
    #[schemars(range(min = 1.0))]
    pub backoff_coefficient: Option<Sp<f64>>,
    /// Cap on the backoff (a duration, at least `initial_interval`). Default 100 x
    /// `initial_interval`.
    pub max_interval: Option<Sp<DurationText>>,
    /// Randomisation of the backoff: `full` (uniform in [0, backoff], the default) or `none`.
    pub jitter: Option<Sp<JitterText>>,
    /// Exit codes (1 to 255) that fail the task at once, whatever attempts are left.
    pub non_retryable_exit_codes: Option<Sp<Vec<Sp<ExitCode>>>>,
    /// Error types that fail the task at once, whatever attempts are left, when a worker
    /// reports a failure with one of them (Temporal's `NonRetryableErrorTypes`). Compared
    /// exactly; each 1 to 256 bytes without control characters.
    pub non_retryable_errors: Option<Sp<Vec<Sp<ErrorType>>>>,
}

impl RawRetry {
    /// The keys accepted in a retry policy.
    pub(crate) const FIELDS: &'static [&'static str] = &[
        "max_attempts",
        "initial_interval",
        "backoff_coefficient",
        "max_interval",
        "jitter",
        "non_retryable_exit_codes",
        "non_retryable_errors",
    ];

    /// An empty policy at `pos`.
    pub(crate) fn empty(pos: Pos) -> RawRetry {
        RawRetry {
            pos,
            max_attempts: None,
            initial_interval: None,
            backoff_coefficient: None,
            max_interval: None,
            jitter: None,
            non_retryable_exit_codes: None,
            non_retryable_errors: None,
        }
    }
}
