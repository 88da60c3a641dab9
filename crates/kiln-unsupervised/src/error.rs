//! The crate's one error type.

use std::path::PathBuf;

/// Why a clustering, an RBM, a metric or a picture failed. Every message is one line that names
/// the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum UnsupervisedError {
    /// A parameter out of range (k = 0, k > n, a zero learning rate, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// Input data that cannot be used (empty, NaN / infinite values, wrong shape).
    #[error("{0}")]
    InvalidInput(String),
    /// Reading a tensor back from the device failed.
    #[error("backend error while reading a tensor: {0}")]
    Backend(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {source} (check that the folder exists and is writable)")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("cannot encode {path} as PNG: {message}")]
    Png {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, UnsupervisedError>;
