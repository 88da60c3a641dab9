//! # kiln-regularize
//!
//! Regularization for training kiln models with Burn, on any device:
//!
//! - [`penalty`]: differentiable L1 / L2 weight penalties over chosen parameters of a module
//!   (biases and normalization parameters skipped by default), [`WeightPenalty`].
//! - [`mod@drop_path`]: [`DropPath`] (stochastic depth), timm's `DropPath` twin.
//! - [`label_smoothing`]: [`LabelSmoothingCrossEntropy`], equal to PyTorch's
//!   `F.cross_entropy(..., label_smoothing=eps)`.
//! - [`distill`]: Hinton's [`distillation_loss`] (soft targets at temperature T plus the hard
//!   labels), the one kiln-train and kiln-compress both use.
//! - [`early_stopping`]: [`EarlyStopping`] with patience / `min_delta`, min or max mode.
//!
//! This crate depends on Burn alone; the tensors it builds stay in the autodiff graph when the
//! inputs are on an autodiff device.

#![warn(missing_docs)]

pub mod distill;
pub mod drop_path;
pub mod early_stopping;
pub mod label_smoothing;
pub mod penalty;

pub use distill::distillation_loss;
pub use drop_path::{DropPath, DropPathConfig, drop_path};
pub use early_stopping::{EarlyStopping, Mode, StopDecision};
pub use label_smoothing::{LabelSmoothingCrossEntropy, label_smoothing_cross_entropy};
pub use penalty::{ParamSelection, SelectedParam, WeightPenalty, l1_penalty, l2_penalty, selected_params};

/// Errors returned by this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegularizeError {
    /// An argument is outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
