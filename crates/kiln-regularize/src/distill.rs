//! Hinton et al.'s (2015) knowledge-distillation loss: the one kiln-train's `--teacher` and
//! kiln-compress's `--distill-from` both use.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// `alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))`, the KL
/// averaged over the batch (PyTorch's `kl_div(..., reduction="batchmean")`). `teacher` is a
/// constant of the loss (pass logits computed without autodiff).
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
