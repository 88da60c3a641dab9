//! Knowledge distillation: Hinton et al.'s soft-target loss and a FitNets feature hint.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// A teacher and the loss weights, passed to [`crate::finetune`].
#[derive(Debug)]
pub struct Distill<T> {
    /// The trained teacher in inference mode (`model.valid()`): it runs without autodiff and its
    /// outputs are constants of the student's loss.
    pub teacher: T,
    /// Weight of the hard-label cross-entropy; `1 - alpha` weights the soft-target term.
    pub alpha: f64,
    /// Softmax temperature `T`.
    pub temperature: f64,
    /// Weight of the FitNets hint loss (0 disables it). The student's and teacher's hint maps
    /// must have the same shape, or their channel means are compared when they do not.
    pub hint_weight: f64,
}

/// Hinton's distillation loss:
/// `alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))`, the KL
/// averaged over the batch (PyTorch's `kl_div(..., reduction="batchmean")`).
pub fn distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    alpha: f64,
    temperature: f64,
) -> Tensor<1> {
    let [n, _] = student.dims();
    let ce = CrossEntropyLossConfig::new().init(&student.device()).forward(student.clone(), targets);
    let t = temperature;
    let log_ps = log_softmax(student.div_scalar(t), 1);
    let pt = softmax(teacher.clone().div_scalar(t), 1);
    let log_pt = log_softmax(teacher.div_scalar(t), 1);
    let kl = (pt * (log_pt - log_ps)).sum().div_scalar(n as f64);
    ce.mul_scalar(alpha) + kl.mul_scalar((1.0 - alpha) * t * t)
}

/// FitNets hint: mean squared difference of the two feature maps. When the channel counts differ
/// (a narrower student), each map is reduced to its per-position channel mean first, so the hint
/// needs no trained regressor.
pub fn hint_loss(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let (s, t) =
        if student.dims() == teacher.dims() { (student, teacher) } else { (student.mean_dim(1), teacher.mean_dim(1)) };
    (s - t).powi_scalar(2).mean()
}
