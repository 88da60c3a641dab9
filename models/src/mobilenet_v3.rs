//! MobileNetV3 large and small (Howard et al. 2019), identical to torchvision's
//! `mobilenet_v3_large` / `mobilenet_v3_small`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{
    Act, ActKind, ConvBnAct, ConvBnActConfig, InvertedResidual, InvertedResidualConfig, IrStyle, make_divisible,
};

use crate::registry::{ModelEntry, ModelOptions};

/// One row of torchvision's `bneck_conf` table: input channels, kernel, expanded channels,
/// output channels, squeeze-excite, hard-swish (else ReLU), stride, dilation.
#[derive(Clone, Copy, Debug)]
pub struct Bneck(pub usize, pub usize, pub usize, pub usize, pub bool, pub bool, pub usize, pub usize);

const RE: bool = false;
const HS: bool = true;

/// `mobilenet_v3_large`'s table (before the width multiplier).
pub const LARGE: [Bneck; 15] = [
    Bneck(16, 3, 16, 16, false, RE, 1, 1),
    Bneck(16, 3, 64, 24, false, RE, 2, 1),
    Bneck(24, 3, 72, 24, false, RE, 1, 1),
    Bneck(24, 5, 72, 40, true, RE, 2, 1),
    Bneck(40, 5, 120, 40, true, RE, 1, 1),
    Bneck(40, 5, 120, 40, true, RE, 1, 1),
    Bneck(40, 3, 240, 80, false, HS, 2, 1),
    Bneck(80, 3, 200, 80, false, HS, 1, 1),
    Bneck(80, 3, 184, 80, false, HS, 1, 1),
    Bneck(80, 3, 184, 80, false, HS, 1, 1),
    Bneck(80, 3, 480, 112, true, HS, 1, 1),
    Bneck(112, 3, 672, 112, true, HS, 1, 1),
    Bneck(112, 5, 672, 160, true, HS, 2, 1),
    Bneck(160, 5, 960, 160, true, HS, 1, 1),
    Bneck(160, 5, 960, 160, true, HS, 1, 1),
];

/// `mobilenet_v3_small`'s table.
pub const SMALL: [Bneck; 11] = [
    Bneck(16, 3, 16, 16, true, RE, 2, 1),
    Bneck(16, 3, 72, 24, false, RE, 2, 1),
    Bneck(24, 3, 88, 24, false, RE, 1, 1),
    Bneck(24, 5, 96, 40, true, HS, 2, 1),
    Bneck(40, 5, 240, 40, true, HS, 1, 1),
    Bneck(40, 5, 240, 40, true, HS, 1, 1),
    Bneck(40, 5, 120, 48, true, HS, 1, 1),
    Bneck(48, 5, 144, 48, true, HS, 1, 1),
    Bneck(48, 5, 288, 96, true, HS, 2, 1),
    Bneck(96, 5, 576, 96, true, HS, 1, 1),
    Bneck(96, 5, 576, 96, true, HS, 1, 1),
];

/// Which MobileNetV3.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum V3Arch {
    /// `mobilenet_v3_large` (last channel 1280).
    Large,
    /// `mobilenet_v3_small` (last channel 1024).
    Small,
}

/// Configuration of a [`MobileNetV3`].
#[derive(Config, Debug)]
pub struct MobileNetV3Config {
    /// Large or small.
    pub arch: V3Arch,
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Width multiplier.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Classifier dropout.
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl MobileNetV3Config {
    /// Builds the network from [`LARGE`] or [`SMALL`].
    pub fn init(&self, device: &Device) -> MobileNetV3 {
        let (table, last): (&[Bneck], usize) = match self.arch {
            V3Arch::Large => (&LARGE, 1280),
            V3Arch::Small => (&SMALL, 1024),
        };
        let adjust = |c: usize| make_divisible(c as f64 * self.width_mult, 8);
        let (eps, momentum) = (0.001, 0.01);
        let cba = |cin, cout| ConvBnActConfig::new(cin, cout).with_bn_eps(eps).with_bn_momentum(momentum);
        let first = adjust(table[0].0);
        let stem = cba(self.in_channels, first).with_stride(2).with_act(ActKind::HardSwish).init(device);
        let blocks: Vec<InvertedResidual> = table
            .iter()
            .map(|&Bneck(cin, k, exp, cout, se, hs, stride, dilation)| {
                let exp = adjust(exp);
                InvertedResidualConfig::new(adjust(cin), exp, adjust(cout))
                    .with_kernel_size(k)
                    .with_stride(if dilation > 1 { 1 } else { stride })
                    .with_dilation(dilation)
                    .with_act(if hs { ActKind::HardSwish } else { ActKind::Relu })
                    .with_se_channels(se.then(|| make_divisible((exp / 4) as f64, 8)))
                    .with_se_gate(ActKind::HardSigmoid)
                    .with_bn_eps(eps)
                    .with_bn_momentum(momentum)
                    .with_style(IrStyle::V3)
                    .init(device)
            })
            .collect();
        let last_in = adjust(table[table.len() - 1].3);
        let last_out = 6 * last_in;
        let last_channel = adjust(last);
        let head = cba(last_in, last_out).with_kernel_size(1).with_act(ActKind::HardSwish).init(device);
        let init = Initializer::Normal { mean: 0.0, std: 0.01 };
        MobileNetV3 {
            stem,
            blocks,
            head,
            fc1: LinearConfig::new(last_out, last_channel).with_initializer(init.clone()).init(device),
            act: Act::new(ActKind::HardSwish),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc2: LinearConfig::new(last_channel, self.num_classes).with_initializer(init).init(device),
        }
    }
}

/// MobileNetV3 (large or small).
///
/// - input: `[N, 3, H, W]`; output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.mobilenet_v3_large` / `_small`: `features.0` = stem,
///   `features.1..` = blocks (with SE in `block.2` where the table says so), last `features` =
///   head, then `avgpool` and `classifier.0..3` (linear, hardswish, dropout, linear).
#[derive(Module, Debug)]
pub struct MobileNetV3 {
    /// `features.0`.
    pub stem: ConvBnAct,
    /// Inverted residual blocks.
    pub blocks: Vec<InvertedResidual>,
    /// Last 1x1 conv of `features`.
    pub head: ConvBnAct,
    /// `classifier.0`.
    pub fc1: Linear,
    /// `classifier.1`.
    pub act: Act,
    /// `classifier.2`.
    pub dropout: Dropout,
    /// `classifier.3`.
    pub fc2: Linear,
}

impl MobileNetV3 {
    /// The feature extractor.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(x);
        for b in &self.blocks {
            x = b.forward(x);
        }
        self.head.forward(x)
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = adaptive_avg_pool2d(self.features(x), [1, 1]).flatten::<2>(1, 3);
        let x = self.act.forward(self.fc1.forward(x));
        self.fc2.forward(self.dropout.forward(x))
    }
}

impl Trace for MobileNetV3 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = scoped(t, "features", |t| {
            let mut x = trace_in(t, "0", &self.stem, x)?;
            for (i, b) in self.blocks.iter().enumerate() {
                x = trace_in(t, &(i + 1).to_string(), b, x)?;
            }
            trace_in(t, &(self.blocks.len() + 1).to_string(), &self.head, x)
        })?;
        let x = ops::global_avg_pool(t, Some("avgpool"), &x, true)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        scoped(t, "classifier", |t| {
            let x = trace_in(t, "0", &self.fc1, x)?;
            let x = trace_in(t, "1", &self.act, x)?;
            let x = trace_in(t, "2", &self.dropout, x)?;
            trace_in(t, "3", &self.fc2, x)
        })
    }
}

/// Folding, group sync and unsharing are the blocks' own rules (`kiln_layers::hooks`).
impl crate::Hooks for MobileNetV3 {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(MobileNetV3::features(self, x))
    }

    fn fold_bn(&mut self) -> usize {
        let blocks: usize = self.blocks.iter_mut().map(|b| b.fold_bn_in_place()).sum();
        self.stem.fold_bn_in_place() + blocks + self.head.fold_bn_in_place()
    }

    fn sync_groups(&mut self) {
        self.stem.sync_groups();
        self.blocks.iter_mut().for_each(|b| b.sync_groups());
    }

    fn unshare_running_stats(&mut self) {
        self.stem.unshare_running_stats();
        self.blocks.iter_mut().for_each(|b| b.unshare_running_stats());
        self.head.unshare_running_stats();
    }

    fn has_dropout(&self) -> bool {
        true
    }
}

crate::zoo_model!(MobileNetV3, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    fn build(arch: V3Arch, o: &ModelOptions, d: &Device) -> MobileNetV3 {
        MobileNetV3Config::new(arch)
            .with_num_classes(o.num_classes)
            .with_width_mult(o.width_mult)
            .with_in_channels(o.in_channels)
            .with_dropout(o.dropout.unwrap_or(0.2))
            .init(d)
    }
    vec![
        ModelEntry {
            name: "mobilenet_v3_large".into(),
            aliases: vec![],
            summary: "MobileNetV3-Large, torchvision mobilenet_v3_large (SE, h-swish)".into(),
            default_input: [3, 224, 224],
            num_classes: 1000,
            build: |o, d| Ok(Box::new(build(V3Arch::Large, o, d))),
        },
        ModelEntry {
            name: "mobilenet_v3_small".into(),
            aliases: vec![],
            summary: "MobileNetV3-Small, torchvision mobilenet_v3_small (SE, h-swish)".into(),
            default_input: [3, 224, 224],
            num_classes: 1000,
            build: |o, d| Ok(Box::new(build(V3Arch::Small, o, d))),
        },
    ]
}
