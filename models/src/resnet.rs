//! ResNet (He et al. 2015), identical to `torchvision.models.resnet18` / `resnet34` / `resnet50`
//! (ResNet v1.5: in a bottleneck the stride sits on the 3x3 convolution).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, trace_in};
use kiln_layers::{Act, ActKind, fold_bn_keep, unshare_bn};

use crate::common::{conv, kaiming_normal};
use crate::registry::{ModelEntry, ModelOptions};

/// Blocks per stage (`layers` argument of torchvision's `ResNet`).
pub const LAYERS_18: [usize; 4] = [2, 2, 2, 2];
/// Blocks per stage of ResNet-34 and ResNet-50.
pub const LAYERS_34_50: [usize; 4] = [3, 4, 6, 3];
/// Base width of each stage (`planes`), and its stride.
pub const STAGES: [(usize, usize); 4] = [(64, 1), (128, 2), (256, 2), (512, 2)];

/// Which residual block a [`ResNet`] is made of.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum BlockKind {
    /// Two 3x3 convolutions (expansion 1): ResNet-18/34.
    Basic,
    /// 1x1 reduce, 3x3, 1x1 expand (expansion 4): ResNet-50/101/152.
    Bottleneck,
}

impl BlockKind {
    /// Output channels / `planes`.
    pub fn expansion(&self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Residual block type.
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
}

impl ResNetConfig {
    /// ResNet-18.
    pub fn resnet18() -> Self {
        Self::new(BlockKind::Basic, LAYERS_18)
    }
    /// ResNet-34.
    pub fn resnet34() -> Self {
        Self::new(BlockKind::Basic, LAYERS_34_50)
    }
    /// ResNet-50.
    pub fn resnet50() -> Self {
        Self::new(BlockKind::Bottleneck, LAYERS_34_50)
    }

    /// Builds the network from [`STAGES`] and `layers`, with torchvision's initialization
    /// (convolutions Kaiming-normal fan-out, batch norms ones / zeros, `fc` PyTorch's default).
    pub fn init(&self, device: &Device) -> ResNet {
        let expansion = self.block.expansion();
        let mut inplanes = 64;
        let stages = STAGES
            .iter()
            .zip(self.layers)
            .map(|(&(planes, stride), n)| {
                (0..n)
                    .map(|i| {
                        let s = if i == 0 { stride } else { 1 };
                        let out = planes * expansion;
                        let downsample = (s != 1 || inplanes != out).then(|| Downsample {
                            conv: conv(inplanes, out, 1, s, 1, kaiming_normal(true), device),
                            bn: BatchNormConfig::new(out).init(device),
                        });
                        let block = match self.block {
                            BlockKind::Basic => ResBlock {
                                conv1: conv(inplanes, planes, 3, s, 1, kaiming_normal(true), device),
                                bn1: BatchNormConfig::new(planes).init(device),
                                conv2: conv(planes, planes, 3, 1, 1, kaiming_normal(true), device),
                                bn2: BatchNormConfig::new(planes).init(device),
                                conv3: None,
                                bn3: None,
                                relu: Act::new(ActKind::Relu),
                                downsample,
                            },
                            BlockKind::Bottleneck => ResBlock {
                                conv1: conv(inplanes, planes, 1, 1, 1, kaiming_normal(true), device),
                                bn1: BatchNormConfig::new(planes).init(device),
                                conv2: conv(planes, planes, 3, s, 1, kaiming_normal(true), device),
                                bn2: BatchNormConfig::new(planes).init(device),
                                conv3: Some(conv(planes, out, 1, 1, 1, kaiming_normal(true), device)),
                                bn3: Some(BatchNormConfig::new(out).init(device)),
                                relu: Act::new(ActKind::Relu),
                                downsample,
                            },
                        };
                        inplanes = out;
                        block
                    })
                    .collect()
            })
            .collect();
        ResNet {
            conv1: conv(self.in_channels, 64, 7, 2, 1, kaiming_normal(true), device),
            bn1: BatchNormConfig::new(64).init(device),
            relu: Act::new(ActKind::Relu),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            stages,
            fc: LinearConfig::new(512 * expansion, self.num_classes).init(device),
        }
    }
}

/// The projection shortcut: 1x1 conv (with the block's stride) + batch norm.
///
/// - PyTorch: a block's `downsample` `nn.Sequential`, children `0` (conv) and `1` (bn).
#[derive(Module, Debug)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv2d,
    /// `downsample.1`.
    pub bn: BatchNorm,
}

impl Downsample {
    /// Applies conv + bn.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(kiln_kernels::conv2d(&self.conv, x))
    }
}

impl Trace for Downsample {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "0", &self.conv, x)?;
        trace_in(t, "1", &self.bn, x)
    }
}

/// A residual block: torchvision's `BasicBlock` (`conv3` / `bn3` absent) or `Bottleneck`.
///
/// - input: `[N, C_in, H, W]`; output: `[N, planes * expansion, H / stride, W / stride]`
/// - PyTorch: `torchvision.models.resnet.BasicBlock` / `Bottleneck` (same child names).
#[derive(Module, Debug)]
pub struct ResBlock {
    /// 3x3 (basic, strided) or 1x1 reduce (bottleneck).
    pub conv1: Conv2d,
    /// Norm after `conv1`.
    pub bn1: BatchNorm,
    /// 3x3 (strided in a bottleneck).
    pub conv2: Conv2d,
    /// Norm after `conv2`.
    pub bn2: BatchNorm,
    /// 1x1 expand (bottleneck only).
    pub conv3: Option<Conv2d>,
    /// Norm after `conv3` (bottleneck only).
    pub bn3: Option<BatchNorm>,
    /// The ReLU (after each norm but the last, and after the addition).
    pub relu: Act,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<Downsample>,
}

impl ResBlock {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = self.relu.forward(self.bn1.forward(kiln_kernels::conv2d(&self.conv1, x.clone())));
        out = self.bn2.forward(kiln_kernels::conv2d(&self.conv2, out));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = bn3.forward(kiln_kernels::conv2d(conv3, self.relu.forward(out)));
        }
        let identity = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        self.relu.forward(out + identity)
    }
}

impl Trace for ResBlock {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let input = x.clone();
        let mut out = trace_in(t, "conv1", &self.conv1, x)?;
        out = trace_in(t, "bn1", &self.bn1, out)?;
        out = trace_in(t, "relu", &self.relu, out)?;
        out = trace_in(t, "conv2", &self.conv2, out)?;
        out = trace_in(t, "bn2", &self.bn2, out)?;
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = trace_in(t, "relu", &self.relu, out)?;
            out = trace_in(t, "conv3", conv3, out)?;
            out = trace_in(t, "bn3", bn3, out)?;
        }
        let identity = match &self.downsample {
            Some(d) => trace_in(t, "downsample", d, input)?,
            None => input,
        };
        let out = ops::add(t, Some("add"), &[&out, &identity])?;
        trace_in(t, "relu", &self.relu, out)
    }
}

/// ResNet.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.resnet18/34/50()`: `conv1`, `bn1`, `relu`, `maxpool`,
///   `layer1..4` (= [`Self::stages`]), `avgpool`, `fc`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// 7x7 stride-2 stem conv.
    pub conv1: Conv2d,
    /// Stem norm.
    pub bn1: BatchNorm,
    /// Stem ReLU.
    pub relu: Act,
    /// 3x3 stride-2 max pool.
    pub maxpool: MaxPool2d,
    /// `layer1` .. `layer4`.
    pub stages: Vec<Vec<ResBlock>>,
    /// Linear classifier.
    pub fc: Linear,
}

impl ResNet {
    /// The feature extractor: `[N, 3, H, W] -> [N, 512 * expansion, H/32, W/32]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = kiln_kernels::max_pool2d(
            &self.maxpool,
            self.relu.forward(self.bn1.forward(kiln_kernels::conv2d(&self.conv1, x))),
        );
        for stage in &self.stages {
            for b in stage {
                x = b.forward(x);
            }
        }
        x
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = adaptive_avg_pool2d(self.features(x), [1, 1]).flatten::<2>(1, 3);
        self.fc.forward(x)
    }
}

impl Trace for ResNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "conv1", &self.conv1, x)?;
        let x = trace_in(t, "bn1", &self.bn1, x)?;
        let x = trace_in(t, "relu", &self.relu, x)?;
        let mut x = trace_in(t, "maxpool", &self.maxpool, x)?;
        for (i, stage) in self.stages.iter().enumerate() {
            x = trace_in(t, &format!("layer{}", i + 1), stage, x)?;
        }
        let x = ops::global_avg_pool(t, Some("avgpool"), &x, true)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        trace_in(t, "fc", &self.fc, x)
    }
}

impl crate::Hooks for ResNet {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(ResNet::features(self, x))
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
        let mut n = fold_bn_keep(&mut self.conv1, &mut self.bn1);
        for b in self.stages.iter_mut().flatten() {
            n += fold_bn_keep(&mut b.conv1, &mut b.bn1) + fold_bn_keep(&mut b.conv2, &mut b.bn2);
            if let (Some(c), Some(bn)) = (&mut b.conv3, &mut b.bn3) {
                n += fold_bn_keep(c, bn);
            }
            if let Some(d) = &mut b.downsample {
                n += fold_bn_keep(&mut d.conv, &mut d.bn);
            }
        }
        n
    }
}

crate::zoo_model!(ResNet, logits);

fn entry(name: &str, aliases: &[&str], summary: &str, build: crate::registry::BuildModel) -> ModelEntry {
    ModelEntry {
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        summary: summary.into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build,
    }
}

pub(crate) fn entries() -> Vec<ModelEntry> {
    fn opts(c: ResNetConfig, o: &ModelOptions, name: &str) -> Result<ResNetConfig, crate::ZooError> {
        o.no_width(name)?;
        Ok(c.with_num_classes(o.num_classes).with_in_channels(o.in_channels))
    }
    vec![
        entry("resnet18", &["resnet"], "ResNet-18, torchvision resnet18 (BasicBlock, [2, 2, 2, 2])", |o, d| {
            Ok(Box::new(opts(ResNetConfig::resnet18(), o, "resnet18")?.init(d)))
        }),
        entry("resnet34", &[], "ResNet-34, torchvision resnet34 (BasicBlock, [3, 4, 6, 3])", |o, d| {
            Ok(Box::new(opts(ResNetConfig::resnet34(), o, "resnet34")?.init(d)))
        }),
        entry("resnet50", &[], "ResNet-50, torchvision resnet50 (Bottleneck v1.5, [3, 4, 6, 3])", |o, d| {
            Ok(Box::new(opts(ResNetConfig::resnet50(), o, "resnet50")?.init(d)))
        }),
    ]
}
