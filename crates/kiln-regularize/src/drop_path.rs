//! DropPath (stochastic depth), the twin of timm's `timm.layers.DropPath`.
//!
//! In training, each sample of the batch keeps its residual branch with probability `1 - prob`
//! and is zeroed otherwise (one Bernoulli draw per sample, broadcast over the other dimensions);
//! kept samples are scaled by `1 / (1 - prob)` so the expectation is unchanged
//! (`scale_by_keep`, timm's default). At inference it is the identity.
//!
//! As Burn's `Dropout`, it is in training mode when the input lives on an autodiff device and the
//! layer's `training` flag is on (cleared by `Module::valid` / `freeze`). Apply it to the residual
//! branch only: `x + drop_path.forward(block.forward(x))`.

use burn::config::Config;
use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

/// Configuration of a [`DropPath`].
#[derive(Config, Debug)]
pub struct DropPathConfig {
    /// Probability of dropping a sample's path, in `[0, 1]`.
    pub prob: f64,
    /// Scale kept samples by `1 / (1 - prob)` (timm's `scale_by_keep`).
    #[config(default = true)]
    pub scale_by_keep: bool,
}

impl DropPathConfig {
    /// Builds the layer.
    ///
    /// # Panics
    /// If `prob` is not finite or not in `[0, 1]`.
    pub fn init(&self) -> DropPath {
        assert!(
            self.prob.is_finite() && (0.0..=1.0).contains(&self.prob),
            "DropPath probability must be in [0, 1], got {}",
            self.prob
        );
        DropPath { prob: self.prob, scale_by_keep: self.scale_by_keep, training: Param::from_bool(true) }
    }
}

/// Stochastic depth: drops whole samples of a residual branch during training.
///
/// # Shapes
/// - input: `[batch, ...]`
/// - output: same as the input
#[derive(Module, Debug)]
pub struct DropPath {
    /// Probability of dropping a sample's path.
    pub prob: f64,
    /// Whether kept samples are scaled by `1 / (1 - prob)`.
    pub scale_by_keep: bool,
    /// Whether to behave as during training (cleared by `valid()` / `freeze()`).
    pub training: Param<Flag>,
}

impl DropPath {
    /// Whether [`DropPath::forward`] would drop paths for an input on an autodiff device or not.
    pub fn is_active(&self, autodiff: bool) -> bool {
        autodiff && self.training.is_enabled() && self.prob > 0.0
    }

    /// Applies stochastic depth (identity at inference).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if !self.is_active(x.device().is_autodiff()) {
            return x;
        }
        drop_path(x, self.prob, self.scale_by_keep)
    }
}

/// The functional form (always in training mode): multiplies each sample of `x` (dimension 0) by
/// an independent Bernoulli(`1 - prob`) draw, divided by `1 - prob` when `scale_by_keep` and
/// `prob < 1`.
pub fn drop_path<const D: usize>(x: Tensor<D>, prob: f64, scale_by_keep: bool) -> Tensor<D> {
    if prob <= 0.0 {
        return x;
    }
    let keep = 1.0 - prob;
    let mut shape = [1usize; D];
    shape[0] = x.dims()[0];
    let device = x.device();
    let mask = Tensor::<D>::random(shape, Distribution::Bernoulli(keep), (&device, x.dtype()));
    let mask = if scale_by_keep && keep > 0.0 { mask.div_scalar(keep) } else { mask };
    x * mask
}
