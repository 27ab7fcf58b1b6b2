//! Times `tandem_dsl::compile` on a generated wide workflow: one root, N tasks that need it,
//! one join that needs them all (default N = 100,000).
//!
//! Run: `cargo run --release -p tandem-dsl --example compile_100k [-- N]`

use std::time::Instant;

/// The text of a workflow with `width` tasks between one root and one join.
fn wide_workflow(width: usize) -> String {
    let mut text = String::with_capacity(width * 64);
    text.push_str("name: wide\ntasks:\n  root:\n    run: echo root\n");
    for index in 0..width {
        text.push_str(&format!(
            "  t{index}:\n    needs: [root]\n    run: echo {index}\n"
        ));
    }
    text.push_str("  join:\n    needs: [");
    for index in 0..width {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!("t{index}"));
    }
    text.push_str("]\n");
    text
}

fn main() {
    let width: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("N must be a whole number"))
        .unwrap_or(100_000);
    let text = wide_workflow(width);
    let started = Instant::now();
    let spec = match tandem_dsl::compile("wide.yaml", &text) {
        Ok(spec) => spec,
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    };
    let elapsed = started.elapsed();
    println!(
        "compiled {} task instances ({} bytes of YAML) in {:.3} s",
        spec.tasks.len(),
        text.len(),
        elapsed.as_secs_f64()
    );
}
