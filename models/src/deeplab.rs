//! DeepLabV3 (Chen et al. 2017) on a MobileNetV2 trunk with output stride 16: torchvision's
//! `deeplabv3_mobilenet_v3_large` recipe with the MobileNetV2 of
//! [`crate::mobilenet_v2`] as the backbone.
//!
//! - Backbone (`backbone.N`): MobileNetV2's `features.0..=17` (stem and the 17 inverted residual
//!   blocks of [`INVERTED_RESIDUAL_SETTING`]); the final 1x1 conv to 1280 channels
//!   (`features.18`) is dropped, as in the official TensorFlow DeepLab MobileNetV2 backbone, so
//!   the head sees `320 x width` channels. Once the running stride reaches `output_stride`, later
//!   stride-2 stages run at stride 1 and every block from there on has its depthwise dilation
//!   multiplied by 2 (torchvision's `dilated=True` for MobileNetV3: all blocks of the last stage
//!   get dilation 2 at output stride 16).
//! - Head (`classifier`, torchvision's `DeepLabHead`): `classifier.0` is `ASPP` — `convs.0` a
//!   1x1 conv-BN-ReLU, `convs.1..=3` dilated 3x3 conv-BN-ReLU at rates 6 / 12 / 18,
//!   `convs.4` image pooling (`1` conv, `2` BN, `3` ReLU after a global average pool, upsampled
//!   back bilinearly), concatenated and projected (`project.0..2` conv-BN-ReLU, `project.3`
//!   dropout) — then `classifier.1..3` a 3x3 conv-BN-ReLU and `classifier.4` a 1x1 conv to the
//!   classes.
//! - The scores are upsampled bilinearly (`align_corners=False`) to the input size.
//!
//! The PyTorch twin: `DeepLabV3(IntermediateLayerGetter(mobilenet_v2(width_mult=w).features[:-1],
//! {"17": "out"}), DeepLabHead(make_divisible(320 * w, 8), num_classes, (6, 12, 18)), None)`
//! with the backbone's last two stages dilated and the ASPP width set to `aspp_channels`
//! (torchvision: 256).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{
    ActKind, ConvBnAct, ConvBnActConfig, InvertedResidual, InvertedResidualConfig, IrStyle, Upsample, UpsampleConfig,
    UpsampleMode, make_divisible,
};

use crate::mobilenet_v2::INVERTED_RESIDUAL_SETTING;
use crate::registry::{ModelEntry, ModelOptions};
use crate::unet::trace_conv_bn_act_as;

/// DeepLabV3's atrous rates at output stride 16.
pub const ASPP_RATES: [usize; 3] = [6, 12, 18];

/// Configuration of a [`DeepLabMobileNetV2`].
#[derive(Config, Debug)]
pub struct DeepLabMobileNetV2Config {
    /// Output classes (channels of the score map).
    #[config(default = 21)]
    pub num_classes: usize,
    /// MobileNetV2 width multiplier of the backbone.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Output stride of the backbone: 8, 16 or 32 (32 = no dilation).
    #[config(default = 16)]
    pub output_stride: usize,
    /// Channels of every ASPP branch and of the head (torchvision: 256).
    #[config(default = 128)]
    pub aspp_channels: usize,
    /// Dilation rates of the 3x3 ASPP branches.
    #[config(default = "ASPP_RATES.to_vec()")]
    pub atrous_rates: Vec<usize>,
    /// Dropout after the ASPP projection (torchvision: 0.5).
    #[config(default = 0.5)]
    pub dropout: f64,
}

impl DeepLabMobileNetV2Config {
    /// Builds the MobileNetV2 trunk: stem, inverted residual blocks, and its output channels.
    ///
    /// # Panics
    /// If `output_stride` is not 8, 16 or 32.
    pub fn init_backbone(&self, device: &Device) -> (ConvBnAct, Vec<InvertedResidual>, usize) {
        assert!(
            [8, 16, 32].contains(&self.output_stride),
            "output_stride must be 8, 16 or 32, got {}",
            self.output_stride
        );
        let round = 8;
        let mut input_channel = make_divisible(32.0 * self.width_mult, round);
        let stem =
            ConvBnActConfig::new(self.in_channels, input_channel).with_stride(2).with_act(ActKind::Relu6).init(device);
        let (mut current_stride, mut dilation) = (2, 1);
        let mut blocks = vec![];
        for [t, c, n, s] in INVERTED_RESIDUAL_SETTING {
            let output_channel = make_divisible(c as f64 * self.width_mult, round);
            let stride = if s > 1 && current_stride >= self.output_stride {
                dilation *= s;
                1
            } else {
                current_stride *= s;
                s
            };
            for i in 0..n {
                let hidden = (input_channel as f64 * t as f64).round() as usize;
                blocks.push(
                    InvertedResidualConfig::new(input_channel, hidden, output_channel)
                        .with_stride(if i == 0 { stride } else { 1 })
                        .with_dilation(dilation)
                        .with_style(IrStyle::V2)
                        .init(device),
                );
                input_channel = output_channel;
            }
        }
        (stem, blocks, input_channel)
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> DeepLabMobileNetV2 {
        let (stem, blocks, c_in) = self.init_backbone(device);
        let a = self.aspp_channels;
        let mut convs = vec![ConvBnActConfig::pointwise(c_in, a).init(device)];
        for &rate in &self.atrous_rates {
            convs.push(ConvBnActConfig::new(c_in, a).with_dilation(rate).init(device));
        }
        let pooling = AsppPooling {
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            conv: ConvBnActConfig::pointwise(c_in, a).init(device),
        };
        let project = ConvBnActConfig::pointwise((convs.len() + 1) * a, a).init(device);
        let aspp = Aspp { convs, pooling, project, dropout: DropoutConfig::new(self.dropout).init() };
        DeepLabMobileNetV2 {
            stem,
            blocks,
            aspp,
            head: ConvBnActConfig::new(a, a).init(device),
            classifier: Conv2dConfig::new([a, self.num_classes], [1, 1]).init(device),
        }
    }
}

fn bilinear_to(h: usize, w: usize) -> Upsample {
    UpsampleConfig::new(UpsampleMode::Bilinear).with_size(Some(vec![h, w])).init()
}

/// ASPP's image-pooling branch: global average pool, 1x1 conv-BN-ReLU, bilinear upsampling back
/// to the input's size.
///
/// - input: `[N, C, H, W]`; output: `[N, C_out, H, W]`
/// - PyTorch: torchvision's `ASPPPooling` (children `0` pool, `1` conv, `2` BN, `3` ReLU).
#[derive(Module, Debug)]
pub struct AsppPooling {
    /// `0`.
    pub pool: AdaptiveAvgPool2d,
    /// `1`, `2`, `3`.
    pub conv: ConvBnAct,
}

impl AsppPooling {
    /// Applies the branch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        bilinear_to(h, w).forward(self.conv.forward(self.pool.forward(x)))
    }
}

impl Trace for AsppPooling {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("ASPPPooling", 4)?;
        let (h, w) = (x.shape[2], x.shape[3]);
        let y = trace_in(t, "0", &self.pool, x)?;
        let y = trace_conv_bn_act_as(t, &self.conv, ["1", "2", "3"], y)?;
        trace_in(t, "upsample", &bilinear_to(h, w), y)
    }
}

/// Atrous spatial pyramid pooling.
///
/// - input: `[N, C, H, W]`; output: `[N, C_out, H, W]`
/// - PyTorch: torchvision's `ASPP` (children `convs.0..`, `project.0..3`).
#[derive(Module, Debug)]
pub struct Aspp {
    /// `convs.0` (1x1) and `convs.1..` (dilated 3x3).
    pub convs: Vec<ConvBnAct>,
    /// `convs.{len(convs)}`: image pooling.
    pub pooling: AsppPooling,
    /// `project.0..2`: 1x1 conv-BN-ReLU on the concatenated branches.
    pub project: ConvBnAct,
    /// `project.3`.
    pub dropout: Dropout,
}

impl Aspp {
    /// Applies the module.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut branches: Vec<Tensor<4>> = self.convs.iter().map(|c| c.forward(x.clone())).collect();
        branches.push(self.pooling.forward(x));
        self.dropout.forward(self.project.forward(Tensor::cat(branches, 1)))
    }
}

impl Trace for Aspp {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let branches = scoped(t, "convs", |t| -> Result<Vec<Node>, TraceError> {
            let mut out = vec![];
            for (i, c) in self.convs.iter().enumerate() {
                out.push(trace_in(t, &i.to_string(), c, x.clone())?);
            }
            out.push(trace_in(t, &self.convs.len().to_string(), &self.pooling, x.clone())?);
            Ok(out)
        })?;
        let y = ops::concat(t, Some("cat"), &branches.iter().collect::<Vec<_>>(), 1)?;
        scoped(t, "project", |t| {
            let y = self.project.trace(t, y)?;
            trace_in(t, "3", &self.dropout, y)
        })
    }
}

/// DeepLabV3 with a MobileNetV2 backbone at output stride 16.
///
/// - input: `[N, C, H, W]` (any size >= 1x1); output: `[N, num_classes, H, W]`
/// - PyTorch: see the module docs. Rows: `backbone.0` (stem), `backbone.1..=17` (blocks, with
///   torchvision's MobileNetV2 child names), `classifier.0` (ASPP), `classifier.1..3` (3x3
///   conv-BN-ReLU), `classifier.4` (1x1 conv), `upsample`.
#[derive(Module, Debug)]
pub struct DeepLabMobileNetV2 {
    /// `backbone.0`: 3x3 stride-2 conv-BN-ReLU6.
    pub stem: ConvBnAct,
    /// `backbone.1..`: inverted residual blocks (the last ones dilated).
    pub blocks: Vec<InvertedResidual>,
    /// `classifier.0`.
    pub aspp: Aspp,
    /// `classifier.1` (conv), `classifier.2` (BN), `classifier.3` (ReLU).
    pub head: ConvBnAct,
    /// `classifier.4`: 1x1 conv to class scores (with bias).
    pub classifier: Conv2d,
}

impl DeepLabMobileNetV2 {
    /// The backbone's feature map, `[N, 320 x width, H/16, W/16]` at output stride 16.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(x);
        for b in &self.blocks {
            x = b.forward(x);
        }
        x
    }

    /// Per-pixel class scores at the input's resolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let y = self.aspp.forward(self.features(x));
        let y = self.classifier.forward(self.head.forward(y));
        bilinear_to(h, w).forward(y)
    }
}

impl Trace for DeepLabMobileNetV2 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("DeepLabV3", 4)?;
        let (h, w) = (x.shape[2], x.shape[3]);
        let y = scoped(t, "backbone", |t| {
            let mut y = trace_in(t, "0", &self.stem, x)?;
            for (i, b) in self.blocks.iter().enumerate() {
                y = trace_in(t, &(i + 1).to_string(), b, y)?;
            }
            Ok(y)
        })?;
        let y = scoped(t, "classifier", |t| {
            let y = trace_in(t, "0", &self.aspp, y)?;
            let y = trace_conv_bn_act_as(t, &self.head, ["1", "2", "3"], y)?;
            trace_in(t, "4", &self.classifier, y)
        })?;
        trace_in(t, "upsample", &bilinear_to(h, w), y)
    }
}

impl crate::Hooks for DeepLabMobileNetV2 {
    fn has_dropout(&self) -> bool {
        true
    }
}

crate::zoo_model!(DeepLabMobileNetV2, map);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "deeplab_mobilenet_v2".into(),
        aliases: vec!["deeplabv3_mobilenet_v2".into()],
        summary:
            "DeepLabV3 (ASPP 6/12/18 + image pooling, 128 ch) on a dilated MobileNetV2, output stride 16 (width_mult)"
                .into(),
        default_input: [3, 64, 64],
        num_classes: 21,
        build: |o: &ModelOptions, d| {
            Ok(Box::new(
                DeepLabMobileNetV2Config::new()
                    .with_num_classes(o.num_classes)
                    .with_width_mult(o.width_mult)
                    .with_in_channels(o.in_channels)
                    .with_dropout(o.dropout.unwrap_or(0.5))
                    .init(d),
            ))
        },
    }]
}
