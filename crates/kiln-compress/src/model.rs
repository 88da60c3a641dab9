//! What a model needs to be compressed: a Burn [`Module`] that the analyzer can [`Trace`], that
//! returns class scores and that carries kiln-models' [`Hooks`] (BN folding, depthwise group
//! sync, running-statistics unsharing, a feature map for FitNets hints). Every registered zoo
//! model has them — they are written beside the model, in its own file — so every one, a plugin's
//! included, and [`kiln_models::AnyModel`] (any of them behind one type) is [`Compressible`]
//! without an impl here.

use burn::module::Module;
use burn::tensor::Tensor;
use kiln_layers::Trace;
use kiln_models::{Hooks, ZooModel};

/// A classifier kiln can prune, fold, quantize and distill: implemented for every [`ZooModel`]
/// that is a Burn [`Module`]; the methods call the model's own [`Hooks`].
pub trait Compressible: Module + Trace + 'static {
    /// Class scores `[N, classes]` for images `[N, C, H, W]`.
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;

    /// The feature map a FitNets hint is taken from ([`Hooks::features`]); `None` when the model
    /// exposes none.
    fn hint(&self, x: Tensor<4>) -> Option<Tensor<4>>;

    /// See [`Hooks::sync_groups`].
    fn sync_groups(&mut self);

    /// See [`Hooks::unshare_running_stats`].
    fn unshare_running_stats(&mut self);

    /// See [`Hooks::fold_bn`]; returns the number of norms folded.
    fn fold_bn(&mut self) -> usize;
}

impl<M: ZooModel + Module + 'static> Compressible for M {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        ZooModel::logits(self, x)
    }

    fn hint(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Hooks::features(self, x)
    }

    fn sync_groups(&mut self) {
        Hooks::sync_groups(self)
    }

    fn unshare_running_stats(&mut self) {
        Hooks::unshare_running_stats(self)
    }

    fn fold_bn(&mut self) -> usize {
        Hooks::fold_bn(self)
    }
}
