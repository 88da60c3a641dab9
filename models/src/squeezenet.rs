//! SqueezeNet 1.1 (Iandola et al. 2016), identical to `torchvision.models.squeezenet1_1`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind};

use crate::common::conv_with;
use crate::registry::{ModelEntry, ModelOptions};

/// torchvision's SqueezeNet 1.1 `features` after the stem: Fire modules as
/// `(squeeze, expand1x1, expand3x3)` channels, each stage preceded by a 3x3 stride-2 max pool
/// (ceil mode).
pub const FIRE_STAGES_1_1: [&[(usize, usize, usize)]; 3] = [
    &[(16, 64, 64), (16, 64, 64)],
    &[(32, 128, 128), (32, 128, 128)],
    &[(48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)],
];

/// Configuration of a [`SqueezeNet`].
#[derive(Config, Debug)]
pub struct SqueezeNetConfig {
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Dropout before the final convolution.
    #[config(default = 0.5)]
    pub dropout: f64,
}

/// torchvision's SqueezeNet init: Kaiming-uniform (fan-in, ReLU gain); its convs carry a zero bias.
fn kaiming_uniform() -> Option<Initializer> {
    Some(Initializer::KaimingUniform { gain: 2f64.sqrt(), fan_out_only: false })
}

impl SqueezeNetConfig {
    /// Builds the network from [`FIRE_STAGES_1_1`].
    pub fn init(&self, device: &Device) -> SqueezeNet {
        let mut cin = 64;
        let stages = FIRE_STAGES_1_1
            .iter()
            .map(|fires| {
                fires
                    .iter()
                    .map(|&(s, e1, e3)| {
                        let f = Fire {
                            squeeze: conv_with(cin, s, 1, 1, 0, 1, true, kaiming_uniform(), device),
                            expand1x1: conv_with(s, e1, 1, 1, 0, 1, true, kaiming_uniform(), device),
                            expand3x3: conv_with(s, e3, 3, 1, 1, 1, true, kaiming_uniform(), device),
                            relu: Act::new(ActKind::Relu),
                        };
                        cin = e1 + e3;
                        f
                    })
                    .collect()
            })
            .collect();
        SqueezeNet {
            stem: conv_with(self.in_channels, 64, 3, 2, 0, 1, true, kaiming_uniform(), device),
            relu: Act::new(ActKind::Relu),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_ceil_mode(true).init(),
            stages,
            dropout: DropoutConfig::new(self.dropout).init(),
            final_conv: conv_with(
                cin,
                self.num_classes,
                1,
                1,
                0,
                1,
                true,
                Some(Initializer::Normal { mean: 0.0, std: 0.01 }),
                device,
            ),
        }
    }
}

/// A Fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated.
///
/// - input: `[N, C, H, W]`; output: `[N, e1 + e3, H, W]`
/// - PyTorch: `torchvision.models.squeezenet.Fire` (`squeeze`, `squeeze_activation`,
///   `expand1x1`, `expand1x1_activation`, `expand3x3`, `expand3x3_activation`).
#[derive(Module, Debug)]
pub struct Fire {
    /// 1x1 squeeze conv.
    pub squeeze: Conv2d,
    /// 1x1 expand conv.
    pub expand1x1: Conv2d,
    /// 3x3 expand conv (padding 1).
    pub expand3x3: Conv2d,
    /// The ReLU after each conv.
    pub relu: Act,
}

impl Fire {
    /// Applies the module.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.relu.forward(self.squeeze.forward(x));
        let a = self.relu.forward(self.expand1x1.forward(x.clone()));
        let b = self.relu.forward(self.expand3x3.forward(x));
        Tensor::cat(vec![a, b], 1)
    }
}

impl Trace for Fire {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "squeeze", &self.squeeze, x)?;
        let x = trace_in(t, "squeeze_activation", &self.relu, x)?;
        let a = trace_in(t, "expand1x1", &self.expand1x1, x.clone())?;
        let a = trace_in(t, "expand1x1_activation", &self.relu, a)?;
        let b = trace_in(t, "expand3x3", &self.expand3x3, x)?;
        let b = trace_in(t, "expand3x3_activation", &self.relu, b)?;
        ops::concat(t, Some("cat"), &[&a, &b], 1)
    }
}

/// SqueezeNet 1.1.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `torchvision.models.squeezenet1_1()`: `features.0` (3x3 stride-2 conv),
///   `features.1` (ReLU), `features.2/5/8` (max pools, ceil mode), `features.3/4/6/7/9..12`
///   (Fire), `classifier.0` (dropout), `classifier.1` (1x1 conv to the classes), `classifier.2`
///   (ReLU), `classifier.3` (global average pool), then flatten.
#[derive(Module, Debug)]
pub struct SqueezeNet {
    /// `features.0`: 3x3 stride-2 conv, 3 -> 64.
    pub stem: Conv2d,
    /// `features.1` and `classifier.2`.
    pub relu: Act,
    /// 3x3 stride-2 max pool, ceil mode (`features.2/5/8`).
    pub pool: MaxPool2d,
    /// Fire modules per stage (each stage starts with [`Self::pool`]).
    pub stages: Vec<Vec<Fire>>,
    /// `classifier.0`.
    pub dropout: Dropout,
    /// `classifier.1`: 1x1 conv, 512 -> num_classes.
    pub final_conv: Conv2d,
}

impl SqueezeNet {
    /// The feature extractor (`features`): `[N, 3, 224, 224] -> [N, 512, 13, 13]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.relu.forward(self.stem.forward(x));
        for stage in &self.stages {
            x = kiln_kernels::max_pool2d(&self.pool, x);
            for f in stage {
                x = f.forward(x);
            }
        }
        x
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.final_conv.forward(self.dropout.forward(self.features(x)));
        adaptive_avg_pool2d(self.relu.forward(x), [1, 1]).flatten::<2>(1, 3)
    }

    /// Traces `features`.
    pub fn trace_features(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "features", |t| {
            let x = trace_in(t, "0", &self.stem, x)?;
            let mut x = trace_in(t, "1", &self.relu, x)?;
            let mut index = 2;
            for stage in &self.stages {
                x = trace_in(t, &index.to_string(), &self.pool, x)?;
                index += 1;
                for f in stage {
                    x = trace_in(t, &index.to_string(), f, x)?;
                    index += 1;
                }
            }
            Ok(x)
        })
    }
}

impl Trace for SqueezeNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = self.trace_features(t, x)?;
        let x = scoped(t, "classifier", |t| {
            let x = trace_in(t, "0", &self.dropout, x)?;
            let x = trace_in(t, "1", &self.final_conv, x)?;
            let x = trace_in(t, "2", &self.relu, x)?;
            ops::global_avg_pool(t, Some("3"), &x, true)
        })?;
        ops::flatten(t, Some("flatten"), &x)
    }
}

impl crate::Hooks for SqueezeNet {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(SqueezeNet::features(self, x))
    }
}

crate::zoo_model!(SqueezeNet, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "squeezenet1_1".into(),
        aliases: vec!["squeezenet".into()],
        summary: "SqueezeNet 1.1, torchvision squeezenet1_1 (Fire modules, conv classifier)".into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            o.no_width("squeezenet1_1")?;
            Ok(Box::new(
                SqueezeNetConfig::new().with_num_classes(o.num_classes).with_in_channels(o.in_channels).init(d),
            ))
        },
    }]
}
