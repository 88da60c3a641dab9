//! A kiln plugin, written the way a third party would: nothing in kiln's core crates knows about
//! it. It defines
//!
//! - [`BlurPool2d`], an op Burn lacks: anti-aliased downsampling (Zhang, "Making Convolutional
//!   Networks Shift-Invariant Again", 2019) — a fixed 3x3 binomial blur applied per channel with
//!   stride 2 (PyTorch twin: `timm.layers.BlurPool2d(channels, filt_size=3, stride=2)`, which
//!   reflect-pads; this one zero-pads);
//! - [`BlurNet`], a small classifier that downsamples with it;
//!
//! and [`register`]s both in a [`Registry`]. The `kiln-custom-op` binary then runs kiln's own
//! CLI (`kiln_cli::main_with`) over that registry: `analyze`, `run`, `train` and `compress
//! blurnet` go through exactly the code paths they take for a built-in model (the test in
//! `tests/cli.rs` drives them all).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::{adaptive_avg_pool2d, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_layers::trace::{Node, OpCost, Spatial, Trace, TraceError, Tracer, cost, ops, scoped, trace_in};
use kiln_layers::{ConvBnAct, ConvBnActConfig};
use kiln_models::{Hooks, ModelEntry, OpEntry, Registry, ZooError};

/// Anti-aliased stride-2 downsampling: depthwise conv with the fixed filter
/// `[1 2 1]^T [1 2 1] / 16`, padding 1.
///
/// - input: `[N, C, H, W]`; output: `[N, C, ceil(H/2), ceil(W/2)]`
/// - no parameters (the filter is a constant).
#[derive(Module, Debug)]
pub struct BlurPool2d {
    /// Channels.
    pub channels: usize,
}

impl BlurPool2d {
    /// The op for `channels` channels.
    pub fn new(channels: usize) -> Self {
        Self { channels }
    }

    fn filter(&self, device: &Device) -> Tensor<4> {
        let k = [1.0f32, 2.0, 1.0];
        let mut w = Vec::with_capacity(self.channels * 9);
        for _ in 0..self.channels {
            for a in k {
                for b in k {
                    w.push(a * b / 16.0);
                }
            }
        }
        Tensor::from_data(TensorData::new(w, [self.channels, 1, 3, 3]), device)
    }

    /// Applies the blur-pool.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let w = self.filter(&x.device());
        conv2d(x, w, None, ConvOptions::new([2, 2], [1, 1], [1, 1], self.channels))
    }
}

/// The op's cost, written once, beside the op: a depthwise 3x3 stride-2 window with 9 MACs per
/// output element and no trainable parameters.
impl Trace for BlurPool2d {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("BlurPool2d", 4)?;
        x.expect_channels("BlurPool2d", self.channels)?;
        let h = cost::window_out("BlurPool2d", x.shape[2], 3, 2, 2, 1, false)?;
        let w = cost::window_out("BlurPool2d", x.shape[3], 3, 2, 2, 1, false)?;
        let out = vec![x.shape[0], self.channels, h, w];
        let macs = out.iter().map(|&d| d as u64).product::<u64>() * 9;
        let c = OpCost::new("BlurPool2d")
            .detail(format!("{} ch, binomial 3x3 s2", self.channels))
            .macs(macs)
            .flops(2 * macs)
            .spatial(Spatial::Window {
                kernel: vec![3, 3],
                stride: vec![2, 2],
                padding: vec![1, 1],
                dilation: vec![1, 1],
            });
        Ok(t.op(None, &[&x], out, c))
    }
}

/// A small classifier that downsamples with [`BlurPool2d`] instead of strided convs:
/// `conv(3->16) blur conv(16->32) blur conv(32->64) avgpool linear`.
#[derive(Module, Debug)]
pub struct BlurNet {
    /// Conv blocks.
    pub convs: Vec<ConvBnAct>,
    /// Blur-pools after the first two convs.
    pub pools: Vec<BlurPool2d>,
    /// Classifier.
    pub fc: Linear,
}

impl BlurNet {
    /// A new network.
    pub fn new(in_channels: usize, num_classes: usize, device: &Device) -> Self {
        let chans = [in_channels, 16, 32, 64];
        Self {
            convs: (0..3).map(|i| ConvBnActConfig::new(chans[i], chans[i + 1]).init(device)).collect(),
            pools: vec![BlurPool2d::new(16), BlurPool2d::new(32)],
            fc: LinearConfig::new(64, num_classes).init(device),
        }
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = Hooks::features(self, x).expect("BlurNet has a feature map");
        self.fc.forward(adaptive_avg_pool2d(x, [1, 1]).flatten::<2>(1, 3))
    }
}

impl Trace for BlurNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let mut x = x;
        for (i, c) in self.convs.iter().enumerate() {
            x = scoped(t, "convs", |t| trace_in(t, &i.to_string(), c, x))?;
            if let Some(p) = self.pools.get(i) {
                x = scoped(t, "pools", |t| trace_in(t, &i.to_string(), p, x))?;
            }
        }
        let x = ops::global_avg_pool(t, Some("avgpool"), &x, true)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        trace_in(t, "fc", &self.fc, x)
    }
}

/// What training and compression ask of the model, delegated to its `ConvBnAct` blocks (the
/// blur-pools have no parameters and no norms). With this and [`Trace`], `train`, `compress`,
/// `run` and `analyze` take `blurnet` as they take a built-in model.
impl Hooks for BlurNet {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        let mut x = x;
        for (i, c) in self.convs.iter().enumerate() {
            x = c.forward(x);
            if let Some(p) = self.pools.get(i) {
                x = p.forward(x);
            }
        }
        Some(x)
    }

    fn fold_bn(&mut self) -> usize {
        self.convs.iter_mut().map(|c| c.fold_bn_in_place()).sum()
    }

    fn unshare_running_stats(&mut self) {
        self.convs.iter_mut().for_each(|c| c.unshare_running_stats());
    }
}

kiln_models::zoo_model!(BlurNet, logits);

/// Registers the plugin's model (`blurnet`) and op (`blur_pool`).
pub fn register(registry: &mut Registry) -> Result<(), ZooError> {
    registry.register(ModelEntry {
        name: "blurnet".into(),
        aliases: vec![],
        summary: "plugin example: small CNN with anti-aliased BlurPool2d downsampling".into(),
        default_input: [3, 32, 32],
        num_classes: 10,
        build: |o, d| {
            o.no_width("blurnet")?;
            Ok(Box::new(BlurNet::new(o.in_channels, o.num_classes, d)))
        },
    })?;
    registry.register_op(OpEntry {
        name: "blur_pool".into(),
        summary: "anti-aliased stride-2 downsampling, 16 channels".into(),
        pytorch: "timm.layers.BlurPool2d".into(),
        example_input: [16, 32, 32],
        build: |_| Box::new(BlurPool2d::new(16)),
    })
}

/// kiln's built-in registry plus this plugin.
pub fn registry() -> Registry {
    let mut r = Registry::builtin();
    register(&mut r).expect("plugin names are new");
    r
}
