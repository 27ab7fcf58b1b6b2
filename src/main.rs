//! `tandem`: the command-line interface of the Tandem workflow engine.
//!
//! Thin by design: it parses arguments, calls the `tandem-dsl` and `tandem-engine` crates,
//! and renders their results. See `tandem --help`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
