//! Caps that keep hostile input from exhausting memory or time. Each one is far above what a
//! real workflow needs (a 100,000-task file stays well inside all of them).

/// Largest accepted file, in bytes (64 MiB).
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// Largest number of YAML nodes (scalars, lists and mappings, keys included, aliases
/// expanded) in one file. A 100,000-task file has about 800,000.
pub const MAX_YAML_NODES: usize = 3_000_000;

/// Deepest nesting of YAML lists and mappings.
pub const MAX_YAML_DEPTH: usize = 64;

/// Most instances one matrix task may expand to.
pub const MAX_MATRIX_INSTANCES: u64 = 100_000;

/// Most task instances a workflow may have after matrix expansion.
pub const MAX_TASK_INSTANCES: u64 = 1_000_000;

/// Most upstream → downstream edges between task instances after matrix expansion.
pub const MAX_EDGES: u64 = 10_000_000;

/// Most bytes of templated text (`run`, `env`, `working_dir`, the strings of `input`) after
/// matrix expansion.
pub const MAX_EXPANDED_TEXT_BYTES: u64 = 256 * 1024 * 1024;

/// Longest error type in `retry.non_retryable_errors`, in bytes.
pub const MAX_ERROR_TYPE_BYTES: usize = 256;

/// Longest worker queue name or task type (`worker.queue`, `worker.type`), in bytes.
pub const MAX_WORKER_NAME_BYTES: usize = 128;

/// Longest `heartbeat_timeout` of a worker task (24 hours).
pub const MAX_HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
