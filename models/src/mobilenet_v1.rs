//! MobileNetV1 (Howard et al. 2017), identical to timm's `mobilenetv1_100` (EfficientNet-style
//! builder: `conv_stem`, `bn1`, `blocks.{stage}.{i}`, `global_pool`, `classifier`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, LinearConfig};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind, ConvBnActConfig, DepthwiseSeparable, DepthwiseSeparableConfig, make_divisible};

use crate::registry::{ModelEntry, ModelOptions};

/// timm's `arch_def` for MobileNetV1: per stage, (repeats, stride, channels); every block is a
/// depthwise-separable 3x3 with activation after the pointwise conv (`dsa`), no skip.
pub const STAGES: [(usize, usize, usize); 5] = [(1, 1, 64), (2, 2, 128), (2, 2, 256), (6, 2, 512), (2, 2, 1024)];

/// Configuration of a [`MobileNetV1`].
#[derive(Config, Debug)]
pub struct MobileNetV1Config {
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Channel multiplier (timm `mobilenetv1_100` is 1.0).
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
}

impl MobileNetV1Config {
    /// Builds the network from [`STAGES`].
    pub fn init(&self, device: &Device) -> MobileNetV1 {
        let round = |c: usize| make_divisible(c as f64 * self.width_mult, 8);
        let stem_size = round(32);
        let stem =
            ConvBnActConfig::new(self.in_channels, stem_size).with_stride(2).with_act(ActKind::Relu6).init(device);
        let mut cin = stem_size;
        let blocks = STAGES
            .iter()
            .map(|&(n, s, c)| {
                let cout = round(c);
                (0..n)
                    .map(|i| {
                        let b = DepthwiseSeparableConfig::new(cin, cout)
                            .with_stride(if i == 0 { s } else { 1 })
                            .with_act(ActKind::Relu6)
                            .with_pw_act(true)
                            .init(device);
                        cin = cout;
                        b
                    })
                    .collect()
            })
            .collect();
        MobileNetV1 {
            conv_stem: stem.conv,
            bn1: stem.bn.expect("norm"),
            act1: Act::new(ActKind::Relu6),
            blocks,
            classifier: LinearConfig::new(cin, self.num_classes).init(device),
        }
    }
}

/// MobileNetV1.
///
/// - input: `[N, 3, H, W]`; output: `[N, num_classes]`
/// - PyTorch: `timm.create_model("mobilenetv1_100")` (same child names).
#[derive(Module, Debug)]
pub struct MobileNetV1 {
    /// 3x3 stride-2 stem conv.
    pub conv_stem: Conv2d,
    /// Stem norm.
    pub bn1: BatchNorm,
    /// Stem activation (timm: `bn1.act`).
    pub act1: Act,
    /// Stages of depthwise-separable blocks.
    pub blocks: Vec<Vec<DepthwiseSeparable>>,
    /// Linear classifier.
    pub classifier: Linear,
}

impl MobileNetV1 {
    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.act1.forward(self.bn1.forward(self.conv_stem.forward(x)));
        for stage in &self.blocks {
            for b in stage {
                x = b.forward(x);
            }
        }
        let x = adaptive_avg_pool2d(x, [1, 1]).flatten::<2>(1, 3);
        self.classifier.forward(x)
    }
}

impl Trace for MobileNetV1 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "conv_stem", &self.conv_stem, x)?;
        let x = trace_in(t, "bn1", &self.bn1, x)?;
        let x = trace_in(t, "bn1.act", &self.act1, x)?;
        let x = trace_in(t, "blocks", &self.blocks, x)?;
        let x = scoped(t, "global_pool", |t| {
            let x = ops::global_avg_pool(t, Some("pool"), &x, true)?;
            ops::flatten(t, Some("flatten"), &x)
        })?;
        trace_in(t, "classifier", &self.classifier, x)
    }
}

impl crate::Hooks for MobileNetV1 {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        let mut x = self.act1.forward(self.bn1.forward(self.conv_stem.forward(x)));
        for b in self.blocks.iter().flatten() {
            x = b.forward(x);
        }
        Some(x)
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = kiln_layers::fold_bn_keep(&mut self.conv_stem, &mut self.bn1);
        for b in self.blocks.iter_mut().flatten() {
            n += kiln_layers::fold_bn_keep(&mut b.conv_dw, &mut b.bn1)
                + kiln_layers::fold_bn_keep(&mut b.conv_pw, &mut b.bn2);
        }
        n
    }

    fn sync_groups(&mut self) {
        self.blocks.iter_mut().flatten().for_each(|b| kiln_layers::sync_depthwise(&mut b.conv_dw));
    }

    fn unshare_running_stats(&mut self) {
        kiln_layers::unshare_bn(&mut self.bn1);
        for b in self.blocks.iter_mut().flatten() {
            kiln_layers::unshare_bn(&mut b.bn1);
            kiln_layers::unshare_bn(&mut b.bn2);
        }
    }
}

crate::zoo_model!(MobileNetV1, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "mobilenet_v1".into(),
        aliases: vec![],
        summary: "MobileNetV1, timm mobilenetv1_100 (depthwise-separable stages)".into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            Ok(Box::new(
                MobileNetV1Config::new()
                    .with_num_classes(o.num_classes)
                    .with_width_mult(o.width_mult)
                    .with_in_channels(o.in_channels)
                    .init(d),
            ))
        },
    }]
}
