//! # kiln-metrics
//!
//! Metrics and training-health monitors for kiln, on any Burn device.
//!
//! - [`classification`]: accuracy, top-k accuracy, a [`ConfusionMatrix`] (serde, Markdown) with
//!   per-class precision / recall / F1 and their macro averages, from plain slices or from Burn
//!   logits `Tensor<2>` + labels `Tensor<1, Int>`.
//! - [`regression`]: MSE, RMSE, MAE, R².
//! - [`segmentation`]: per-class IoU and mIoU from predicted / target label maps (or logits).
//! - [`overfitting`]: an [`OverfittingDetector`] that reads per-epoch train / validation curves and
//!   names the epoch where overfitting began.
//! - [`grad_monitor`]: a per-parameter / per-layer gradient L2-norm report that flags vanishing and
//!   exploding layers ([`GradNormMonitor`]).
//! - [`sparsity`]: the fraction of exact zeros in (ReLU) activations, per layer.
//!
//! Every report is a plain serde struct, so it can be written as JSON next to a training run.
//!
//! Conventions: classes are `0..num_classes`; epochs are 0-based indices into the per-epoch
//! slices; a confusion matrix's rows are the true class and its columns the predicted class
//! (scikit-learn's layout).
//!
//! This crate depends on Burn alone (no backend is selected): tensors are read back to the host
//! with `try_to_vec_as`, and every metric has a plain-slice form.

#![warn(missing_docs)]

pub mod classification;
pub mod grad_monitor;
pub mod overfitting;
pub mod regression;
pub mod segmentation;
pub mod sparsity;

pub use classification::{
    ClassMetrics, ClassificationReport, ConfusionMatrix, accuracy, accuracy_from_logits, argmax_rows, top_k_accuracy,
    top_k_accuracy_from_logits,
};
pub use grad_monitor::{GradFlag, GradNormMonitor, GradNormReport, GradientLookup, LayerGradNorm, ParamGradNorm};
pub use overfitting::{CurveKind, OverfittingDetector, OverfittingVerdict};
pub use regression::{RegressionMetrics, mae, mse, r2_score, regression_metrics, regression_metrics_from_tensors};
pub use segmentation::{IouReport, iou_from_label_maps, iou_from_logits, segmentation_iou};
pub use sparsity::{LayerSparsity, SparsityReport, SparsityTracker, activation_sparsity, zero_fraction};

/// Errors returned by the metrics of this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Two inputs that must pair up element by element have different lengths.
    #[error("length mismatch: {what} has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which input is too long or too short.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A class label (or predicted class) is negative or `>= num_classes`.
    #[error("label {label} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// The offending label.
        label: i64,
        /// The number of classes.
        num_classes: usize,
    },
    /// A metric was asked of an empty input.
    #[error("empty input: {0}")]
    Empty(&'static str),
    /// An argument is outside its domain (k = 0, zero classes, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Reading a tensor back to the host failed.
    #[error("reading tensor data failed: {0}")]
    TensorRead(String),
}

/// Reads a float tensor back to the host as `f32`.
pub(crate) fn read_f32<const D: usize>(tensor: &burn::tensor::Tensor<D>) -> Result<Vec<f32>, MetricsError> {
    tensor.try_to_vec_as::<f32>().map_err(|e| MetricsError::TensorRead(e.to_string()))
}

/// Reads an int tensor back to the host as `i64`.
pub(crate) fn read_i64<const D: usize>(
    tensor: &burn::tensor::Tensor<D, burn::tensor::Int>,
) -> Result<Vec<i64>, MetricsError> {
    tensor.try_to_vec_as::<i64>().map_err(|e| MetricsError::TensorRead(e.to_string()))
}

/// Converts host labels to class indices, checking `0 <= label < num_classes`.
pub(crate) fn to_classes(labels: &[i64], num_classes: usize) -> Result<Vec<usize>, MetricsError> {
    labels
        .iter()
        .map(|&l| {
            if l < 0 || l as u64 >= num_classes as u64 {
                Err(MetricsError::LabelOutOfRange { label: l, num_classes })
            } else {
                Ok(l as usize)
            }
        })
        .collect()
}
