//! Large and hostile files: the 100,000-task file compiles, long chains and cycles do not
//! overflow the stack, and every size limit gives a clear error instead of exhausting memory.

use tandem_dsl::{compile, limits};

/// One root, `width` tasks that need it, one join that needs them all.
fn wide_workflow(width: usize) -> String {
    let mut text = String::from("name: wide\ntasks:\n  root:\n    run: echo root\n");
    for index in 0..width {
        text.push_str(&format!(
            "  t{index}:\n    needs: [root]\n    run: echo {index}\n"
        ));
    }
    let all: Vec<String> = (0..width).map(|index| format!("t{index}")).collect();
    text.push_str(&format!("  join:\n    needs: [{}]\n", all.join(", ")));
    text
}

fn messages(text: &str) -> String {
    match compile("f.yaml", text) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn a_100000_task_file_compiles() {
    let spec = compile("wide.yaml", &wide_workflow(100_000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.tasks.len(), 100_002);
    assert_eq!(spec.tasks[0].downstream.len(), 100_000);
    let join = &spec.tasks[100_001];
    assert_eq!(join.upstream.len(), 100_000);
    assert_eq!(join.upstream.first(), Some(&1));
    assert_eq!(join.upstream.last(), Some(&100_000));
}

#[test]
fn a_long_chain_compiles_and_reads_outputs_from_far_upstream() {
    let length = 20_000;
    let mut text = String::from("name: chain\ntasks:\n  t0: { run: x }\n");
    for index in 1..length {
        text.push_str(&format!(
            "  t{index}: {{ needs: [t{}], run: x }}\n",
            index - 1
        ));
    }
    text.push_str(&format!(
        "  last: {{ needs: [t{}], run: 'echo ${{{{ tasks.t0.outputs.v }}}}' }}\n",
        length - 1
    ));
    let spec = compile("chain.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.tasks.len(), length + 1);
}

#[test]
fn a_long_cycle_is_reported_once() {
    let length = 5_000;
    let mut text = String::from("name: cycle\ntasks:\n");
    for index in 0..length {
        let need = (index + length - 1) % length;
        text.push_str(&format!("  t{index}: {{ needs: [t{need}], run: x }}\n"));
    }
    let errors = compile("cycle.yaml", &text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let message = &errors.0[0].message;
    assert!(
        message.starts_with("cycle: `t0 -> t1 -> t2 -> "),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("t{} -> t0`", length - 1)),
        "{message}"
    );
}

#[test]
fn matrix_size_is_capped() {
    let values: Vec<String> = (0..400).map(|v| v.to_string()).collect();
    let list = values.join(", ");
    let text =
        format!("name: m\ntasks:\n  t:\n    matrix: {{ a: [{list}], b: [{list}] }}\n    run: x\n");
    let output = messages(&text);
    assert!(
        output.contains(&format!(
            "the matrix has 160000 combinations, more than the limit of {} instances per task",
            limits::MAX_MATRIX_INSTANCES
        )),
        "{output}"
    );
}

#[test]
fn expanded_edges_are_capped() {
    let list = |n: usize| (0..n).map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    let text = format!(
        "name: m\ntasks:\n  a:\n    matrix: {{ x: [{}], y: [{}] }}\n    run: x\n  \
         b:\n    needs: [a]\n    matrix: {{ z: [{}] }}\n    run: y\n",
        list(1000),
        list(100),
        list(200)
    );
    let output = messages(&text);
    assert!(
        output.contains("the workflow expands to 20000000 dependencies between task instances"),
        "{output}"
    );
}

#[test]
fn total_instances_are_capped() {
    let list = (0..100)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = String::from("name: m\ntasks:\n");
    for task in 0..11 {
        text.push_str(&format!(
            "  t{task}:\n    matrix: {{ x: [{list}], y: [{list}], z: [{}] }}\n    run: x\n",
            (0..10)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let output = messages(&text);
    assert!(
        output.contains("the workflow expands to 1100000 task instances, more than the limit"),
        "{output}"
    );
}

#[test]
fn alias_bombs_are_stopped() {
    let mut text = String::from("name: bomb\nparams:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut previous = "a";
    for name in names {
        let refs = vec![format!("*{previous}"); 10].join(", ");
        text.push_str(&format!("  {name}: &{name} [{refs}]\n"));
        previous = name;
    }
    text.push_str("tasks:\n  t: { run: x }\n");
    let output = messages(&text);
    assert!(output.contains("aliases expanded"), "{output}");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let text = format!(
        "name: deep\ntasks: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let output = messages(&text);
    assert!(output.starts_with("f.yaml:2:"), "{output}");
}

#[test]
fn files_over_the_size_limit_are_refused() {
    let text = format!(
        "name: big\ndescription: '{}'\n",
        "x".repeat(limits::MAX_FILE_BYTES)
    );
    let output = messages(&text);
    assert!(
        output.contains("more than the limit of 67108864 bytes"),
        "{output}"
    );
}
