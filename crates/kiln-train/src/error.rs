//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can stop a training run before it starts or while it writes its outputs.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A flag or option value is invalid (the message names it and the accepted values).
    #[error("{0}")]
    InvalidOption(String),
    /// The model name is unknown or the model rejects the options.
    #[error(transparent)]
    Zoo(#[from] kiln_models::ZooError),
    /// The dataset cannot be read.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// The model and the data do not fit together (and no adaptation applies).
    #[error("{0}")]
    Mismatch(String),
    /// The model exists but this trainer cannot train it (e.g. a plugin model).
    #[error("{0}")]
    Unsupported(String),
    /// Reading or writing a file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed, on one line.
        reason: String,
    },
    /// A saved model (`model.json` + `model.bpk`) cannot be loaded.
    #[error("{0}")]
    Saved(String),
    /// Loading weights failed.
    #[error(transparent)]
    Weights(#[from] kiln_models::WeightError),
    /// The training loss became NaN or infinite; the message names the epoch and step and the
    /// last good checkpoint (nothing was written over it).
    #[error("{0}")]
    Diverged(String),
    /// A metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] kiln_metrics::MetricsError),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        TrainError::Io { path: path.into(), reason: e.to_string().split_whitespace().collect::<Vec<_>>().join(" ") }
    }
}
