//! The rules the model-side hooks (`kiln_models::Hooks`: BN folding, depthwise `groups` sync,
//! running-statistics unsharing) apply, written once per block: for a bare `Conv2d` / `BatchNorm`
//! pair here, for [`ConvBnAct`] and [`InvertedResidual`] on the blocks themselves. A model's hooks
//! delegate to these.

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use crate::conv_bn_act::{ConvBnAct, fold_bn_into_conv};
use crate::inverted_residual::InvertedResidual;

/// A copy of `s` with the same id and value that no longer shares storage with `s`.
fn unshared(s: &RunningState<Tensor<1>>) -> RunningState<Tensor<1>> {
    struct Id(Option<ParamId>);
    impl ModuleVisitor for Id {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0 = Some(p.id);
        }
    }
    let mut id = Id(None);
    s.visit(&mut id);
    let value = s.value();
    match id.0 {
        Some(id) => RunningState::with_id(id, value),
        None => RunningState::new(value),
    }
}

/// Gives `bn` its own running statistics. Burn's `RunningState` is shared between clones of a
/// module and parameter mappers write into it in place, so a transformation of a clone (channel
/// pruning) would otherwise also change the original's statistics.
pub fn unshare_bn(bn: &mut BatchNorm) {
    bn.running_mean = unshared(&bn.running_mean);
    bn.running_var = unshared(&bn.running_var);
}

/// Folds `bn` into `conv` and turns `bn` into an exact identity (`gamma 1, beta 0, mean 0,
/// var 1 - eps`), for models whose type makes the norm mandatory (ResNet's). Returns 1.
pub fn fold_bn_keep(conv: &mut Conv2d, bn: &mut BatchNorm) -> usize {
    *conv = fold_bn_into_conv(conv.clone(), bn);
    let [c] = bn.gamma.dims();
    let device = bn.gamma.val().device();
    bn.gamma = Param::from_tensor(Tensor::ones([c], &device));
    bn.beta = Param::from_tensor(Tensor::zeros([c], &device));
    bn.running_mean = RunningState::new(Tensor::zeros([c], &device));
    bn.running_var = RunningState::new(Tensor::ones([c], &device).sub_scalar(bn.epsilon));
    1
}

/// After structured pruning: a depthwise convolution (`groups > 1`, one input channel per group)
/// gets `groups` = its new channel count (Burn keeps `groups` as a plain field that parameter
/// mappers cannot reach).
pub fn sync_depthwise(conv: &mut Conv2d) {
    let [o, i, _, _] = conv.weight.dims();
    if conv.groups > 1 && i == 1 {
        conv.groups = o;
    }
}

impl ConvBnAct {
    /// Folds the norm into the convolution in place and removes it; returns the number of norms
    /// folded (0 or 1).
    pub fn fold_bn_in_place(&mut self) -> usize {
        if self.bn.is_none() {
            return 0;
        }
        *self = self.clone().fold_bn();
        1
    }

    /// See [`sync_depthwise`].
    pub fn sync_groups(&mut self) {
        sync_depthwise(&mut self.conv);
    }

    /// See [`unshare_bn`].
    pub fn unshare_running_stats(&mut self) {
        if let Some(bn) = &mut self.bn {
            unshare_bn(bn);
        }
    }
}

impl InvertedResidual {
    fn convs(&mut self) -> impl Iterator<Item = &mut ConvBnAct> {
        self.expand.iter_mut().chain([&mut self.dw, &mut self.project])
    }

    /// Folds the expansion, depthwise and projection norms; returns how many.
    pub fn fold_bn_in_place(&mut self) -> usize {
        self.convs().map(|c| c.fold_bn_in_place()).sum()
    }

    /// Syncs the depthwise convolution's `groups` (see [`sync_depthwise`]).
    pub fn sync_groups(&mut self) {
        self.dw.sync_groups();
    }

    /// See [`unshare_bn`].
    pub fn unshare_running_stats(&mut self) {
        self.convs().for_each(|c| c.unshare_running_stats());
    }
}
