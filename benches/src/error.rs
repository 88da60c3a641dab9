//! [`BenchError`]: what can go wrong while benchmarking, one line each.

use std::path::PathBuf;

/// Errors of the bench runner.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No workload matched `--filter`.
    #[error("no workload matches the filter '{0}'; run without --filter to see the list")]
    NoMatch(String),
    /// A workload could not be built (unknown model, bad option).
    #[error("workload '{name}': {reason}")]
    Workload {
        /// The workload's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The PyTorch side failed after it had started.
    #[error("PyTorch side: {0}")]
    Torch(String),
    /// Writing a report file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
