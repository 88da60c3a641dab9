//! EfficientNet-B0 (Tan & Le 2019), identical to `torchvision.models.efficientnet_b0`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};
use kiln_layers::trace::{Node, OpCost, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind, ConvBnAct, ConvBnActConfig, SqueezeExcite, make_divisible};

use crate::registry::{ModelEntry, ModelOptions};

/// One row of torchvision's `inverted_residual_setting` (`MBConvConfig`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MbConvSetting {
    /// Expansion ratio of the 1x1 expansion.
    pub expand_ratio: f64,
    /// Depthwise kernel.
    pub kernel: usize,
    /// Stride of the first block of the stage.
    pub stride: usize,
    /// Input channels of the first block (before the width multiplier).
    pub input_channels: usize,
    /// Output channels (before the width multiplier).
    pub out_channels: usize,
    /// Blocks in the stage (before the depth multiplier).
    pub num_layers: usize,
}

const fn mb(
    expand_ratio: f64,
    kernel: usize,
    stride: usize,
    input_channels: usize,
    out_channels: usize,
    num_layers: usize,
) -> MbConvSetting {
    MbConvSetting { expand_ratio, kernel, stride, input_channels, out_channels, num_layers }
}

/// torchvision's `_efficientnet_conf("efficientnet_b0")`: expand ratio, kernel, stride, input
/// channels, output channels, layers.
pub const EFFICIENTNET_B0_SETTING: [MbConvSetting; 7] = [
    mb(1.0, 3, 1, 32, 16, 1),
    mb(6.0, 3, 2, 16, 24, 2),
    mb(6.0, 5, 2, 24, 40, 2),
    mb(6.0, 3, 2, 40, 80, 3),
    mb(6.0, 5, 1, 80, 112, 3),
    mb(6.0, 5, 2, 112, 192, 4),
    mb(6.0, 3, 1, 192, 320, 1),
];

/// Configuration of an [`EfficientNet`] (B0 with the default multipliers).
#[derive(Config, Debug)]
pub struct EfficientNetConfig {
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Channel multiplier (`width_mult` of torchvision's `MBConvConfig`; 1.0 for B0).
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Depth multiplier (`depth_mult`; 1.0 for B0).
    #[config(default = 1.0)]
    pub depth_mult: f64,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Classifier dropout (0.2 for B0).
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Stochastic depth probability of the last block (linearly increasing from 0).
    #[config(default = 0.2)]
    pub stochastic_depth_prob: f64,
}

fn adjust_channels(channels: usize, mult: f64) -> usize {
    make_divisible(channels as f64 * mult, 8)
}

impl EfficientNetConfig {
    /// Builds the network from [`EFFICIENTNET_B0_SETTING`], as torchvision's `EfficientNet` does.
    pub fn init(&self, device: &Device) -> EfficientNet {
        let setting: Vec<MbConvSetting> = EFFICIENTNET_B0_SETTING
            .iter()
            .map(|s| MbConvSetting {
                input_channels: adjust_channels(s.input_channels, self.width_mult),
                out_channels: adjust_channels(s.out_channels, self.width_mult),
                num_layers: (s.num_layers as f64 * self.depth_mult).ceil() as usize,
                ..*s
            })
            .collect();
        let stem = ConvBnActConfig::new(self.in_channels, setting[0].input_channels)
            .with_stride(2)
            .with_act(ActKind::Swish)
            .init(device);
        let total: usize = setting.iter().map(|s| s.num_layers).sum();
        let mut block_id = 0;
        let mut stages = vec![];
        for s in &setting {
            let mut stage = vec![];
            for i in 0..s.num_layers {
                let (input, stride) = if i == 0 { (s.input_channels, s.stride) } else { (s.out_channels, 1) };
                let sd = self.stochastic_depth_prob * block_id as f64 / total as f64;
                stage.push(MBConv::new(input, s.out_channels, s.expand_ratio, s.kernel, stride, sd, device));
                block_id += 1;
            }
            stages.push(stage);
        }
        let last_in = setting[setting.len() - 1].out_channels;
        let last_out = 4 * last_in;
        let head = ConvBnActConfig::pointwise(last_in, last_out).with_act(ActKind::Swish).init(device);
        let r = 1.0 / (self.num_classes as f64).sqrt();
        let classifier = LinearConfig::new(last_out, self.num_classes)
            .with_initializer(Initializer::Uniform { min: -r, max: r })
            .init(device);
        EfficientNet {
            stem,
            stages,
            head,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier,
        }
    }
}

/// torchvision's `StochasticDepth(p, "row")`: during training (autodiff device) each sample's
/// residual branch is dropped with probability `p` and the kept ones scaled by `1 / (1 - p)`;
/// the identity in inference.
#[derive(Module, Debug)]
pub struct StochasticDepth {
    /// Drop probability.
    pub p: f64,
}

impl StochasticDepth {
    /// Applies the op.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.p <= 0.0 || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.p;
        if keep <= 0.0 {
            return x.zeros_like();
        }
        let n = x.dims()[0];
        let noise = Tensor::<4>::random([n, 1, 1, 1], Distribution::Bernoulli(keep), &x.device()).div_scalar(keep);
        x * noise
    }
}

impl Trace for StochasticDepth {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let out = x.shape.clone();
        Ok(t.op(None, &[&x], out, OpCost::new("StochasticDepth").detail(format!("p={:.4}, row", self.p))))
    }
}

/// torchvision's EfficientNet `MBConv`: `block` = [1x1 expansion (when the ratio is not 1)],
/// depthwise kxk, `SqueezeExcitation` (SiLU, sigmoid gate, `max(1, input_channels // 4)`
/// squeeze channels), linear 1x1 projection; `stochastic_depth` + residual add when the shapes
/// allow. All activations SiLU, batch norm eps 1e-5.
///
/// - input: `[N, C_in, H, W]`; output: `[N, C_out, H/s, W/s]`
/// - PyTorch: `torchvision.models.efficientnet.MBConv` (children `block.{0..3}`,
///   `stochastic_depth`).
#[derive(Module, Debug)]
pub struct MBConv {
    /// 1x1 expansion + BN + SiLU (absent when the expanded width equals the input).
    pub expand: Option<ConvBnAct>,
    /// Depthwise kxk + BN + SiLU.
    pub depthwise: ConvBnAct,
    /// Squeeze-and-excitation.
    pub se: SqueezeExcite,
    /// 1x1 projection + BN (no activation).
    pub project: ConvBnAct,
    /// `stochastic_depth` (used with the residual only).
    pub stochastic_depth: StochasticDepth,
    /// Whether the residual applies (stride 1, same channels).
    pub use_res: bool,
}

impl MBConv {
    /// `MBConv(MBConvConfig(expand_ratio, kernel, stride, input, out, _), sd_prob, BatchNorm2d)`.
    pub fn new(
        input: usize,
        out: usize,
        expand_ratio: f64,
        kernel: usize,
        stride: usize,
        sd_prob: f64,
        device: &Device,
    ) -> Self {
        let expanded = adjust_channels(input, expand_ratio);
        let expand = (expanded != input)
            .then(|| ConvBnActConfig::pointwise(input, expanded).with_act(ActKind::Swish).init(device));
        let depthwise = ConvBnActConfig::depthwise(expanded, kernel, stride).with_act(ActKind::Swish).init(device);
        let squeeze = (input / 4).max(1);
        let init = Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true };
        let se = SqueezeExcite {
            fc1: Conv2dConfig::new([expanded, squeeze], [1, 1]).with_initializer(init.clone()).init(device),
            activation: Act::new(ActKind::Swish),
            fc2: Conv2dConfig::new([squeeze, expanded], [1, 1]).with_initializer(init).init(device),
            scale_activation: Act::new(ActKind::Sigmoid),
        };
        let project = ConvBnActConfig::pointwise(expanded, out).with_act(ActKind::Identity).init(device);
        Self {
            expand,
            depthwise,
            se,
            project,
            stochastic_depth: StochasticDepth { p: sd_prob },
            use_res: stride == 1 && input == out,
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(e) = &self.expand {
            y = e.forward(y);
        }
        let y = self.project.forward(self.se.forward(self.depthwise.forward(y)));
        if self.use_res { self.stochastic_depth.forward(y) + x } else { y }
    }
}

impl Trace for MBConv {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let y = scoped(t, "block", |t| {
            let mut i = 0;
            let mut y = x.clone();
            if let Some(e) = &self.expand {
                y = trace_in(t, "0", e, y)?;
                i = 1;
            }
            y = trace_in(t, &i.to_string(), &self.depthwise, y)?;
            y = trace_in(t, &(i + 1).to_string(), &self.se, y)?;
            trace_in(t, &(i + 2).to_string(), &self.project, y)
        })?;
        if !self.use_res {
            return Ok(y);
        }
        let y = trace_in(t, "stochastic_depth", &self.stochastic_depth, y)?;
        ops::add(t, Some("add"), &[&y, &x])
    }
}

/// EfficientNet-B0.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.efficientnet_b0()`: `features.0` is [`Self::stem`],
///   `features.1..=7` are [`Self::stages`] (`features.{i}.{j}` MBConv blocks), `features.8` is
///   [`Self::head`], then `avgpool`, `classifier.0` (dropout), `classifier.1` (linear).
#[derive(Module, Debug)]
pub struct EfficientNet {
    /// `features.0`: 3x3 stride-2 conv + BN + SiLU.
    pub stem: ConvBnAct,
    /// `features.1..=7`.
    pub stages: Vec<Vec<MBConv>>,
    /// `features.8`: 1x1 conv to 1280 + BN + SiLU.
    pub head: ConvBnAct,
    /// `avgpool`.
    pub avgpool: AdaptiveAvgPool2d,
    /// `classifier.0`.
    pub dropout: Dropout,
    /// `classifier.1`.
    pub classifier: Linear,
}

impl EfficientNet {
    /// The feature extractor (`features`): `[N, 3, H, W] -> [N, 1280, H/32, W/32]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(x);
        for stage in &self.stages {
            for b in stage {
                x = b.forward(x);
            }
        }
        self.head.forward(x)
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.avgpool.forward(self.features(x)).flatten::<2>(1, 3);
        self.classifier.forward(self.dropout.forward(x))
    }
}

impl Trace for EfficientNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = scoped(t, "features", |t| {
            let mut x = trace_in(t, "0", &self.stem, x)?;
            for (i, stage) in self.stages.iter().enumerate() {
                x = trace_in(t, &(i + 1).to_string(), stage, x)?;
            }
            trace_in(t, &(self.stages.len() + 1).to_string(), &self.head, x)
        })?;
        let x = trace_in(t, "avgpool", &self.avgpool, x)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        scoped(t, "classifier", |t| {
            let x = trace_in(t, "0", &self.dropout, x)?;
            trace_in(t, "1", &self.classifier, x)
        })
    }
}

impl crate::Hooks for EfficientNet {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(EfficientNet::features(self, x))
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = self.stem.fold_bn_in_place() + self.head.fold_bn_in_place();
        for b in self.stages.iter_mut().flatten() {
            n += b.expand.as_mut().map_or(0, |e| e.fold_bn_in_place());
            n += b.depthwise.fold_bn_in_place() + b.project.fold_bn_in_place();
        }
        n
    }

    fn sync_groups(&mut self) {
        self.stages.iter_mut().flatten().for_each(|b| b.depthwise.sync_groups());
    }

    fn unshare_running_stats(&mut self) {
        self.stem.unshare_running_stats();
        self.head.unshare_running_stats();
        for b in self.stages.iter_mut().flatten() {
            if let Some(e) = &mut b.expand {
                e.unshare_running_stats();
            }
            b.depthwise.unshare_running_stats();
            b.project.unshare_running_stats();
        }
    }

    fn has_dropout(&self) -> bool {
        true
    }
}

crate::zoo_model!(EfficientNet, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "efficientnet_b0".into(),
        aliases: vec![],
        summary: "EfficientNet-B0, torchvision efficientnet_b0".into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            o.no_width("efficientnet_b0")?;
            Ok(Box::new(
                EfficientNetConfig::new()
                    .with_num_classes(o.num_classes)
                    .with_in_channels(o.in_channels)
                    .with_dropout(o.dropout.unwrap_or(0.2))
                    .init(d),
            ))
        },
    }]
}
