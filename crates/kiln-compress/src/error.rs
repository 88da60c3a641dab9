//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// The model's trace rejected the input shape.
    #[error("the model cannot be traced at this input: {0}")]
    Trace(String),
    /// A sparsity / ratio / option outside its range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A saved compressed model is malformed or does not match the model it is loaded into.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// The model could not be built.
    #[error(transparent)]
    Zoo(#[from] kiln_models::ZooError),
    /// The analyzer failed.
    #[error(transparent)]
    Analyze(#[from] kiln_analyze::AnalyzeError),
}

impl CompressError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        CompressError::Io { path: path.into(), message: e.to_string() }
    }

    /// A malformed-file error on `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CompressError::BadFile { path: path.into(), message: message.into() }
    }
}
