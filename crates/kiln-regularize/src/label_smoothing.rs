//! Cross-entropy with label smoothing, equal to PyTorch's
//! `F.cross_entropy(logits, target, label_smoothing=eps)`.
//!
//! With `p = softmax(logits)` over `C` classes, the loss of a sample of class `y` is
//!
//! ```text
//! (1 - eps) * (-log p_y) + eps * mean_c(-log p_c)
//! ```
//!
//! i.e. the cross-entropy against the target distribution `(1 - eps) * onehot(y) + eps / C`.
//! [`LabelSmoothingCrossEntropy::forward`] averages it over the batch (PyTorch's
//! `reduction='mean'`). Class weights and `ignore_index` are not supported.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::RegularizeError;

/// Label-smoothing cross-entropy over logits `[N, C]` and class labels `[N]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelSmoothingCrossEntropy {
    /// The smoothing `eps` in `[0, 1]`; 0 is the plain cross-entropy.
    pub smoothing: f64,
}

impl LabelSmoothingCrossEntropy {
    /// A loss with smoothing `eps`.
    ///
    /// # Errors
    /// [`RegularizeError::InvalidArgument`] if `smoothing` is not in `[0, 1]`.
    pub fn new(smoothing: f64) -> Result<Self, RegularizeError> {
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(RegularizeError::InvalidArgument(format!(
                "label smoothing must be in [0, 1], got {smoothing}"
            )));
        }
        Ok(Self { smoothing })
    }

    /// The mean loss over the batch, a `[1]` tensor (differentiable on an autodiff device).
    ///
    /// # Shapes
    /// - logits: `[N, C]`
    /// - targets: `[N]`, class indices in `0..C`
    ///
    /// # Panics
    /// If the batch sizes differ.
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.forward_per_sample(logits, targets).mean()
    }

    /// The loss of each sample, `[N]` (PyTorch's `reduction='none'`).
    ///
    /// # Panics
    /// If the batch sizes differ.
    pub fn forward_per_sample(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let [n, _c] = logits.dims();
        let [nt] = targets.dims();
        assert_eq!(n, nt, "logits have {n} rows but there are {nt} targets");
        let log_p = log_softmax(logits, 1);
        let nll: Tensor<1> = log_p.clone().gather(1, targets.reshape([n, 1])).reshape([n]).neg();
        if self.smoothing == 0.0 {
            return nll;
        }
        let smooth: Tensor<1> = log_p.mean_dim(1).reshape([n]).neg();
        nll.mul_scalar(1.0 - self.smoothing) + smooth.mul_scalar(self.smoothing)
    }
}

/// Mean label-smoothing cross-entropy (see [`LabelSmoothingCrossEntropy`]).
///
/// # Panics
/// If `smoothing` is not in `[0, 1]` or the batch sizes differ.
pub fn label_smoothing_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, smoothing: f64) -> Tensor<1> {
    LabelSmoothingCrossEntropy::new(smoothing).expect("invalid label smoothing").forward(logits, targets)
}
