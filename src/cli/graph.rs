//! `tandem graph FILE` and `tandem schema`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Failure, exit};

/// Graph output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (`tandem graph f.yaml | dot -Tsvg > f.svg`).
    Dot,
    /// Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
}

/// Arguments of `tandem graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Workflow file (YAML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
}

/// `tandem graph`.
pub fn graph(args: GraphArgs) -> Result<u8, Failure> {
    let spec = tandem_dsl::compile_file(&args.file).map_err(|diagnostics| {
        Failure::invalid(format!("{}\n{diagnostics}", args.file.display()))
    })?;
    let text = match args.format {
        GraphFormat::Dot => tandem_dsl::export::to_dot(&spec),
        GraphFormat::Mermaid => tandem_dsl::export::to_mermaid(&spec),
    };
    print!("{text}");
    Ok(exit::OK)
}

/// `tandem schema`.
pub fn schema() -> Result<u8, Failure> {
    let text = serde_json::to_string_pretty(&tandem_dsl::json_schema()).map_err(Failure::system)?;
    println!("{text}");
    Ok(exit::OK)
}
