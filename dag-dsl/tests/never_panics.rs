//! `compile` never panics: on arbitrary text, on YAML-like noise, and on random mutations of
//! the full example (where most inputs are almost valid and reach the deeper checks).

use proptest::prelude::*;

const FULL: &str = include_str!("valid/full.yaml");

/// A scheduled workflow: mutations reach the cron, time zone and catch-up checks.
const SCHEDULED: &str = include_str!("valid/scheduled.yaml");

/// Fragments that make mutations likely to hit interesting paths.
const FRAGMENTS: &[&str] = &[
    "\n",
    " ",
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!str ",
    "!x ",
    "~",
    "${{",
    "}}",
    "${{ params.day }}",
    "${{ matrix.shard }}",
    "${{ tasks.extract.outputs.path }}",
    "needs: [",
    "matrix: {}",
    "retry:",
    "tasks:",
    "extract",
    "transform",
    "load",
    "0",
    "-1",
    "1e999",
    "99999999999999999999",
    "1s",
    "0s",
    "TANDEM_",
    "é",
    "\t",
    "#",
    "---\n",
    "|\n  x\n",
    "all_done",
    "worker: { queue: q, type: t }\n",
    "worker:",
    "queue: ",
    "type: ",
    "input:",
    "input: { a: [1, ~, .inf, { b: x }] }\n",
    "heartbeat_timeout: ",
    "non_retryable_errors: [",
    "publish",
    "schedule: { cron: '@daily' }\n",
    "schedule:",
    "cron: ",
    "\"*/15 9-17 * * MON-FRI\"",
    "@reboot",
    "L",
    "W",
    "#",
    "?",
    "/",
    "-",
    "SUN",
    "JUL",
    "60",
    "timezone: ",
    "America/New_York",
    "+02:00",
    "catchup: ",
    "all",
    "catchup_window: ",
    "366d",
];

/// A random edit of `text` at a char boundary.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..4000usize, 1..40usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (0..4000usize, 0..FRAGMENTS.len()).prop_map(|(at, fragment)| Edit::Insert { at, fragment }),
        (0..80usize).prop_map(|line| Edit::DuplicateLine { line }),
        (0..80usize, 0..80usize).prop_map(|(a, b)| Edit::SwapLines { a, b }),
    ]
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, edit: &Edit) -> String {
    match *edit {
        Edit::Delete { at, len } => {
            let start = floor_boundary(text, at);
            let end = floor_boundary(text, start + len);
            format!("{}{}", &text[..start], &text[end..])
        }
        Edit::Insert { at, fragment } => {
            let at = floor_boundary(text, at);
            format!("{}{}{}", &text[..at], FRAGMENTS[fragment], &text[at..])
        }
        Edit::DuplicateLine { line } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let line = line % lines.len();
                lines.insert(line, lines[line]);
            }
            lines.join("\n")
        }
        Edit::SwapLines { a, b } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
            }
            lines.join("\n")
        }
    }
}

/// Compiles and, for errors, renders them (rendering must not panic either).
fn compile_and_render(text: &str) {
    match tandem_dsl::compile("fuzz.yaml", text) {
        Ok(spec) => {
            let _ = tandem_dsl::to_dot(&spec);
            let _ = tandem_dsl::to_mermaid(&spec);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            let _ = errors.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        compile_and_render(&text);
    }

    #[test]
    fn yaml_like_noise_never_panics(text in "[a-z_:\\-\\[\\]{}&*!|>#'\" \n\t${}.,0-9~<]{0,300}") {
        compile_and_render(&text);
    }

    #[test]
    fn mutations_of_a_valid_file_never_panic(edits in proptest::collection::vec(edit_strategy(), 1..6)) {
        let mut text = FULL.to_string();
        for edit in &edits {
            text = apply(&text, edit);
        }
        compile_and_render(&text);
    }

    #[test]
    fn mutations_of_a_scheduled_file_never_panic(edits in proptest::collection::vec(edit_strategy(), 1..6)) {
        let mut text = SCHEDULED.to_string();
        for edit in &edits {
            text = apply(&text, edit);
        }
        compile_and_render(&text);
    }
}

#[test]
fn the_unmutated_files_are_valid() {
    // Guards the mutation tests: they start from files that compile.
    tandem_dsl::compile("full.yaml", FULL).unwrap_or_else(|errors| panic!("{errors}"));
    tandem_dsl::compile("scheduled.yaml", SCHEDULED).unwrap_or_else(|errors| panic!("{errors}"));
}
