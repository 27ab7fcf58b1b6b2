//! Graph exports of a compiled workflow: Graphviz DOT and Mermaid flowcharts of its task
//! instances, edges from upstream to downstream.
//!
//! Both mark the same things: a task without `run` (an empty join point) has a distinct
//! shape, a worker task shows `worker: QUEUE/TYPE` under its id, and a task whose trigger
//! rule is not the default `all_success` shows its rule.

use std::fmt::Write as _;

use crate::spec::{TaskAction, TaskSpec, TriggerRule, WorkflowSpec};

/// The workflow as a Graphviz DOT `digraph` named after the workflow: one node per task
/// instance (id = instance id, quoted and escaped), one edge per upstream → downstream pair.
/// Empty tasks are ellipses, shell and worker tasks boxes; a worker task's queue and type
/// and a non-default trigger rule are added to the node's label
/// (`load\nworker: loaders/load_table\n(all_done)`).
pub fn to_dot(spec: &WorkflowSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_quote(&spec.name));
    out.push_str("  rankdir=LR;\n  node [shape=box];\n");
    for task in &spec.tasks {
        let mut attributes = Vec::new();
        let worker = worker_note(task);
        let rule = task.trigger_rule != TriggerRule::AllSuccess;
        if worker.is_some() || rule {
            let mut label = task.id.clone();
            if let Some(worker) = worker {
                let _ = write!(label, "\n{worker}");
            }
            if rule {
                let _ = write!(label, "\n({})", task.trigger_rule);
            }
            attributes.push(format!("label={}", dot_quote(&label)));
        }
        if task.action == TaskAction::Empty {
            attributes.push("shape=ellipse".to_string());
        }
        if attributes.is_empty() {
            let _ = writeln!(out, "  {};", dot_quote(&task.id));
        } else {
            let _ = writeln!(
                out,
                "  {} [{}];",
                dot_quote(&task.id),
                attributes.join(", ")
            );
        }
    }
    for task in &spec.tasks {
        for &down in &task.downstream {
            let _ = writeln!(
                out,
                "  {} -> {};",
                dot_quote(&task.id),
                dot_quote(&spec.task(down).id)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// A DOT double-quoted ID: `"` and `\` escaped, line breaks as `\n`.
fn dot_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The workflow as a Mermaid `flowchart LR`: nodes `t0`, `t1`, ... (the instance index)
/// labelled with the instance id (quoted, `"` `#` `<` `>` written as entity codes), one edge
/// per upstream → downstream pair. Empty tasks are stadium-shaped; a worker task's queue and
/// type and a non-default trigger rule are added to the label
/// (`load (worker: loaders/load_table) (all_done)`).
pub fn to_mermaid(spec: &WorkflowSpec) -> String {
    let mut out = String::from("flowchart LR\n");
    for (index, task) in spec.tasks.iter().enumerate() {
        let label = mermaid_label(task);
        if task.action == TaskAction::Empty {
            let _ = writeln!(out, "  t{index}([\"{label}\"])");
        } else {
            let _ = writeln!(out, "  t{index}[\"{label}\"]");
        }
    }
    for (index, task) in spec.tasks.iter().enumerate() {
        for &down in &task.downstream {
            let _ = writeln!(out, "  t{index} --> t{down}");
        }
    }
    out
}

/// `worker: QUEUE/TYPE` for a worker task, shown under its id.
fn worker_note(task: &TaskSpec) -> Option<String> {
    match &task.action {
        TaskAction::Worker {
            queue, task_type, ..
        } => Some(format!("worker: {queue}/{task_type}")),
        _ => None,
    }
}

/// The escaped label of a Mermaid node.
fn mermaid_label(task: &TaskSpec) -> String {
    let mut text = task.id.clone();
    if let Some(worker) = worker_note(task) {
        let _ = write!(text, " ({worker})");
    }
    if task.trigger_rule != TriggerRule::AllSuccess {
        let _ = write!(text, " ({})", task.trigger_rule);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkflowSpec {
        crate::compile(
            "f.yaml",
            r#"
name: wf
tasks:
  a:
    matrix: { v: ['x"y', 'p#<q>'] }
    run: echo
  join:
    needs: [a]
    trigger_rule: all_done
"#,
        )
        .unwrap()
    }

    #[test]
    fn dot_quotes_ids_and_shows_rules() {
        assert_eq!(
            to_dot(&spec()),
            "digraph \"wf\" {\n  rankdir=LR;\n  node [shape=box];\n  \"a[v=x\\\"y]\";\n  \
             \"a[v=p#<q>]\";\n  \"join\" [label=\"join\\n(all_done)\", shape=ellipse];\n  \
             \"a[v=x\\\"y]\" -> \"join\";\n  \"a[v=p#<q>]\" -> \"join\";\n}\n"
        );
    }

    #[test]
    fn mermaid_escapes_labels() {
        assert_eq!(
            to_mermaid(&spec()),
            "flowchart LR\n  t0[\"a[v=x#quot;y]\"]\n  t1[\"a[v=p#35;#lt;q#gt;]\"]\n  \
             t2([\"join (all_done)\"])\n  t0 --> t2\n  t1 --> t2\n"
        );
    }

    #[test]
    fn worker_tasks_show_their_queue_and_type() {
        let spec = crate::compile(
            "f.yaml",
            "name: wf\ntasks:\n  load:\n    worker: { queue: loaders, type: load_table }\n    \
             trigger_rule: all_done\n",
        )
        .unwrap();
        assert_eq!(
            to_dot(&spec),
            "digraph \"wf\" {\n  rankdir=LR;\n  node [shape=box];\n  \"load\" \
             [label=\"load\\nworker: loaders/load_table\\n(all_done)\"];\n}\n"
        );
        assert_eq!(
            to_mermaid(&spec),
            "flowchart LR\n  t0[\"load (worker: loaders/load_table) (all_done)\"]\n"
        );
    }

    #[test]
    fn dot_escapes_backslashes() {
        assert_eq!(dot_quote("a\\b\"c\nd"), "\"a\\\\b\\\"c\\nd\"");
    }
}
