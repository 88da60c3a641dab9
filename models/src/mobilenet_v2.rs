//! MobileNetV2 (Sandler et al. 2018), identical to `torchvision.models.mobilenet_v2`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{
    ActKind, ConvBnAct, ConvBnActConfig, InvertedResidual, InvertedResidualConfig, IrStyle, make_divisible,
};

use crate::registry::{ModelEntry, ModelOptions};

/// torchvision's `inverted_residual_setting`: expansion t, channels c, repeats n, stride s.
pub const INVERTED_RESIDUAL_SETTING: [[usize; 4]; 7] =
    [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]];

/// Configuration of a [`MobileNetV2`].
#[derive(Config, Debug)]
pub struct MobileNetV2Config {
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

impl MobileNetV2Config {
    /// Builds the network from [`INVERTED_RESIDUAL_SETTING`].
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        let round = 8;
        let mut input_channel = make_divisible(32.0 * self.width_mult, round);
        let last_channel = make_divisible(1280.0 * self.width_mult.max(1.0), round);
        let stem =
            ConvBnActConfig::new(self.in_channels, input_channel).with_stride(2).with_act(ActKind::Relu6).init(device);
        let mut blocks = vec![];
        for [t, c, n, s] in INVERTED_RESIDUAL_SETTING {
            let output_channel = make_divisible(c as f64 * self.width_mult, round);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let hidden = (input_channel as f64 * t as f64).round() as usize;
                blocks.push(
                    InvertedResidualConfig::new(input_channel, hidden, output_channel)
                        .with_stride(stride)
                        .with_style(IrStyle::V2)
                        .init(device),
                );
                input_channel = output_channel;
            }
        }
        let head = ConvBnActConfig::pointwise(input_channel, last_channel).with_act(ActKind::Relu6).init(device);
        let classifier = LinearConfig::new(last_channel, self.num_classes)
            .with_initializer(Initializer::Normal { mean: 0.0, std: 0.01 })
            .init(device);
        MobileNetV2 { stem, blocks, head, dropout: DropoutConfig::new(self.dropout).init(), classifier }
    }
}

/// MobileNetV2.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.mobilenet_v2(width_mult=..., num_classes=...)`. Its
///   `features.0` is [`Self::stem`], `features.1..=17` are [`Self::blocks`], `features.18` is
///   [`Self::head`], and `classifier.0` / `classifier.1` are dropout / linear.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// `features.0`: 3x3 stride-2 conv + BN + ReLU6.
    pub stem: ConvBnAct,
    /// `features.1..`: inverted residual blocks.
    pub blocks: Vec<InvertedResidual>,
    /// Last `features` entry: 1x1 conv to 1280 (x width) channels.
    pub head: ConvBnAct,
    /// `classifier.0`.
    pub dropout: Dropout,
    /// `classifier.1`.
    pub classifier: Linear,
}

impl MobileNetV2 {
    /// The feature extractor (`features`): `[N, 3, H, W] -> [N, 1280, H/32, W/32]`.
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
        self.classifier.forward(self.dropout.forward(x))
    }

    /// Traces `features`.
    pub fn trace_features(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "features", |t| {
            let mut x = trace_in(t, "0", &self.stem, x)?;
            for (i, b) in self.blocks.iter().enumerate() {
                x = trace_in(t, &(i + 1).to_string(), b, x)?;
            }
            trace_in(t, &(self.blocks.len() + 1).to_string(), &self.head, x)
        })
    }
}

impl Trace for MobileNetV2 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = self.trace_features(t, x)?;
        let x = ops::global_avg_pool(t, Some("avgpool"), &x, true)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        scoped(t, "classifier", |t| {
            let x = trace_in(t, "0", &self.dropout, x)?;
            trace_in(t, "1", &self.classifier, x)
        })
    }
}

/// Folding, group sync and unsharing are the blocks' own rules (`kiln_layers::hooks`).
impl crate::Hooks for MobileNetV2 {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(MobileNetV2::features(self, x))
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

crate::zoo_model!(MobileNetV2, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "mobilenet_v2".into(),
        aliases: vec!["mobilenet".into()],
        summary: "MobileNetV2, torchvision mobilenet_v2 (width_mult)".into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            Ok(Box::new(
                MobileNetV2Config::new()
                    .with_num_classes(o.num_classes)
                    .with_width_mult(o.width_mult)
                    .with_in_channels(o.in_channels)
                    .with_dropout(o.dropout.unwrap_or(0.2))
                    .init(d),
            ))
        },
    }]
}
