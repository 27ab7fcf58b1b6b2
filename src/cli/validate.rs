//! `tandem validate FILE...`: check files and print every error of each.

use std::path::PathBuf;

use super::{Failure, exit};

/// `tandem validate`: prints `FILE: ok (N tasks)` or every error of the file; exit 1 when any
/// file has errors.
pub fn validate(files: &[PathBuf]) -> Result<u8, Failure> {
    let mut code = exit::OK;
    for file in files {
        match tandem_dsl::compile_file(file) {
            Ok(spec) => {
                let instances = spec.tasks.len();
                println!(
                    "{}: ok (workflow `{}`, {instances} task{})",
                    file.display(),
                    spec.name,
                    if instances == 1 { "" } else { "s" }
                );
            }
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                code = exit::FAILED;
            }
        }
    }
    Ok(code)
}
