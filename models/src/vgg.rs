//! VGG (Simonyan & Zisserman 2014), identical to `torchvision.models.vgg16` / `vgg16_bn`.
//!
//! torchvision builds `features` with `make_layers(cfg)`: every number in the configuration is a
//! 3x3 convolution (padding 1) followed by an optional batch norm and a ReLU, every `M` a 2x2
//! max pool; each of those is one entry of the `nn.Sequential`, so `features.N` indices depend on
//! whether batch norm is used. [`Vgg::trace`] numbers them the same way.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind};

use crate::registry::{ModelEntry, ModelOptions};

/// torchvision's configuration `"D"` (VGG-16) as stages: the convolution widths between two
/// max pools (`[64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M]`).
pub const CFG_D: [&[usize]; 5] = [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];

/// Configuration of a [`Vgg`].
#[derive(Config, Debug)]
pub struct VggConfig {
    /// Convolution widths per stage (a max pool ends each stage); [`CFG_D`] for VGG-16.
    pub stages: Vec<Vec<usize>>,
    /// Batch norm after every convolution (`vgg16_bn`).
    #[config(default = false)]
    pub batch_norm: bool,
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Classifier dropout.
    #[config(default = 0.5)]
    pub dropout: f64,
}

impl VggConfig {
    /// VGG-16 (configuration `"D"`).
    pub fn vgg16(batch_norm: bool) -> Self {
        Self::new(CFG_D.iter().map(|s| s.to_vec()).collect()).with_batch_norm(batch_norm)
    }

    /// Builds the network with torchvision's initialization: convolutions Kaiming-normal
    /// (fan-out, ReLU) with zero bias, batch norms ones / zeros, linear layers N(0, 0.01) with
    /// zero bias.
    pub fn init(&self, device: &Device) -> Vgg {
        let mut cin = self.in_channels;
        let stages = self
            .stages
            .iter()
            .map(|widths| {
                widths
                    .iter()
                    .map(|&c| {
                        let mut conv = Conv2dConfig::new([cin, c], [3, 3])
                            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                            .with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true })
                            .init(device);
                        conv.bias = Some(Param::from_tensor(Tensor::zeros([c], device)));
                        cin = c;
                        VggConv {
                            conv,
                            bn: self.batch_norm.then(|| BatchNormConfig::new(c).init(device)),
                            relu: Act::new(ActKind::Relu),
                        }
                    })
                    .collect()
            })
            .collect();
        let linear = |d_in: usize, d_out: usize| {
            let mut l = LinearConfig::new(d_in, d_out)
                .with_initializer(Initializer::Normal { mean: 0.0, std: 0.01 })
                .init(device);
            l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
            l
        };
        Vgg {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            avgpool: AdaptiveAvgPool2dConfig::new([7, 7]).init(),
            fc1: linear(cin * 7 * 7, 4096),
            fc2: linear(4096, 4096),
            fc3: linear(4096, self.num_classes),
            relu: Act::new(ActKind::Relu),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// One `make_layers` convolution: conv 3x3 (padding 1), optional batch norm, ReLU.
#[derive(Module, Debug)]
pub struct VggConv {
    /// The convolution.
    pub conv: Conv2d,
    /// The batch norm (`vgg*_bn` only).
    pub bn: Option<BatchNorm>,
    /// The ReLU.
    pub relu: Act,
}

impl VggConv {
    /// Applies conv, norm, ReLU.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        self.relu.forward(x)
    }

    /// Traces the layers as consecutive `features` entries starting at `*index`.
    fn trace_at(&self, t: &mut dyn Tracer, index: &mut usize, x: Node) -> Result<Node, TraceError> {
        let mut next = || {
            let s = index.to_string();
            *index += 1;
            s
        };
        let mut x = trace_in(t, &next(), &self.conv, x)?;
        if let Some(bn) = &self.bn {
            x = trace_in(t, &next(), bn, x)?;
        }
        trace_in(t, &next(), &self.relu, x)
    }
}

/// VGG.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet; at least 32x32); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.vgg16()` / `vgg16_bn()`: `features.N` (conv / bn / relu /
///   maxpool entries numbered as `make_layers` does), `avgpool` (`AdaptiveAvgPool2d((7, 7))`),
///   `classifier.0/3/6` linear with ReLU (`1`, `4`) and dropout (`2`, `5`) between.
#[derive(Module, Debug)]
pub struct Vgg {
    /// The convolutions of `features`, per stage.
    pub stages: Vec<Vec<VggConv>>,
    /// The 2x2 max pool ending each stage.
    pub pool: MaxPool2d,
    /// `avgpool`: adaptive average pool to 7x7.
    pub avgpool: AdaptiveAvgPool2d,
    /// `classifier.0`: `512*7*7 -> 4096`.
    pub fc1: Linear,
    /// `classifier.3`: `4096 -> 4096`.
    pub fc2: Linear,
    /// `classifier.6`: `4096 -> num_classes`.
    pub fc3: Linear,
    /// `classifier.1` / `classifier.4`.
    pub relu: Act,
    /// `classifier.2` / `classifier.5`.
    pub dropout: Dropout,
}

impl Vgg {
    /// The feature extractor (`features`): `[N, 3, H, W] -> [N, 512, H/32, W/32]`.
    pub fn features(&self, mut x: Tensor<4>) -> Tensor<4> {
        for stage in &self.stages {
            for layer in stage {
                x = layer.forward(x);
            }
            x = kiln_kernels::max_pool2d(&self.pool, x);
        }
        x
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.avgpool.forward(self.features(x)).flatten::<2>(1, 3);
        let x = self.dropout.forward(self.relu.forward(self.fc1.forward(x)));
        let x = self.dropout.forward(self.relu.forward(self.fc2.forward(x)));
        self.fc3.forward(x)
    }

    /// Traces `features`.
    pub fn trace_features(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "features", |t| {
            let mut index = 0usize;
            let mut x = x;
            for stage in &self.stages {
                for layer in stage {
                    x = layer.trace_at(t, &mut index, x)?;
                }
                x = trace_in(t, &index.to_string(), &self.pool, x)?;
                index += 1;
            }
            Ok(x)
        })
    }
}

impl Trace for Vgg {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = self.trace_features(t, x)?;
        let x = trace_in(t, "avgpool", &self.avgpool, x)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        scoped(t, "classifier", |t| {
            let x = trace_in(t, "0", &self.fc1, x)?;
            let x = trace_in(t, "1", &self.relu, x)?;
            let x = trace_in(t, "2", &self.dropout, x)?;
            let x = trace_in(t, "3", &self.fc2, x)?;
            let x = trace_in(t, "4", &self.relu, x)?;
            let x = trace_in(t, "5", &self.dropout, x)?;
            trace_in(t, "6", &self.fc3, x)
        })
    }
}

impl crate::Hooks for Vgg {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(Vgg::features(self, x))
    }

    fn fold_bn(&mut self) -> usize {
        let mut n = 0;
        for c in self.stages.iter_mut().flatten() {
            if let Some(bn) = c.bn.take() {
                c.conv = kiln_layers::fold_bn_into_conv(c.conv.clone(), &bn);
                n += 1;
            }
        }
        n
    }

    fn unshare_running_stats(&mut self) {
        self.stages.iter_mut().flatten().filter_map(|c| c.bn.as_mut()).for_each(kiln_layers::unshare_bn);
    }

    fn has_dropout(&self) -> bool {
        true
    }
}

crate::zoo_model!(Vgg, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "vgg16".into(),
            aliases: vec!["vgg".into()],
            summary: "VGG-16, torchvision vgg16 (cfg D, no batch norm)".into(),
            default_input: [3, 224, 224],
            num_classes: 1000,
            build: |o: &ModelOptions, d| {
                o.no_width("vgg16")?;
                Ok(Box::new(
                    VggConfig::vgg16(false)
                        .with_num_classes(o.num_classes)
                        .with_in_channels(o.in_channels)
                        .with_dropout(o.dropout.unwrap_or(0.5))
                        .init(d),
                ))
            },
        },
        ModelEntry {
            name: "vgg16_bn".into(),
            aliases: vec![],
            summary: "VGG-16 with batch norm, torchvision vgg16_bn".into(),
            default_input: [3, 224, 224],
            num_classes: 1000,
            build: |o: &ModelOptions, d| {
                o.no_width("vgg16_bn")?;
                Ok(Box::new(
                    VggConfig::vgg16(true)
                        .with_num_classes(o.num_classes)
                        .with_in_channels(o.in_channels)
                        .with_dropout(o.dropout.unwrap_or(0.5))
                        .init(d),
                ))
            },
        },
    ]
}
