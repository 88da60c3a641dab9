//! What a model needs to be compressed: a Burn [`Module`] that the analyzer can [`Trace`] and that
//! returns class scores. Implemented for the zoo's classifiers that the compression tests cover;
//! a plugin model implements it in a few lines.

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use kiln_layers::{ConvBnAct, Trace, fold_bn_into_conv};
use kiln_models::densenet::DenseNet;
use kiln_models::ghostnet::GhostNet;
use kiln_models::lenet::LeNet5;
use kiln_models::mobilenet_v2::MobileNetV2;
use kiln_models::mobilenet_v3::MobileNetV3;
use kiln_models::resnet::ResNet;
use kiln_models::shufflenet_v2::ShuffleNetV2;
use kiln_models::squeezenet::SqueezeNet;

/// A classifier kiln can prune, fold, quantize and distill.
pub trait Compressible: Module + Trace + 'static {
    /// Class scores `[N, classes]` for images `[N, C, H, W]`.
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;

    /// The feature map a FitNets hint is taken from (`[N, C, H, W]`, the input of the global
    /// pooling or of the classifier).
    fn hint(&self, x: Tensor<4>) -> Tensor<4>;

    /// After structured pruning: sets the `groups` of every depthwise convolution (Burn keeps it
    /// as a plain field that parameter mappers cannot reach) to its new channel count.
    fn sync_groups(&mut self) {}

    /// Gives every batch norm its own running statistics. Burn's `RunningState` is shared between
    /// clones of a module and parameter mappers write into it in place, so a transformation of a
    /// clone (channel pruning) would otherwise also change the original's statistics.
    fn unshare_running_stats(&mut self) {}

    /// Folds every inference-mode batch norm into the convolution before it
    /// (`w' = w * g / sqrt(v + eps)`, `b' = (b - m) * g / sqrt(v + eps) + beta`). A norm that the
    /// model's type makes optional (`ConvBnAct`) is removed; one that is not (ResNet's) becomes
    /// an exact identity (`gamma 1, beta 0, mean 0, var 1 - eps`). Returns the number of norms
    /// folded. Models without batch norms keep the default (0).
    fn fold_bn(&mut self) -> usize {
        0
    }
}

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

fn unshare_bn(bn: &mut BatchNorm) {
    bn.running_mean = unshared(&bn.running_mean);
    bn.running_var = unshared(&bn.running_var);
}

fn unshare_cba(c: &mut ConvBnAct) {
    if let Some(bn) = &mut c.bn {
        unshare_bn(bn);
    }
}

fn sync_dw(c: &mut ConvBnAct) {
    let [o, i, _, _] = c.conv.weight.dims();
    if c.conv.groups > 1 && i == 1 {
        c.conv.groups = o;
    }
}

fn fold(c: &mut ConvBnAct) -> usize {
    if c.bn.is_none() {
        return 0;
    }
    *c = c.clone().fold_bn();
    1
}

/// Folds `bn` into `conv` and turns `bn` into an identity.
fn fold_keep(conv: &mut Conv2d, bn: &mut BatchNorm) -> usize {
    *conv = fold_bn_into_conv(conv.clone(), bn);
    let [c] = bn.gamma.dims();
    let device = bn.gamma.val().device();
    bn.gamma = Param::from_tensor(Tensor::ones([c], &device));
    bn.beta = Param::from_tensor(Tensor::zeros([c], &device));
    bn.running_mean = RunningState::new(Tensor::zeros([c], &device));
    bn.running_var = RunningState::new(Tensor::ones([c], &device).sub_scalar(bn.epsilon));
    1
}

impl Compressible for LeNet5 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        self.pool.forward(self.relu.forward(self.conv2.forward(x)))
    }
}

impl Compressible for MobileNetV2 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn sync_groups(&mut self) {
        sync_dw(&mut self.stem);
        for b in &mut self.blocks {
            sync_dw(&mut b.dw);
        }
    }

    fn unshare_running_stats(&mut self) {
        unshare_cba(&mut self.stem);
        for b in &mut self.blocks {
            if let Some(e) = &mut b.expand {
                unshare_cba(e);
            }
            unshare_cba(&mut b.dw);
            unshare_cba(&mut b.project);
        }
        unshare_cba(&mut self.head);
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = fold(&mut self.stem);
        for b in &mut self.blocks {
            if let Some(e) = &mut b.expand {
                n += fold(e);
            }
            n += fold(&mut b.dw) + fold(&mut b.project);
        }
        n + fold(&mut self.head)
    }
}

impl Compressible for ResNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn unshare_running_stats(&mut self) {
        unshare_bn(&mut self.bn1);
        for b in self.stages.iter_mut().flatten() {
            unshare_bn(&mut b.bn1);
            unshare_bn(&mut b.bn2);
            if let Some(bn) = &mut b.bn3 {
                unshare_bn(bn);
            }
            if let Some(d) = &mut b.downsample {
                unshare_bn(&mut d.bn);
            }
        }
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = fold_keep(&mut self.conv1, &mut self.bn1);
        for b in self.stages.iter_mut().flatten() {
            n += fold_keep(&mut b.conv1, &mut b.bn1) + fold_keep(&mut b.conv2, &mut b.bn2);
            if let (Some(c), Some(bn)) = (&mut b.conv3, &mut b.bn3) {
                n += fold_keep(c, bn);
            }
            if let Some(d) = &mut b.downsample {
                n += fold_keep(&mut d.conv, &mut d.bn);
            }
        }
        n
    }
}

fn sync_conv(c: &mut Conv2d) {
    let [o, i, _, _] = c.weight.dims();
    if c.groups > 1 && i == 1 {
        c.groups = o;
    }
}

impl Compressible for MobileNetV3 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn sync_groups(&mut self) {
        sync_dw(&mut self.stem);
        for b in &mut self.blocks {
            sync_dw(&mut b.dw);
        }
    }

    fn unshare_running_stats(&mut self) {
        unshare_cba(&mut self.stem);
        for b in &mut self.blocks {
            if let Some(e) = &mut b.expand {
                unshare_cba(e);
            }
            unshare_cba(&mut b.dw);
            unshare_cba(&mut b.project);
        }
        unshare_cba(&mut self.head);
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = fold(&mut self.stem);
        for b in &mut self.blocks {
            if let Some(e) = &mut b.expand {
                n += fold(e);
            }
            n += fold(&mut b.dw) + fold(&mut b.project);
        }
        n + fold(&mut self.head)
    }
}

impl Compressible for DenseNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn unshare_running_stats(&mut self) {
        unshare_bn(&mut self.norm0);
        for l in self.blocks.iter_mut().flat_map(|b| b.layers.iter_mut()) {
            unshare_bn(&mut l.norm1);
            unshare_bn(&mut l.norm2);
        }
        for t in &mut self.transitions {
            unshare_bn(&mut t.norm);
        }
        unshare_bn(&mut self.norm5);
    }

    fn fold_bn(&mut self) -> usize {
        // DenseNet's norms come before their convolutions (BN-ReLU-conv); only the stem's
        // conv0 -> norm0 and each layer's conv1 -> norm2 are conv-then-norm.
        let mut n = fold_keep(&mut self.conv0, &mut self.norm0);
        for l in self.blocks.iter_mut().flat_map(|b| b.layers.iter_mut()) {
            n += fold_keep(&mut l.conv1, &mut l.norm2);
        }
        n
    }
}

impl Compressible for ShuffleNetV2 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn sync_groups(&mut self) {
        for u in self.stages.iter_mut().flatten() {
            if let Some(b) = &mut u.branch1 {
                sync_conv(&mut b.dw);
            }
            sync_conv(&mut u.branch2.dw);
        }
    }

    fn unshare_running_stats(&mut self) {
        unshare_bn(&mut self.conv1.bn);
        for u in self.stages.iter_mut().flatten() {
            if let Some(b) = &mut u.branch1 {
                unshare_bn(&mut b.dw_bn);
                unshare_bn(&mut b.pw_bn);
            }
            unshare_bn(&mut u.branch2.pw1_bn);
            unshare_bn(&mut u.branch2.dw_bn);
            unshare_bn(&mut u.branch2.pw2_bn);
        }
        unshare_bn(&mut self.conv5.bn);
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = fold_keep(&mut self.conv1.conv, &mut self.conv1.bn);
        for u in self.stages.iter_mut().flatten() {
            if let Some(b) = &mut u.branch1 {
                n += fold_keep(&mut b.dw, &mut b.dw_bn) + fold_keep(&mut b.pw, &mut b.pw_bn);
            }
            let b = &mut u.branch2;
            n += fold_keep(&mut b.pw1, &mut b.pw1_bn) + fold_keep(&mut b.dw, &mut b.dw_bn);
            n += fold_keep(&mut b.pw2, &mut b.pw2_bn);
        }
        n + fold_keep(&mut self.conv5.conv, &mut self.conv5.bn)
    }
}

impl Compressible for GhostNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn sync_groups(&mut self) {
        for b in self.blocks.iter_mut().flatten() {
            sync_dw(&mut b.ghost1.cheap_operation);
            sync_dw(&mut b.ghost2.cheap_operation);
            if let Some(c) = &mut b.conv_dw {
                sync_conv(c);
            }
            if let Some(s) = &mut b.shortcut {
                sync_conv(&mut s.dw);
            }
        }
    }

    fn unshare_running_stats(&mut self) {
        unshare_bn(&mut self.bn1);
        for b in self.blocks.iter_mut().flatten() {
            for g in [&mut b.ghost1, &mut b.ghost2] {
                unshare_cba(&mut g.primary_conv);
                unshare_cba(&mut g.cheap_operation);
            }
            if let Some(bn) = &mut b.bn_dw {
                unshare_bn(bn);
            }
            if let Some(s) = &mut b.shortcut {
                unshare_bn(&mut s.dw_bn);
                unshare_bn(&mut s.pw_bn);
            }
        }
        unshare_bn(&mut self.final_block.bn1);
    }
}

impl Compressible for SqueezeNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn hint(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }
}
