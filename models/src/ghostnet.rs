//! GhostNet (Han et al. 2020), identical to timm's `ghostnet_100` (timm 1.0.31, GhostNet v1;
//! `width` = [`ModelOptions::width_mult`], e.g. `ghostnet_050` / `ghostnet_130`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind, ConvBnAct, make_divisible, sync_depthwise, unshare_bn};

use crate::registry::{ModelEntry, ModelOptions};

/// One GhostBottleneck of timm's `cfgs`: dw kernel `k`, expansion (mid) channels `t`, output
/// channels `c`, SE ratio `se` (0 = none), stride `s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GhostCfg {
    /// Depthwise kernel (of `conv_dw` and of the shortcut).
    pub k: usize,
    /// Mid channels (before `width`).
    pub t: usize,
    /// Output channels (before `width`).
    pub c: usize,
    /// SE reduction ratio; 0 means no SE.
    pub se: f64,
    /// Stride.
    pub s: usize,
}

const fn g(k: usize, t: usize, c: usize, se: f64, s: usize) -> GhostCfg {
    GhostCfg { k, t, c, se, s }
}

/// timm's `_create_ghostnet` `cfgs`: one inner slice per `blocks.{i}` stage.
pub const GHOSTNET_CFGS: &[&[GhostCfg]] = &[
    // stage1
    &[g(3, 16, 16, 0.0, 1)],
    // stage2
    &[g(3, 48, 24, 0.0, 2)],
    &[g(3, 72, 24, 0.0, 1)],
    // stage3
    &[g(5, 72, 40, 0.25, 2)],
    &[g(5, 120, 40, 0.25, 1)],
    // stage4
    &[g(3, 240, 80, 0.0, 2)],
    &[
        g(3, 200, 80, 0.0, 1),
        g(3, 184, 80, 0.0, 1),
        g(3, 184, 80, 0.0, 1),
        g(3, 480, 112, 0.25, 1),
        g(3, 672, 112, 0.25, 1),
    ],
    // stage5
    &[g(5, 672, 160, 0.25, 2)],
    &[g(5, 960, 160, 0.0, 1), g(5, 960, 160, 0.25, 1), g(5, 960, 160, 0.0, 1), g(5, 960, 160, 0.25, 1)],
];

/// Configuration of a [`GhostNet`].
#[derive(Config, Debug)]
pub struct GhostNetConfig {
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// timm's `width` (channel multiplier, channels rounded to multiples of 4).
    #[config(default = 1.0)]
    pub width: f64,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// timm's `drop_rate` (functional dropout before the classifier).
    #[config(default = 0.2)]
    pub drop_rate: f64,
}

use crate::common::{bn, conv};

/// `nn.Sequential(Conv2d, BatchNorm2d, act)`: children `0`, `1`, `2` (`2` is `nn.Identity` when
/// `act` is [`ActKind::Identity`]).
fn seq(cin: usize, cout: usize, k: usize, groups: usize, act: ActKind, device: &Device) -> ConvBnAct {
    ConvBnAct { conv: conv(cin, cout, k, 1, groups, None, device), bn: Some(bn(cout, device)), act: Act::new(act) }
}

impl GhostNetConfig {
    /// Builds the network from [`GHOSTNET_CFGS`], as timm's `GhostNet.__init__` does.
    pub fn init(&self, device: &Device) -> GhostNet {
        let w = self.width;
        let stem_chs = make_divisible(16.0 * w, 4);
        let mut prev = stem_chs;
        let mut blocks = vec![];
        let mut last_exp = 0;
        for stage in GHOSTNET_CFGS {
            let mut layers = vec![];
            for cfg in stage.iter() {
                let out = make_divisible(cfg.c as f64 * w, 4);
                let mid = make_divisible(cfg.t as f64 * w, 4);
                layers.push(GhostBottleneck::new(prev, mid, out, cfg.k, cfg.s, cfg.se, device));
                prev = out;
                last_exp = cfg.t;
            }
            blocks.push(layers);
        }
        let out = make_divisible(last_exp as f64 * w, 4);
        let final_block = TimmConvBnAct {
            conv: conv(prev, out, 1, 1, 1, None, device),
            bn1: bn(out, device),
            act: Act::new(ActKind::Relu),
        };
        let head = 1280;
        GhostNet {
            conv_stem: conv(self.in_channels, stem_chs, 3, 2, 1, None, device),
            bn1: bn(stem_chs, device),
            act1: Act::new(ActKind::Relu),
            blocks,
            final_block,
            conv_head: Conv2dConfig::new([out, head], [1, 1]).with_bias(true).init(device),
            act2: Act::new(ActKind::Relu),
            dropout: DropoutConfig::new(self.drop_rate).init(),
            classifier: LinearConfig::new(head, self.num_classes).init(device),
        }
    }
}

/// timm's `GhostModule` (v1): `primary_conv` 1x1 to `ceil(out / 2)` channels, `cheap_operation`
/// depthwise 3x3 on it, the two concatenated and sliced to `out` channels.
///
/// - input: `[N, C_in, H, W]`; output: `[N, out, H, W]`
/// - PyTorch: `timm.models.ghostnet.GhostModule` (children `primary_conv.{0,1,2}`,
///   `cheap_operation.{0,1,2}`).
#[derive(Module, Debug)]
pub struct GhostModule {
    /// `primary_conv`: 1x1 conv + BN + act.
    pub primary_conv: ConvBnAct,
    /// `cheap_operation`: depthwise 3x3 conv + BN + act.
    pub cheap_operation: ConvBnAct,
    /// `out_chs`: the channels kept of the concatenation.
    pub out_chs: usize,
}

impl GhostModule {
    /// `GhostModule(in_chs, out_chs, kernel_size=1, ratio=2, dw_size=3, act_layer)`.
    pub fn new(in_chs: usize, out_chs: usize, act: ActKind, device: &Device) -> Self {
        let init_chs = out_chs.div_ceil(2);
        Self {
            primary_conv: seq(in_chs, init_chs, 1, 1, act, device),
            cheap_operation: seq(init_chs, init_chs, 3, init_chs, act, device),
            out_chs,
        }
    }

    /// Applies the module.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x1 = self.primary_conv.forward(x);
        let x2 = self.cheap_operation.forward(x1.clone());
        let out = Tensor::cat(vec![x1, x2], 1);
        if out.dims()[1] > self.out_chs { out.narrow(1, 0, self.out_chs) } else { out }
    }
}

impl Trace for GhostModule {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x1 = trace_in(t, "primary_conv", &self.primary_conv, x)?;
        // The cheap operation runs on all of x1 (its MACs count in full even when the slice
        // below drops its last channel).
        let x2 = trace_in(t, "cheap_operation", &self.cheap_operation, x1.clone())?;
        let out = ops::concat(t, Some("cat"), &[&x1, &x2], 1)?;
        // `out[:, :out_chs]` (a no-op when out_chs is even, which timm's rounding to 4 ensures).
        if out.shape[1] > self.out_chs { ops::narrow(t, Some("slice"), &out, 1, 0, self.out_chs) } else { Ok(out) }
    }
}

/// timm's `_efficientnet_blocks.SqueezeExcite` as GhostNet configures it: `x.mean((2, 3))`,
/// `conv_reduce` (1x1, bias), `act1` ReLU, `conv_expand` (1x1, bias), `gate` hard sigmoid
/// (`relu6(x + 3) / 6`); reduced channels `make_divisible(C * ratio, 4)`.
#[derive(Module, Debug)]
pub struct TimmSqueezeExcite {
    /// `conv_reduce`.
    pub conv_reduce: Conv2d,
    /// `act1`.
    pub act1: Act,
    /// `conv_expand`.
    pub conv_expand: Conv2d,
    /// `gate`.
    pub gate: Act,
}

impl TimmSqueezeExcite {
    /// `SqueezeExcite(in_chs, rd_ratio, gate_layer='hard_sigmoid', rd_round_fn=make_divisible(., 4))`.
    pub fn new(in_chs: usize, rd_ratio: f64, device: &Device) -> Self {
        let rd = make_divisible(in_chs as f64 * rd_ratio, 4);
        Self {
            conv_reduce: Conv2dConfig::new([in_chs, rd], [1, 1]).init(device),
            act1: Act::new(ActKind::Relu),
            conv_expand: Conv2dConfig::new([rd, in_chs], [1, 1]).init(device),
            gate: Act::new(ActKind::HardSigmoid),
        }
    }

    /// Applies the gate.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = x.clone().mean_dim(3).mean_dim(2);
        let s = self.act1.forward(self.conv_reduce.forward(s));
        let s = self.gate.forward(self.conv_expand.forward(s));
        x * s
    }
}

impl Trace for TimmSqueezeExcite {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("SqueezeExcite", 4)?;
        let s = ops::global_avg_pool(t, Some("mean"), &x, true)?;
        let s = trace_in(t, "conv_reduce", &self.conv_reduce, s)?;
        let s = trace_in(t, "act1", &self.act1, s)?;
        let s = trace_in(t, "conv_expand", &self.conv_expand, s)?;
        let s = trace_in(t, "gate", &self.gate, s)?;
        ops::mul(t, Some("scale"), &x, &s)
    }
}

/// GhostBottleneck's projection shortcut: depthwise kxk (`0`), BN (`1`), 1x1 (`2`), BN (`3`).
#[derive(Module, Debug)]
pub struct GhostShortcut {
    /// `0`: depthwise kxk with the block's stride.
    pub dw: Conv2d,
    /// `1`.
    pub dw_bn: BatchNorm,
    /// `2`: 1x1 to the output channels.
    pub pw: Conv2d,
    /// `3`.
    pub pw_bn: BatchNorm,
}

impl GhostShortcut {
    /// Applies the shortcut.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.dw_bn.forward(kiln_kernels::conv2d(&self.dw, x));
        self.pw_bn.forward(self.pw.forward(x))
    }
}

impl Trace for GhostShortcut {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "0", &self.dw, x)?;
        let x = trace_in(t, "1", &self.dw_bn, x)?;
        let x = trace_in(t, "2", &self.pw, x)?;
        trace_in(t, "3", &self.pw_bn, x)
    }
}

/// timm's `GhostBottleneck`: `ghost1` (ReLU), `conv_dw` + `bn_dw` when strided, optional `se`,
/// `ghost2` (no activation), plus `shortcut` (identity when shapes allow).
///
/// - input: `[N, C_in, H, W]`; output: `[N, C_out, H/s, W/s]`
#[derive(Module, Debug)]
pub struct GhostBottleneck {
    /// `ghost1`: expansion.
    pub ghost1: GhostModule,
    /// `conv_dw` (stride > 1 only).
    pub conv_dw: Option<Conv2d>,
    /// `bn_dw` (stride > 1 only).
    pub bn_dw: Option<BatchNorm>,
    /// `se`.
    pub se: Option<TimmSqueezeExcite>,
    /// `ghost2`: linear projection.
    pub ghost2: GhostModule,
    /// `shortcut`; `None` is the empty `nn.Sequential()` (identity).
    pub shortcut: Option<GhostShortcut>,
}

impl GhostBottleneck {
    /// `GhostBottleneck(in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio=se)`.
    pub fn new(in_chs: usize, mid: usize, out: usize, k: usize, stride: usize, se: f64, device: &Device) -> Self {
        let strided = stride > 1;
        Self {
            ghost1: GhostModule::new(in_chs, mid, ActKind::Relu, device),
            conv_dw: strided.then(|| conv(mid, mid, k, stride, mid, None, device)),
            bn_dw: strided.then(|| bn(mid, device)),
            se: (se > 0.0).then(|| TimmSqueezeExcite::new(mid, se, device)),
            ghost2: GhostModule::new(mid, out, ActKind::Identity, device),
            shortcut: (in_chs != out || strided).then(|| GhostShortcut {
                dw: conv(in_chs, in_chs, k, stride, in_chs, None, device),
                dw_bn: bn(in_chs, device),
                pw: conv(in_chs, out, 1, 1, 1, None, device),
                pw_bn: bn(out, device),
            }),
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.ghost1.forward(x.clone());
        if let (Some(c), Some(b)) = (&self.conv_dw, &self.bn_dw) {
            y = b.forward(kiln_kernels::conv2d(c, y));
        }
        if let Some(se) = &self.se {
            y = se.forward(y);
        }
        let y = self.ghost2.forward(y);
        let s = match &self.shortcut {
            Some(sc) => sc.forward(x),
            None => x,
        };
        y + s
    }
}

impl Trace for GhostBottleneck {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let mut y = trace_in(t, "ghost1", &self.ghost1, x.clone())?;
        if let (Some(c), Some(b)) = (&self.conv_dw, &self.bn_dw) {
            y = trace_in(t, "conv_dw", c, y)?;
            y = trace_in(t, "bn_dw", b, y)?;
        }
        if let Some(se) = &self.se {
            y = trace_in(t, "se", se, y)?;
        }
        let y = trace_in(t, "ghost2", &self.ghost2, y)?;
        let s = match &self.shortcut {
            Some(sc) => trace_in(t, "shortcut", sc, x)?,
            None => x,
        };
        ops::add(t, Some("add"), &[&y, &s])
    }
}

/// timm's `_efficientnet_blocks.ConvBnAct` (the last `blocks` stage): `conv` 1x1, `bn1`
/// (`BatchNormAct2d`: the BN with its ReLU as `bn1.act`).
#[derive(Module, Debug)]
pub struct TimmConvBnAct {
    /// `conv`.
    pub conv: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm,
    /// `bn1.act`.
    pub act: Act,
}

impl TimmConvBnAct {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.act.forward(self.bn1.forward(self.conv.forward(x)))
    }
}

impl Trace for TimmConvBnAct {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "conv", &self.conv, x)?;
        scoped(t, "bn1", |t| {
            let x = self.bn1.trace(t, x)?;
            trace_in(t, "act", &self.act, x)
        })
    }
}

/// GhostNet.
///
/// - input: `[N, 3, H, W]` (224x224 for ImageNet); output: `[N, num_classes]`
/// - PyTorch: `timm.create_model('ghostnet_100')` (timm 1.0.31): `conv_stem`, `bn1`, `act1`,
///   `blocks.{i}.{j}` (GhostBottlenecks, then `blocks.9.0` a ConvBnAct to 960 channels),
///   `global_pool`, `conv_head` (1x1 with bias on the pooled 1x1 map), `act2`, `flatten`,
///   dropout (functional in timm), `classifier`.
#[derive(Module, Debug)]
pub struct GhostNet {
    /// `conv_stem`: 3x3 stride 2.
    pub conv_stem: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm,
    /// `act1`.
    pub act1: Act,
    /// `blocks.0` .. `blocks.8`: GhostBottleneck stages.
    pub blocks: Vec<Vec<GhostBottleneck>>,
    /// `blocks.9.0`: 1x1 ConvBnAct.
    pub final_block: TimmConvBnAct,
    /// `conv_head`.
    pub conv_head: Conv2d,
    /// `act2`.
    pub act2: Act,
    /// `F.dropout(p=drop_rate)`.
    pub dropout: Dropout,
    /// `classifier`.
    pub classifier: Linear,
}

impl GhostNet {
    /// `forward_features`: `[N, 3, H, W] -> [N, 960 (x width), H/32, W/32]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.act1.forward(self.bn1.forward(self.conv_stem.forward(x)));
        for stage in &self.blocks {
            for b in stage {
                x = b.forward(x);
            }
        }
        self.final_block.forward(x)
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.features(x).mean_dim(3).mean_dim(2);
        let x = self.act2.forward(self.conv_head.forward(x));
        let x = x.flatten::<2>(1, 3);
        self.classifier.forward(self.dropout.forward(x))
    }
}

impl Trace for GhostNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "conv_stem", &self.conv_stem, x)?;
        let x = trace_in(t, "bn1", &self.bn1, x)?;
        let x = trace_in(t, "act1", &self.act1, x)?;
        let x = scoped(t, "blocks", |t| {
            let mut x = x;
            for (i, stage) in self.blocks.iter().enumerate() {
                x = trace_in(t, &i.to_string(), stage, x)?;
            }
            scoped(t, &self.blocks.len().to_string(), |t| trace_in(t, "0", &self.final_block, x))
        })?;
        let x = ops::global_avg_pool(t, Some("global_pool"), &x, true)?;
        let x = trace_in(t, "conv_head", &self.conv_head, x)?;
        let x = trace_in(t, "act2", &self.act2, x)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        let x = trace_in(t, "dropout", &self.dropout, x)?;
        trace_in(t, "classifier", &self.classifier, x)
    }
}

impl crate::Hooks for GhostNet {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(GhostNet::features(self, x))
    }

    fn sync_groups(&mut self) {
        for b in self.blocks.iter_mut().flatten() {
            b.ghost1.cheap_operation.sync_groups();
            b.ghost2.cheap_operation.sync_groups();
            if let Some(c) = &mut b.conv_dw {
                sync_depthwise(c);
            }
            if let Some(s) = &mut b.shortcut {
                sync_depthwise(&mut s.dw);
            }
        }
    }

    fn unshare_running_stats(&mut self) {
        unshare_bn(&mut self.bn1);
        for b in self.blocks.iter_mut().flatten() {
            for g in [&mut b.ghost1, &mut b.ghost2] {
                g.primary_conv.unshare_running_stats();
                g.cheap_operation.unshare_running_stats();
            }
            if let Some(bn) = &mut b.bn_dw {
                unshare_bn(bn);
            }
            if let Some(s) = &mut b.shortcut {
                unshare_bn(&mut s.dw_bn);
                unshare_bn(&mut s.pw_bn);
            }
        }
        unshare_bn(&mut self.final_block.bn1);
    }

    fn has_dropout(&self) -> bool {
        true
    }
}

crate::zoo_model!(GhostNet, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "ghostnet".into(),
        aliases: vec!["ghostnet_100".into()],
        summary: "GhostNet 1.0x, timm ghostnet_100 (width_mult = timm's width)".into(),
        default_input: [3, 224, 224],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            Ok(Box::new(
                GhostNetConfig::new()
                    .with_num_classes(o.num_classes)
                    .with_width(o.width_mult)
                    .with_in_channels(o.in_channels)
                    .with_drop_rate(o.dropout.unwrap_or(0.2))
                    .init(d),
            ))
        },
    }]
}
