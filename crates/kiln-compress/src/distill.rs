//! Knowledge distillation: Hinton et al.'s soft-target loss and a FitNets feature hint.

use burn::tensor::Tensor;

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

pub use kiln_regularize::distillation_loss;

/// FitNets hint: mean squared difference of the two feature maps. When the channel counts differ
/// (a narrower student), each map is reduced to its per-position channel mean first, so the hint
/// needs no trained regressor.
pub fn hint_loss(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let (s, t) =
        if student.dims() == teacher.dims() { (student, teacher) } else { (student.mean_dim(1), teacher.mean_dim(1)) };
    (s - t).powi_scalar(2).mean()
}

/// Errors unless both models expose a feature map for a FitNets hint (checked on one image of
/// `input = [C, H, W]` before any fine-tuning).
pub fn check_hint<M: crate::Compressible, T: crate::Compressible>(
    student: &M,
    teacher: &T,
    input: [usize; 3],
    device: &burn::tensor::Device,
) -> Result<(), crate::CompressError> {
    let [c, h, w] = input;
    let x = Tensor::<4>::zeros([1, c, h, w], device);
    for (who, has) in [("student", student.hint(x.clone()).is_some()), ("teacher", teacher.hint(x).is_some())] {
        if !has {
            return Err(crate::CompressError::InvalidOption(format!(
                "the {who} exposes no feature map (kiln_models::Hooks::features) for a FitNets hint; use --hint 0"
            )));
        }
    }
    Ok(())
}
