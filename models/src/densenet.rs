//! DenseNet (Huang et al. 2016), identical to `torchvision.models.densenet121`.
//!
//! Inside a dense block every layer sees the concatenation of the block input and all earlier
//! layers' outputs. torchvision concatenates the list anew in each layer (`torch.cat(inputs, 1)`)
//! and once more at the end of the block; kiln keeps the running concatenation instead, which
//! produces the same tensors with the same concatenations: the one feeding dense layer `i`
//! (traced as `denselayer{i}.cat`, `i >= 2`) and the block's output (`denseblock{b}.cat`).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind, fold_bn_keep, unshare_bn};

use crate::common::{conv, kaiming_normal};
use crate::registry::{ModelEntry, ModelOptions};

/// Layers per dense block of DenseNet-121.
pub const BLOCK_CONFIG_121: [usize; 4] = [6, 12, 24, 16];

/// Configuration of a [`DenseNet`].
#[derive(Config, Debug)]
pub struct DenseNetConfig {
    /// Channels each dense layer adds (`growth_rate`).
    #[config(default = 32)]
    pub growth_rate: usize,
    /// Dense layers per block.
    #[config(default = "BLOCK_CONFIG_121")]
    pub block_config: [usize; 4],
    /// Stem output channels (`num_init_features`).
    #[config(default = 64)]
    pub num_init_features: usize,
    /// Bottleneck width multiplier: the 1x1 conv outputs `bn_size * growth_rate` channels.
    #[config(default = 4)]
    pub bn_size: usize,
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
}

impl DenseNetConfig {
    /// Builds the network with torchvision's initialization.
    pub fn init(&self, device: &Device) -> DenseNet {
        let mut c = self.num_init_features;
        let mut blocks = vec![];
        let mut transitions = vec![];
        for (b, &n) in self.block_config.iter().enumerate() {
            let layers = (0..n)
                .map(|i| {
                    let cin = c + i * self.growth_rate;
                    let mid = self.bn_size * self.growth_rate;
                    DenseLayer {
                        norm1: BatchNormConfig::new(cin).init(device),
                        conv1: conv(cin, mid, 1, 1, 1, kaiming_normal(false), device),
                        norm2: BatchNormConfig::new(mid).init(device),
                        conv2: conv(mid, self.growth_rate, 3, 1, 1, kaiming_normal(false), device),
                        relu: Act::new(ActKind::Relu),
                    }
                })
                .collect();
            blocks.push(DenseBlock { layers });
            c += n * self.growth_rate;
            if b + 1 < self.block_config.len() {
                transitions.push(Transition {
                    norm: BatchNormConfig::new(c).init(device),
                    relu: Act::new(ActKind::Relu),
                    conv: conv(c, c / 2, 1, 1, 1, kaiming_normal(false), device),
                    pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                });
                c /= 2;
            }
        }
        let mut classifier = LinearConfig::new(c, self.num_classes).init(device);
        classifier.bias = Some(Param::from_tensor(Tensor::zeros([self.num_classes], device)));
        DenseNet {
            conv0: conv(self.in_channels, self.num_init_features, 7, 2, 1, kaiming_normal(false), device),
            norm0: BatchNormConfig::new(self.num_init_features).init(device),
            relu: Act::new(ActKind::Relu),
            pool0: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
            transitions,
            norm5: BatchNormConfig::new(c).init(device),
            classifier,
        }
    }
}

/// A dense layer: BN-ReLU-1x1 conv (to `bn_size * growth` channels), BN-ReLU-3x3 conv (to
/// `growth` channels).
///
/// - input: `[N, C, H, W]` (the concatenated features); output: `[N, growth, H, W]`
/// - PyTorch: `torchvision.models.densenet._DenseLayer` (`norm1`, `relu1`, `conv1`, `norm2`,
///   `relu2`, `conv2`).
#[derive(Module, Debug)]
pub struct DenseLayer {
    /// Norm of the concatenated input.
    pub norm1: BatchNorm,
    /// 1x1 bottleneck conv.
    pub conv1: Conv2d,
    /// Norm after the bottleneck.
    pub norm2: BatchNorm,
    /// 3x3 conv producing the new features.
    pub conv2: Conv2d,
    /// The ReLU (`relu1`, `relu2`).
    pub relu: Act,
}

impl DenseLayer {
    /// The new features.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv1.forward(self.relu.forward(self.norm1.forward(x)));
        self.conv2.forward(self.relu.forward(self.norm2.forward(x)))
    }
}

impl Trace for DenseLayer {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "norm1", &self.norm1, x)?;
        let x = trace_in(t, "relu1", &self.relu, x)?;
        let x = trace_in(t, "conv1", &self.conv1, x)?;
        let x = trace_in(t, "norm2", &self.norm2, x)?;
        let x = trace_in(t, "relu2", &self.relu, x)?;
        trace_in(t, "conv2", &self.conv2, x)
    }
}

/// A dense block: `[N, C, H, W] -> [N, C + layers * growth, H, W]`.
///
/// - PyTorch: `torchvision.models.densenet._DenseBlock` (children `denselayer1`, ...).
#[derive(Module, Debug)]
pub struct DenseBlock {
    /// The dense layers.
    pub layers: Vec<DenseLayer>,
}

impl DenseBlock {
    /// The input concatenated with every layer's output.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        let mut new: Option<Tensor<4>> = None;
        for layer in &self.layers {
            if let Some(n) = new.take() {
                x = Tensor::cat(vec![x, n], 1);
            }
            new = Some(layer.forward(x.clone()));
        }
        match new {
            Some(n) => Tensor::cat(vec![x, n], 1),
            None => x,
        }
    }
}

impl Trace for DenseBlock {
    fn trace(&self, t: &mut dyn Tracer, mut x: Node) -> Result<Node, TraceError> {
        let mut new: Option<Node> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let pending = new.take();
            let (input, out) = scoped(t, &format!("denselayer{}", i + 1), |t| {
                let input = match pending {
                    Some(n) => ops::concat(t, Some("cat"), &[&x, &n], 1)?,
                    None => x.clone(),
                };
                let out = layer.trace(t, input.clone())?;
                Ok::<_, TraceError>((input, out))
            })?;
            x = input;
            new = Some(out);
        }
        match new {
            Some(n) => ops::concat(t, Some("cat"), &[&x, &n], 1),
            None => Ok(x),
        }
    }
}

/// A transition between dense blocks: BN-ReLU-1x1 conv (halving the channels), 2x2 average pool.
///
/// - PyTorch: `torchvision.models.densenet._Transition` (`norm`, `relu`, `conv`, `pool`).
#[derive(Module, Debug)]
pub struct Transition {
    /// Norm.
    pub norm: BatchNorm,
    /// ReLU.
    pub relu: Act,
    /// 1x1 conv, `C -> C / 2`.
    pub conv: Conv2d,
    /// 2x2 stride-2 average pool.
    pub pool: AvgPool2d,
}

impl Transition {
    /// Applies the transition.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(self.conv.forward(self.relu.forward(self.norm.forward(x))))
    }
}

impl Trace for Transition {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "norm", &self.norm, x)?;
        let x = trace_in(t, "relu", &self.relu, x)?;
        let x = trace_in(t, "conv", &self.conv, x)?;
        trace_in(t, "pool", &self.pool, x)
    }
}

/// DenseNet.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.densenet121()`: `features.conv0/norm0/relu0/pool0`,
///   `features.denseblock{b}.denselayer{i}`, `features.transition{b}`, `features.norm5`, then
///   ReLU, global average pool and `classifier`.
#[derive(Module, Debug)]
pub struct DenseNet {
    /// `features.conv0`: 7x7 stride-2 conv.
    pub conv0: Conv2d,
    /// `features.norm0`.
    pub norm0: BatchNorm,
    /// `features.relu0` and the ReLU after `norm5`.
    pub relu: Act,
    /// `features.pool0`: 3x3 stride-2 max pool.
    pub pool0: MaxPool2d,
    /// `features.denseblock1..4`.
    pub blocks: Vec<DenseBlock>,
    /// `features.transition1..3`.
    pub transitions: Vec<Transition>,
    /// `features.norm5`.
    pub norm5: BatchNorm,
    /// Linear classifier.
    pub classifier: Linear,
}

impl DenseNet {
    /// The feature extractor (`features`, ending with `norm5`, before the final ReLU).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = kiln_kernels::max_pool2d(&self.pool0, self.relu.forward(self.norm0.forward(self.conv0.forward(x))));
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if let Some(tr) = self.transitions.get(i) {
                x = tr.forward(x);
            }
        }
        self.norm5.forward(x)
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.features(x));
        let x = adaptive_avg_pool2d(x, [1, 1]).flatten::<2>(1, 3);
        self.classifier.forward(x)
    }
}

impl Trace for DenseNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = scoped(t, "features", |t| {
            let x = trace_in(t, "conv0", &self.conv0, x)?;
            let x = trace_in(t, "norm0", &self.norm0, x)?;
            let x = trace_in(t, "relu0", &self.relu, x)?;
            let mut x = trace_in(t, "pool0", &self.pool0, x)?;
            for (i, block) in self.blocks.iter().enumerate() {
                x = trace_in(t, &format!("denseblock{}", i + 1), block, x)?;
                if let Some(tr) = self.transitions.get(i) {
                    x = trace_in(t, &format!("transition{}", i + 1), tr, x)?;
                }
            }
            trace_in(t, "norm5", &self.norm5, x)
        })?;
        let x = trace_in(t, "relu", &self.relu, x)?;
        let x = ops::global_avg_pool(t, Some("avgpool"), &x, true)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        trace_in(t, "classifier", &self.classifier, x)
    }
}

impl crate::Hooks for DenseNet {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(DenseNet::features(self, x))
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
        let mut n = fold_bn_keep(&mut self.conv0, &mut self.norm0);
        for l in self.blocks.iter_mut().flat_map(|b| b.layers.iter_mut()) {
            n += fold_bn_keep(&mut l.conv1, &mut l.norm2);
        }
        n
    }
}

crate::zoo_model!(DenseNet, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "densenet121".into(),
        aliases: vec!["densenet".into()],
        summary: "DenseNet-121, torchvision densenet121 (growth 32, blocks 6/12/24/16)".into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            o.no_width("densenet121")?;
            Ok(Box::new(DenseNetConfig::new().with_num_classes(o.num_classes).with_in_channels(o.in_channels).init(d)))
        },
    }]
}
