//! ShuffleNetV2 (Ma et al. 2018), identical to `torchvision.models.shufflenet_v2_x{0_5,1_0,1_5,2_0}`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind, ChannelShuffle, ChannelShuffleConfig, fold_bn_keep, sync_depthwise, unshare_bn};

use crate::registry::{ModelEntry, ModelOptions, ZooError};

/// torchvision's `stages_repeats`: units in `stage2`, `stage3`, `stage4`.
pub const STAGES_REPEATS: [usize; 3] = [4, 8, 4];

/// torchvision's `stages_out_channels` per width: `conv1`, `stage2`, `stage3`, `stage4`, `conv5`.
pub const STAGES_OUT_CHANNELS: [(f64, [usize; 5]); 4] = [
    (0.5, [24, 48, 96, 192, 1024]),
    (1.0, [24, 116, 232, 464, 1024]),
    (1.5, [24, 176, 352, 704, 1024]),
    (2.0, [24, 244, 488, 976, 2048]),
];

/// The `stages_out_channels` row of a torchvision width (0.5, 1.0, 1.5 or 2.0).
pub fn stages_out_channels(width: f64) -> Option<[usize; 5]> {
    STAGES_OUT_CHANNELS.iter().find(|(w, _)| (w - width).abs() < 1e-9).map(|(_, c)| *c)
}

/// Configuration of a [`ShuffleNetV2`].
#[derive(Config, Debug)]
pub struct ShuffleNetV2Config {
    /// `stages_out_channels` (see [`STAGES_OUT_CHANNELS`]).
    pub stages_out_channels: [usize; 5],
    /// `stages_repeats`.
    #[config(default = "STAGES_REPEATS")]
    pub stages_repeats: [usize; 3],
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
}

use crate::common::{bn, conv};

impl ShuffleNetV2Config {
    /// The torchvision model of width `width` (0.5, 1.0, 1.5 or 2.0).
    pub fn for_width(width: f64) -> Result<Self, ZooError> {
        stages_out_channels(width).map(Self::new).ok_or_else(|| {
            ZooError::InvalidOption(format!("shufflenet_v2 exists in widths 0.5, 1.0, 1.5 and 2.0 (got {width})"))
        })
    }

    /// Builds the network (PyTorch's default initialization, as torchvision does).
    pub fn init(&self, device: &Device) -> ShuffleNetV2 {
        let ch = self.stages_out_channels;
        let conv1 = ConvBnRelu {
            conv: conv(self.in_channels, ch[0], 3, 2, 1, None, device),
            bn: bn(ch[0], device),
            relu: Act::new(ActKind::Relu),
        };
        let maxpool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let mut input = ch[0];
        let mut stages = vec![];
        for (repeats, &output) in self.stages_repeats.iter().zip(&ch[1..4]) {
            let mut units = vec![ShuffleUnit::new(input, output, 2, device)];
            for _ in 1..*repeats {
                units.push(ShuffleUnit::new(output, output, 1, device));
            }
            stages.push(units);
            input = output;
        }
        let conv5 = ConvBnRelu {
            conv: conv(input, ch[4], 1, 1, 1, None, device),
            bn: bn(ch[4], device),
            relu: Act::new(ActKind::Relu),
        };
        let fc = LinearConfig::new(ch[4], self.num_classes).init(device);
        ShuffleNetV2 { conv1, maxpool, stages, conv5, fc }
    }
}

/// `nn.Sequential(Conv2d, BatchNorm2d, ReLU)`: children `0`, `1`, `2` (torchvision's `conv1`, `conv5`).
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    /// `0`.
    pub conv: Conv2d,
    /// `1`.
    pub bn: BatchNorm,
    /// `2`.
    pub relu: Act,
}

impl ConvBnRelu {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        kiln_layers::bn_act(&self.bn, &self.relu, kiln_kernels::conv2d(&self.conv, x))
    }
}

impl Trace for ConvBnRelu {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "0", &self.conv, x)?;
        let x = trace_in(t, "1", &self.bn, x)?;
        trace_in(t, "2", &self.relu, x)
    }
}

/// torchvision's `branch1` (stride > 1 only): depthwise 3x3 (`0`), BN (`1`), 1x1 (`2`), BN (`3`), ReLU (`4`).
#[derive(Module, Debug)]
pub struct Branch1 {
    /// `0`: depthwise 3x3, stride 2.
    pub dw: Conv2d,
    /// `1`.
    pub dw_bn: BatchNorm,
    /// `2`: 1x1 to half the output channels.
    pub pw: Conv2d,
    /// `3`.
    pub pw_bn: BatchNorm,
    /// `4`.
    pub relu: Act,
}

impl Branch1 {
    /// Applies the branch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = kiln_kernels::batch_norm(&self.dw_bn, kiln_kernels::conv2d(&self.dw, x));
        kiln_layers::bn_act(&self.pw_bn, &self.relu, kiln_kernels::conv2d(&self.pw, x))
    }
}

impl Trace for Branch1 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "0", &self.dw, x)?;
        let x = trace_in(t, "1", &self.dw_bn, x)?;
        let x = trace_in(t, "2", &self.pw, x)?;
        let x = trace_in(t, "3", &self.pw_bn, x)?;
        trace_in(t, "4", &self.relu, x)
    }
}

/// torchvision's `branch2`: 1x1 (`0`), BN (`1`), ReLU (`2`), depthwise 3x3 (`3`), BN (`4`),
/// 1x1 (`5`), BN (`6`), ReLU (`7`).
#[derive(Module, Debug)]
pub struct Branch2 {
    /// `0`.
    pub pw1: Conv2d,
    /// `1`.
    pub pw1_bn: BatchNorm,
    /// `2`.
    pub relu1: Act,
    /// `3`: depthwise 3x3 with the unit's stride.
    pub dw: Conv2d,
    /// `4`.
    pub dw_bn: BatchNorm,
    /// `5`.
    pub pw2: Conv2d,
    /// `6`.
    pub pw2_bn: BatchNorm,
    /// `7`.
    pub relu2: Act,
}

impl Branch2 {
    /// Applies the branch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = kiln_layers::bn_act(&self.pw1_bn, &self.relu1, kiln_kernels::conv2d(&self.pw1, x));
        let x = kiln_kernels::batch_norm(&self.dw_bn, kiln_kernels::conv2d(&self.dw, x));
        kiln_layers::bn_act(&self.pw2_bn, &self.relu2, kiln_kernels::conv2d(&self.pw2, x))
    }
}

impl Trace for Branch2 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "0", &self.pw1, x)?;
        let x = trace_in(t, "1", &self.pw1_bn, x)?;
        let x = trace_in(t, "2", &self.relu1, x)?;
        let x = trace_in(t, "3", &self.dw, x)?;
        let x = trace_in(t, "4", &self.dw_bn, x)?;
        let x = trace_in(t, "5", &self.pw2, x)?;
        let x = trace_in(t, "6", &self.pw2_bn, x)?;
        trace_in(t, "7", &self.relu2, x)
    }
}

/// The ShuffleNetV2 unit (torchvision's `shufflenetv2.InvertedResidual`).
///
/// - stride 1: `x1, x2 = x.chunk(2, dim=1)`; `cat(x1, branch2(x2))`; channel shuffle (2 groups).
/// - stride 2: `cat(branch1(x), branch2(x))`; channel shuffle (2 groups).
/// - input `[N, inp, H, W]`; output `[N, oup, H/s, W/s]`.
#[derive(Module, Debug)]
pub struct ShuffleUnit {
    /// `branch1` (an empty `nn.Sequential` at stride 1).
    pub branch1: Option<Branch1>,
    /// `branch2`.
    pub branch2: Branch2,
    /// `channel_shuffle(out, 2)`.
    pub shuffle: ChannelShuffle,
    /// Stride of the depthwise convolutions.
    pub stride: usize,
}

impl ShuffleUnit {
    /// torchvision's `InvertedResidual(inp, oup, stride)`.
    pub fn new(inp: usize, oup: usize, stride: usize, device: &Device) -> Self {
        let bf = oup / 2;
        assert!(stride > 1 || inp == bf * 2, "stride-1 ShuffleNetV2 unit needs inp == oup // 2 * 2 ({inp} vs {oup})");
        let branch1 = (stride > 1).then(|| Branch1 {
            dw: conv(inp, inp, 3, stride, inp, None, device),
            dw_bn: bn(inp, device),
            pw: conv(inp, bf, 1, 1, 1, None, device),
            pw_bn: bn(bf, device),
            relu: Act::new(ActKind::Relu),
        });
        let b2_in = if stride > 1 { inp } else { bf };
        let branch2 = Branch2 {
            pw1: conv(b2_in, bf, 1, 1, 1, None, device),
            pw1_bn: bn(bf, device),
            relu1: Act::new(ActKind::Relu),
            dw: conv(bf, bf, 3, stride, bf, None, device),
            dw_bn: bn(bf, device),
            pw2: conv(bf, bf, 1, 1, 1, None, device),
            pw2_bn: bn(bf, device),
            relu2: Act::new(ActKind::Relu),
        };
        Self { branch1, branch2, shuffle: ChannelShuffleConfig::new(2).init(), stride }
    }

    /// Applies the unit.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = match &self.branch1 {
            None => {
                let half = x.dims()[1] / 2;
                let x1 = x.clone().narrow(1, 0, half);
                let x2 = x.narrow(1, half, half);
                Tensor::cat(vec![x1, self.branch2.forward(x2)], 1)
            }
            Some(b1) => Tensor::cat(vec![b1.forward(x.clone()), self.branch2.forward(x)], 1),
        };
        self.shuffle.forward(out)
    }
}

impl Trace for ShuffleUnit {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("ShuffleUnit", 4)?;
        let out = match &self.branch1 {
            None => {
                // `x.chunk(2, dim=1)`.
                let c = x.shape[1];
                if c % 2 != 0 {
                    return Err(TraceError::Invalid {
                        op: "ShuffleUnit".into(),
                        reason: format!("chunk(2) of {c} channels"),
                    });
                }
                let x1 = ops::narrow(t, Some("chunk.0"), &x, 1, 0, c / 2)?;
                let x2 = ops::narrow(t, Some("chunk.1"), &x, 1, c / 2, c / 2)?;
                let y2 = trace_in(t, "branch2", &self.branch2, x2)?;
                ops::concat(t, Some("cat"), &[&x1, &y2], 1)?
            }
            Some(b1) => {
                let y1 = trace_in(t, "branch1", b1, x.clone())?;
                let y2 = trace_in(t, "branch2", &self.branch2, x)?;
                ops::concat(t, Some("cat"), &[&y1, &y2], 1)?
            }
        };
        trace_in(t, "channel_shuffle", &self.shuffle, out)
    }
}

/// ShuffleNetV2.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.shufflenet_v2_x1_0()` (and x0_5, x1_5, x2_0): `conv1.{0,1}`,
///   `maxpool`, `stage2`/`stage3`/`stage4` (units with `branch1` / `branch2`), `conv5.{0,1}`,
///   `x.mean([2, 3])`, `fc`.
#[derive(Module, Debug)]
pub struct ShuffleNetV2 {
    /// `conv1`: 3x3 stride-2 conv + BN + ReLU.
    pub conv1: ConvBnRelu,
    /// `maxpool`: 3x3 stride 2 padding 1.
    pub maxpool: MaxPool2d,
    /// `stage2`, `stage3`, `stage4`.
    pub stages: Vec<Vec<ShuffleUnit>>,
    /// `conv5`: 1x1 conv + BN + ReLU.
    pub conv5: ConvBnRelu,
    /// `fc`.
    pub fc: Linear,
}

impl ShuffleNetV2 {
    /// The feature extractor: `[N, 3, H, W] -> [N, C5, H/32, W/32]` (output of `conv5`).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = kiln_kernels::max_pool2d(&self.maxpool, self.conv1.forward(x));
        for stage in &self.stages {
            for u in stage {
                x = u.forward(x);
            }
        }
        self.conv5.forward(x)
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.features(x);
        let [n, c, _, _] = x.dims();
        let x = x.mean_dim(3).mean_dim(2).reshape([n, c]);
        self.fc.forward(x)
    }
}

impl Trace for ShuffleNetV2 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let mut x = trace_in(t, "conv1", &self.conv1, x)?;
        x = trace_in(t, "maxpool", &self.maxpool, x)?;
        for (s, stage) in self.stages.iter().enumerate() {
            x = scoped(t, &format!("stage{}", s + 2), |t| stage.trace(t, x))?;
        }
        x = trace_in(t, "conv5", &self.conv5, x)?;
        let x = ops::global_avg_pool(t, Some("mean"), &x, false)?;
        trace_in(t, "fc", &self.fc, x)
    }
}

impl crate::Hooks for ShuffleNetV2 {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(ShuffleNetV2::features(self, x))
    }

    fn sync_groups(&mut self) {
        for u in self.stages.iter_mut().flatten() {
            if let Some(b) = &mut u.branch1 {
                sync_depthwise(&mut b.dw);
            }
            sync_depthwise(&mut u.branch2.dw);
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
        let mut n = fold_bn_keep(&mut self.conv1.conv, &mut self.conv1.bn);
        for u in self.stages.iter_mut().flatten() {
            if let Some(b) = &mut u.branch1 {
                n += fold_bn_keep(&mut b.dw, &mut b.dw_bn) + fold_bn_keep(&mut b.pw, &mut b.pw_bn);
            }
            let b = &mut u.branch2;
            n += fold_bn_keep(&mut b.pw1, &mut b.pw1_bn) + fold_bn_keep(&mut b.dw, &mut b.dw_bn);
            n += fold_bn_keep(&mut b.pw2, &mut b.pw2_bn);
        }
        n + fold_bn_keep(&mut self.conv5.conv, &mut self.conv5.bn)
    }
}

crate::zoo_model!(ShuffleNetV2, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    fn entry(name: &str, width: &str, aliases: &[&str], build: crate::registry::BuildModel) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            summary: format!("ShuffleNetV2 {width}x, torchvision {name}"),
            default_input: [3, 224, 224],
            num_classes: 1000,
            build,
        }
    }
    fn build(name: &str, width: f64, o: &ModelOptions, d: &Device) -> Result<Box<dyn crate::ZooModel>, ZooError> {
        o.no_width(name)?;
        Ok(Box::new(
            ShuffleNetV2Config::for_width(width)?
                .with_num_classes(o.num_classes)
                .with_in_channels(o.in_channels)
                .init(d),
        ))
    }
    vec![
        entry("shufflenet_v2_x0_5", "0.5", &[], |o, d| build("shufflenet_v2_x0_5", 0.5, o, d)),
        entry("shufflenet_v2_x1_0", "1.0", &["shufflenet"], |o, d| build("shufflenet_v2_x1_0", 1.0, o, d)),
        entry("shufflenet_v2_x1_5", "1.5", &[], |o, d| build("shufflenet_v2_x1_5", 1.5, o, d)),
        entry("shufflenet_v2_x2_0", "2.0", &[], |o, d| build("shufflenet_v2_x2_0", 2.0, o, d)),
    ]
}
