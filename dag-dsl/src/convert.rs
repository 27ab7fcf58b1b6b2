//! Step 2 of compiling: the spanned YAML tree → raw structs ([`crate::raw`]).
//!
//! Hand-written instead of derived so that it reports *every* structural error (unknown and
//! duplicate fields, wrong types, missing required fields) with its position and field path,
//! and keeps going: a task with a bad field is still a task, so later checks do not cascade
//! into "unknown task" errors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;

use crate::names::shorten;
use crate::raw::{
    CatchupText, CronText, DurationText, Entries, ErrorType, ExitCode, JitterText, KeyRule,
    MatrixValues, ParamDefault, RawDefaults, RawInput, RawRetry, RawSchedule, RawTask, RawValue,
    RawWorker, RawWorkflow, ScalarText, Sp, TimezoneText, TriggerRuleText, WorkerName,
    WorkflowName,
};
use crate::report::{Path, Report, did_you_mean, one_of};
use crate::yaml::{Node, Pos, Yaml, scalar_cow, scalar_text};

/// Converts the root of the file. Always returns a [`RawWorkflow`] (fields that could not be
/// read are `None`); the errors are in `report`.
pub(crate) fn workflow(root: &Yaml, source: &str, report: &mut Report) -> RawWorkflow {
    Converter { source, report }.workflow(root)
}

/// Shared state of one conversion.
struct Converter<'a> {
    source: &'a str,
    report: &'a mut Report,
}

/// How a value is described after "found": `the string `x``, `a list`, ...
pub(crate) fn describe(node: &Yaml, source: &str) -> String {
    match &node.value {
        Node::Str(text) if text.is_empty() => "an empty string".to_string(),
        Node::Str(text) => format!("the string `{}`", shorten(text)),
        Node::Int(_) | Node::UInt(_) => format!(
            "the integer `{}`",
            scalar_text(node, source).unwrap_or_default()
        ),
        Node::Float(_) => format!(
            "the number `{}`",
            scalar_text(node, source).unwrap_or_default()
        ),
        Node::Bool(_) => format!(
            "the boolean `{}`",
            scalar_text(node, source).unwrap_or_default()
        ),
        other => other.kind().to_string(),
    }
}

/// The words of [`Converter::keyed`]'s errors: "expected {expected}, found ..." for a key
/// that is not a scalar, "duplicate {noun} `k`: it is already {verb} at ..." for a repeat.
struct KeyWords<'w> {
    expected: &'w str,
    noun: &'w str,
    verb: &'w str,
}

/// What a duration looks like, for type errors.
const DURATION: &str = "a duration like `30s`, `10m` or `250ms`";

impl Converter<'_> {
    fn type_error(&mut self, node: &Yaml, path: &Path<'_>, expected: &str) {
        let found = describe(node, self.source);
        self.report.error(
            Pos::of(node),
            path,
            format!("expected {expected}, found {found}"),
        );
    }

    fn list<'n, 'a>(
        &mut self,
        node: &'n Yaml<'a>,
        path: &Path<'_>,
        expected: &str,
    ) -> Option<&'n [Yaml<'a>]> {
        match &node.value {
            Node::Seq(items) => Some(items),
            _ => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    /// A text-only field (no numbers or booleans).
    fn string(&mut self, node: &Yaml, path: &Path<'_>, expected: &str) -> Option<Sp<String>> {
        match &node.value {
            Node::Str(text) => Some(Sp::new(text.to_string(), Pos::of(node))),
            _ => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    /// A scalar used as text: a string, or a number or boolean as the file spells it.
    fn scalar(&mut self, node: &Yaml, path: &Path<'_>, expected: &str) -> Option<Sp<String>> {
        match scalar_text(node, self.source) {
            Some(text) => Some(Sp::new(text, Pos::of(node))),
            None => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    fn duration(&mut self, node: &Yaml, path: &Path<'_>) -> Option<Sp<DurationText>> {
        match &node.value {
            Node::Str(text) => Some(Sp::new(DurationText(text.to_string()), Pos::of(node))),
            Node::Int(_) | Node::UInt(_) | Node::Float(_) => {
                let number = scalar_text(node, self.source).unwrap_or_default();
                self.report.error_with_help(
                    Pos::of(node),
                    path,
                    format!("expected {DURATION}, found {}", describe(node, self.source)),
                    format!("add a unit, e.g. `{number}s` or `{number}m`"),
                );
                None
            }
            _ => {
                self.type_error(node, path, DURATION);
                None
            }
        }
    }

    fn integer(&mut self, node: &Yaml, path: &Path<'_>, expected: &str) -> Option<Sp<i64>> {
        match node.value {
            Node::Int(value) => Some(Sp::new(value, Pos::of(node))),
            // Above i64::MAX: kept saturated so the range check reports it as too large.
            Node::UInt(_) => Some(Sp::new(i64::MAX, Pos::of(node))),
            _ => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    fn number(&mut self, node: &Yaml, path: &Path<'_>, expected: &str) -> Option<Sp<f64>> {
        match node.value {
            Node::Int(value) => Some(Sp::new(value as f64, Pos::of(node))),
            Node::UInt(value) => Some(Sp::new(value as f64, Pos::of(node))),
            Node::Float(value) => Some(Sp::new(value, Pos::of(node))),
            _ => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    /// The entries of a mapping of fixed fields: reports non-text keys, unknown fields (with
    /// "did you mean" and the accepted list) and repeated fields, and returns the accepted
    /// entries (first occurrence of each) as (field name, key node, value node).
    fn fields<'n, 'a>(
        &mut self,
        node: &'n Yaml<'a>,
        path: &Path<'_>,
        expected: &str,
        accepted: &'static [&'static str],
    ) -> Option<Vec<(&'static str, &'n Yaml<'a>, &'n Yaml<'a>)>> {
        let Node::Map(entries) = &node.value else {
            self.type_error(node, path, expected);
            return None;
        };
        let mut out: Vec<(&'static str, &'n Yaml<'a>, &'n Yaml<'a>)> =
            Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = scalar_cow(key, self.source) else {
                let found = describe(key, self.source);
                self.report.error(
                    Pos::of(key),
                    path,
                    format!("expected a field name, found {found}"),
                );
                continue;
            };
            let Some(field) = accepted.iter().find(|field| **field == name) else {
                let help = did_you_mean(&name, accepted.iter().copied());
                self.report.push(
                    Pos::of(key),
                    path,
                    format!(
                        "unknown field `{}`, expected one of {}",
                        shorten(&name),
                        one_of(accepted)
                    ),
                    help,
                );
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(seen, _, _)| seen == field) {
                let first = Pos::of(first);
                self.report.error(
                    Pos::of(key),
                    &path.key(field),
                    format!(
                        "duplicate field `{field}`: it is already set at line {}, column {}",
                        first.line, first.column
                    ),
                );
                continue;
            }
            out.push((field, key, value));
        }
        Some(out)
    }

    /// A mapping whose keys the user names (tasks, params, env, matrix). Keys are scalars
    /// used as text; repeated keys are reported and dropped. `value` converts each value.
    fn entries<K: KeyRule, V>(
        &mut self,
        node: &Yaml<'_>,
        path: &Path<'_>,
        expected: &str,
        value: impl FnMut(&mut Self, &Yaml, &Path<'_>) -> Option<V>,
    ) -> Option<Entries<K, V>> {
        let Node::Map(map) = &node.value else {
            self.type_error(node, path, expected);
            return None;
        };
        let noun = K::KIND.noun();
        let words = KeyWords {
            expected: &format!("a {noun}"),
            noun,
            verb: "defined",
        };
        Some(Entries {
            pos: Pos::of(node),
            entries: self.keyed(map, path, words, value),
            keys: PhantomData,
        })
    }

    /// The entries of a mapping whose keys the user names (shared by [`Self::entries`] and
    /// `input` mappings): a key must be a scalar (used as text), else "expected
    /// {expected}, found ..."; a repeated key is reported as "duplicate {noun} `k`: it is
    /// already {verb} at line L, column C" and dropped. `value` converts each kept value
    /// (`None`: reported and dropped). Returns (key with its position, value) in file order.
    fn keyed<V>(
        &mut self,
        map: &[(Yaml<'_>, Yaml<'_>)],
        path: &Path<'_>,
        words: KeyWords<'_>,
        mut value: impl FnMut(&mut Self, &Yaml, &Path<'_>) -> Option<V>,
    ) -> Vec<(Sp<String>, V)> {
        let KeyWords {
            expected,
            noun,
            verb,
        } = words;
        let mut out = Vec::with_capacity(map.len());
        let mut seen: HashMap<Cow<'_, str>, Pos> = HashMap::with_capacity(map.len());
        for (key, node) in map {
            let Some(name) = scalar_cow(key, self.source) else {
                let found = describe(key, self.source);
                self.report.error(
                    Pos::of(key),
                    path,
                    format!("expected {expected}, found {found}"),
                );
                continue;
            };
            let entry_path = path.key(&name);
            if let Some(first) = seen.get(&name) {
                self.report.error(
                    Pos::of(key),
                    &entry_path,
                    format!(
                        "duplicate {noun} `{}`: it is already {verb} at line {}, column {}",
                        shorten(&name),
                        first.line,
                        first.column
                    ),
                );
                continue;
            }
            if let Some(converted) = value(self, node, &entry_path) {
                out.push((Sp::new(name.to_string(), Pos::of(key)), converted));
            }
            seen.insert(name, Pos::of(key));
        }
        out
    }

    fn workflow(&mut self, root: &Yaml) -> RawWorkflow {
        let mut pos = Pos::of(root);
        if pos.line == 0 || root.value == Node::Null {
            pos = Pos { line: 1, column: 1 };
        }
        let mut raw = RawWorkflow {
            pos,
            name: None,
            description: None,
            params: None,
            deadline: None,
            schedule: None,
            defaults: None,
            tasks: None,
        };
        if root.value == Node::Null {
            self.report.error(
                pos,
                &Path::ROOT,
                "expected a workflow (a mapping with at least `name` and `tasks`), found an empty file",
            );
            return raw;
        }
        let expected = "a workflow (a mapping with at least `name` and `tasks`)";
        let Some(fields) = self.fields(root, &Path::ROOT, expected, RawWorkflow::FIELDS) else {
            return raw;
        };
        let present: Vec<&str> = fields.iter().map(|(field, _, _)| *field).collect();
        for (field, _, value) in fields {
            let path = Path::ROOT.key(field);
            let path = &path;
            match field {
                "name" => {
                    raw.name = self
                        .scalar(value, path, "the workflow's name")
                        .map(|name| Sp::new(WorkflowName(name.value), name.pos));
                }
                "description" => raw.description = self.string(value, path, "a string"),
                "params" => {
                    raw.params = self.entries(
                        value,
                        path,
                        "a mapping of param names to default values",
                        |this, node, path| Some(this.param_default(node, path)),
                    );
                }
                "deadline" => raw.deadline = self.duration(value, path),
                "schedule" => raw.schedule = self.schedule(value, path),
                "defaults" => raw.defaults = self.defaults(value, path),
                "tasks" => {
                    raw.tasks = self.entries(
                        value,
                        path,
                        "a mapping of task ids to tasks",
                        |this, node, path| Some(this.task(node, path)),
                    );
                }
                _ => {}
            }
        }
        for (required, what) in [
            (
                "name",
                "every workflow has a name, e.g. `name: nightly-etl`",
            ),
            ("tasks", "every workflow has at least one task"),
        ] {
            if !present.contains(&required) {
                self.report.error(
                    pos,
                    &Path::ROOT,
                    format!("missing field `{required}`: {what}"),
                );
            }
        }
        raw
    }

    fn param_default(&mut self, node: &Yaml, path: &Path<'_>) -> Sp<ParamDefault> {
        let pos = Pos::of(node);
        if node.value == Node::Null {
            return Sp::new(ParamDefault(None), pos);
        }
        let text = self.scalar(
            node,
            path,
            "a default value (a string, number or boolean), or `~` for a param without default",
        );
        // A bad default is reported; the param stays declared so its uses are not errors too,
        // with an empty default so that it does not count as required (no spec is built).
        Sp::new(
            ParamDefault(Some(text.map(|text| text.value).unwrap_or_default())),
            pos,
        )
    }

    fn schedule(&mut self, node: &Yaml, path: &Path<'_>) -> Option<RawSchedule> {
        let expected = "a schedule (a mapping with `cron`)";
        if let Node::Str(text) = &node.value {
            self.report.error_with_help(
                Pos::of(node),
                path,
                format!("expected {expected}, found {}", describe(node, self.source)),
                format!("write `schedule: {{ cron: \"{}\" }}`", shorten(text)),
            );
            return None;
        }
        let fields = self.fields(node, path, expected, RawSchedule::FIELDS)?;
        let mut raw = RawSchedule {
            pos: Pos::of(node),
            cron: None,
            timezone: None,
            catchup: None,
            catchup_window: None,
        };
        let mut has_cron = false;
        for (field, _, value) in fields {
            let path = path.key(field);
            match field {
                "cron" => {
                    has_cron = true;
                    raw.cron = self
                        .string(value, &path, crate::cron::EXPECTED)
                        .map(|cron| Sp::new(CronText(cron.value), cron.pos));
                }
                "timezone" => {
                    raw.timezone = self
                        .string(value, &path, "an IANA time zone name like `Europe/Paris`")
                        .map(|zone| Sp::new(TimezoneText(zone.value), zone.pos));
                }
                "catchup" => {
                    raw.catchup = self
                        .string(value, &path, "`latest` or `all`")
                        .map(|catchup| Sp::new(CatchupText(catchup.value), catchup.pos));
                }
                "catchup_window" => raw.catchup_window = self.duration(value, &path),
                _ => {}
            }
        }
        if !has_cron {
            self.report.error(
                raw.pos,
                path,
                "missing field `cron`: a schedule says when to start runs, e.g. \
                 `cron: \"30 2 * * 1-5\"` for 02:30 on weekdays",
            );
        }
        Some(raw)
    }

    fn defaults(&mut self, node: &Yaml, path: &Path<'_>) -> Option<RawDefaults> {
        let fields = self.fields(node, path, "a mapping of defaults", RawDefaults::FIELDS)?;
        let mut raw = RawDefaults {
            pos: Pos::of(node),
            retry: None,
            timeout: None,
            env: None,
            working_dir: None,
        };
        for (field, _, value) in fields {
            let path = path.key(field);
            match field {
                "retry" => raw.retry = self.retry(value, &path),
                "timeout" => raw.timeout = self.duration(value, &path),
                "env" => raw.env = self.env(value, &path),
                "working_dir" => raw.working_dir = self.string(value, &path, "a directory path"),
                _ => {}
            }
        }
        Some(raw)
    }

    fn task(&mut self, node: &Yaml, path: &Path<'_>) -> RawTask {
        let mut raw = RawTask {
            pos: Pos::of(node),
            description: None,
            needs: None,
            run: None,
            matrix: None,
            trigger_rule: None,
            timeout: None,
            retry: None,
            env: None,
            working_dir: None,
            worker: None,
            input: None,
            heartbeat_timeout: None,
        };
        let expected = if node.value == Node::Null {
            "a mapping of task fields (`{}` for a task with none)"
        } else {
            "a mapping of task fields"
        };
        let Some(fields) = self.fields(node, path, expected, RawTask::FIELDS) else {
            return raw;
        };
        for (field, _, value) in fields {
            let path = path.key(field);
            match field {
                "description" => raw.description = self.string(value, &path, "a string"),
                "needs" => raw.needs = self.needs(value, &path),
                "run" => {
                    raw.run = self
                        .scalar(value, &path, "a shell command")
                        .map(|run| Sp::new(ScalarText(run.value), run.pos));
                }
                "matrix" => raw.matrix = self.matrix(value, &path),
                "trigger_rule" => {
                    raw.trigger_rule = self
                        .string(value, &path, "a trigger rule")
                        .map(|rule| Sp::new(TriggerRuleText(rule.value), rule.pos));
                }
                "timeout" => raw.timeout = self.duration(value, &path),
                "retry" => raw.retry = self.retry(value, &path),
                "env" => raw.env = self.env(value, &path),
                "working_dir" => raw.working_dir = self.string(value, &path, "a directory path"),
                "worker" => raw.worker = self.worker(value, &path),
                "input" => raw.input = self.input(value, &path),
                "heartbeat_timeout" => raw.heartbeat_timeout = self.duration(value, &path),
                _ => {}
            }
        }
        raw
    }

    fn worker(&mut self, node: &Yaml, path: &Path<'_>) -> Option<RawWorker> {
        let expected = "a worker (a mapping with `queue` and `type`)";
        let fields = self.fields(node, path, expected, RawWorker::FIELDS)?;
        let mut raw = RawWorker {
            pos: Pos::of(node),
            queue: None,
            task_type: None,
        };
        let mut present = Vec::with_capacity(2);
        for (field, _, value) in fields {
            present.push(field);
            let path = path.key(field);
            let name = |this: &mut Self, what: &str| {
                this.scalar(value, &path, what)
                    .map(|name| Sp::new(WorkerName(name.value), name.pos))
            };
            match field {
                "queue" => raw.queue = name(self, "a queue name"),
                "type" => raw.task_type = name(self, "a task type"),
                _ => {}
            }
        }
        for (required, what) in [
            (
                "queue",
                "a worker task names the task queue its workers poll, e.g. `queue: loaders`",
            ),
            (
                "type",
                "a worker task names its task type, the handler a worker runs, e.g. \
                 `type: load_table`",
            ),
        ] {
            if !present.contains(&required) {
                self.report
                    .error(raw.pos, path, format!("missing field `{required}`: {what}"));
            }
        }
        Some(raw)
    }

    /// A worker task's `input`: a mapping of any nesting.
    fn input(&mut self, node: &Yaml, path: &Path<'_>) -> Option<Sp<RawInput>> {
        if !matches!(node.value, Node::Map(_)) {
            self.type_error(node, path, "a mapping of input values");
            return None;
        }
        match self.input_value(node, path)?.value {
            RawValue::Map(entries) => Some(Sp::new(RawInput(entries), Pos::of(node))),
            _ => None,
        }
    }

    /// One value of `input`, at any depth. Bad values are reported and dropped.
    fn input_value(&mut self, node: &Yaml, path: &Path<'_>) -> Option<Sp<RawValue>> {
        let pos = Pos::of(node);
        let value = match &node.value {
            Node::Null => RawValue::Null,
            Node::Bool(value) => RawValue::Bool(*value),
            Node::Int(value) => RawValue::Number((*value).into()),
            Node::UInt(value) => RawValue::Number((*value).into()),
            Node::Float(value) => match serde_json::Number::from_f64(*value) {
                Some(number) => RawValue::Number(number),
                None => {
                    let text = scalar_text(node, self.source).unwrap_or_default();
                    self.report.error_with_help(
                        pos,
                        path,
                        format!(
                            "expected a finite number (JSON has no infinity or NaN), found {}",
                            describe(node, self.source)
                        ),
                        format!("quote it to pass it as text: `'{text}'`"),
                    );
                    return None;
                }
            },
            Node::Str(text) => RawValue::Text(text.to_string()),
            Node::Seq(items) => RawValue::List(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(index, item)| self.input_value(item, &path.index(index)))
                    .collect(),
            ),
            Node::Map(map) => {
                let words = KeyWords {
                    expected: "a key (a string)",
                    noun: "key",
                    verb: "set",
                };
                RawValue::Map(self.keyed(map, path, words, Self::input_value))
            }
        };
        Some(Sp::new(value, pos))
    }

    fn needs(&mut self, node: &Yaml, path: &Path<'_>) -> Option<Sp<Vec<Sp<String>>>> {
        let Node::Seq(items) = &node.value else {
            let found = describe(node, self.source);
            let help = match &node.value {
                Node::Str(id) => Some(format!("write a list: `needs: [{}]`", shorten(id))),
                _ => None,
            };
            self.report.push(
                Pos::of(node),
                path,
                format!("expected a list of task ids, found {found}"),
                help,
            );
            return None;
        };
        let ids = items
            .iter()
            .enumerate()
            .filter_map(|(index, id)| self.scalar(id, &path.index(index), "a task id"))
            .collect();
        Some(Sp::new(ids, Pos::of(node)))
    }

    fn env(
        &mut self,
        node: &Yaml,
        path: &Path<'_>,
    ) -> Option<Entries<crate::raw::EnvKeys, Sp<ScalarText>>> {
        self.entries(
            node,
            path,
            "a mapping of env var names to values",
            |this, value, path| {
                this.scalar(value, path, "a value (a string, number or boolean)")
                    .map(|text| Sp::new(ScalarText(text.value), text.pos))
            },
        )
    }

    fn matrix(
        &mut self,
        node: &Yaml,
        path: &Path<'_>,
    ) -> Option<Entries<crate::raw::DimensionKeys, Sp<MatrixValues>>> {
        self.entries(
            node,
            path,
            "a mapping of matrix dimensions to lists of values",
            |this, values, path| {
                let items = this.list(values, path, "a list of values")?;
                let texts = items
                    .iter()
                    .enumerate()
                    .filter_map(|(index, value)| {
                        this.scalar(
                            value,
                            &path.index(index),
                            "a matrix value (a string, number or boolean)",
                        )
                        .map(|text| Sp::new(ScalarText(text.value), text.pos))
                    })
                    .collect();
                Some(Sp::new(MatrixValues(texts), Pos::of(values)))
            },
        )
    }

    fn retry(&mut self, node: &Yaml, path: &Path<'_>) -> Option<RawRetry> {
        let fields = self.fields(node, path, "a retry policy (a mapping)", RawRetry::FIELDS)?;
        let mut raw = RawRetry::empty(Pos::of(node));
        for (field, _, value) in fields {
            let path = path.key(field);
            match field {
                "max_attempts" => {
                    raw.max_attempts = self.integer(value, &path, "a whole number of attempts");
                }
                "initial_interval" => raw.initial_interval = self.duration(value, &path),
                "backoff_coefficient" => {
                    raw.backoff_coefficient = self.number(value, &path, "a number (at least 1.0)");
                }
                "max_interval" => raw.max_interval = self.duration(value, &path),
                "jitter" => {
                    raw.jitter = self
                        .string(value, &path, "`full` or `none`")
                        .map(|jitter| Sp::new(JitterText(jitter.value), jitter.pos));
                }
                "non_retryable_exit_codes" => {
                    let Some(items) = self.list(value, &path, "a list of exit codes") else {
                        continue;
                    };
                    let codes = items
                        .iter()
                        .enumerate()
                        .filter_map(|(index, code)| {
                            self.integer(code, &path.index(index), "an exit code (1 to 255)")
                                .map(|code| {
                                    Sp::new(
                                        ExitCode {
                                            index,
                                            code: code.value,
                                        },
                                        code.pos,
                                    )
                                })
                        })
                        .collect();
                    raw.non_retryable_exit_codes = Some(Sp::new(codes, Pos::of(value)));
                }
                "non_retryable_errors" => {
                    let Some(items) = self.list(value, &path, "a list of error types") else {
                        continue;
                    };
                    let types = items
                        .iter()
                        .enumerate()
                        .filter_map(|(index, item)| {
                            self.string(item, &path.index(index), "an error type (a string)")
                                .map(|text| {
                                    Sp::new(
                                        ErrorType {
                                            index,
                                            text: text.value,
                                        },
                                        text.pos,
                                    )
                                })
                        })
                        .collect();
                    raw.non_retryable_errors = Some(Sp::new(types, Pos::of(value)));
                }
                _ => {}
            }
        }
        Some(raw)
    }
}
