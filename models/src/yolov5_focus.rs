//! The YOLOv5 v5.0 backbone (ultralytics/yolov5, tag v5.0, `models/yolov5s.yaml` layers 0-9):
//! a Focus stem, stride-2 `Conv`s, CSP `C3` blocks and SPP, scaled by `width_multiple` and
//! `depth_multiple` exactly as `models/yolo.py::parse_model` scales them.
//!
//! ```yaml
//! backbone:  # [from, number, module, args]
//!   [[-1, 1, Focus, [64, 3]],         # 0-P1/2
//!    [-1, 1, Conv, [128, 3, 2]],      # 1-P2/4
//!    [-1, 3, C3, [128]],
//!    [-1, 1, Conv, [256, 3, 2]],      # 3-P3/8
//!    [-1, 9, C3, [256]],
//!    [-1, 1, Conv, [512, 3, 2]],      # 5-P4/16
//!    [-1, 9, C3, [512]],
//!    [-1, 1, Conv, [1024, 3, 2]],     # 7-P5/32
//!    [-1, 1, SPP, [1024, [5, 9, 13]]],
//!    [-1, 3, C3, [1024, False]]]      # 9
//! ```
//!
//! Channels become `ceil(c * width_multiple / 8) * 8` and repeats `max(round(n *
//! depth_multiple), 1)`. The defaults (0.25 / 0.33) give channels 16, 32, 64, 128, 256 and C3
//! depths 1, 3, 3, 1. Every `Conv` is conv (no bias) + BN (eps 1e-3, momentum 0.03) + SiLU.
//!
//! The output is the last feature map (layer 9, P5): `[N, 1024 x width_multiple, H/32, W/32]`
//! (the detection head, which would take P3-P5, is not part of this model). Rows follow the
//! PyTorch `state_dict` paths: `model.0.conv.conv`, `model.2.cv1.bn`, `model.4.m.1.cv2.conv`,
//! `model.8.m.2` (the 13x13 pool)...

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};
use kiln_layers::focus::trace_space_to_depth;
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{ActKind, ConvBnAct, ConvBnActConfig, Focus, FocusConfig};

use crate::registry::{ModelEntry, ModelOptions};
use crate::unet::trace_conv_bn_act_as;

/// Output channels of the Focus stem (before `width_multiple`), and its kernel size.
pub const FOCUS: (usize, usize) = (64, 3);

/// The four stages after the stem: channels of the stride-2 `Conv` and of the `C3` that follows
/// it, the C3's bottleneck repeats, and whether its bottlenecks have a shortcut. The last stage
/// has SPP between its `Conv` and its `C3`.
pub const STAGES: [(usize, usize, bool); 4] = [(128, 3, true), (256, 9, true), (512, 9, true), (1024, 3, false)];

/// SPP's max-pool kernel sizes.
pub const SPP_KERNELS: [usize; 3] = [5, 9, 13];

/// YOLOv5's `Conv`: conv + BN (eps 1e-3, momentum 0.03) + SiLU, "same" padding.
fn conv_block(c_in: usize, c_out: usize, k: usize, s: usize, device: &Device) -> ConvBnAct {
    ConvBnActConfig::new(c_in, c_out)
        .with_kernel_size(k)
        .with_stride(s)
        .with_act(ActKind::Swish)
        .with_bn_eps(1e-3)
        .with_bn_momentum(0.03)
        .init(device)
}

/// Traces a YOLOv5 `Conv` (children `conv`, `bn`, `act`).
fn trace_conv(t: &mut dyn Tracer, name: &str, m: &ConvBnAct, x: Node) -> Result<Node, TraceError> {
    scoped(t, name, |t| trace_conv_bn_act_as(t, m, ["conv", "bn", "act"], x))
}

/// `math.ceil(x / 8) * 8`, YOLOv5's `make_divisible`.
fn yolo_divisible(x: f64) -> usize {
    ((x / 8.0).ceil() as usize * 8).max(8)
}

/// Configuration of a [`YoloV5FocusBackbone`].
#[derive(Config, Debug)]
pub struct YoloV5FocusBackboneConfig {
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// YOLOv5's `width_multiple` (yolov5s: 0.50, yolov5m: 0.75, yolov5l: 1.0).
    #[config(default = 0.25)]
    pub width_multiple: f64,
    /// YOLOv5's `depth_multiple` (yolov5s: 0.33, yolov5m: 0.67, yolov5l: 1.0).
    #[config(default = 0.33)]
    pub depth_multiple: f64,
}

impl YoloV5FocusBackboneConfig {
    /// Channels after `width_multiple`.
    pub fn channels(&self, c: usize) -> usize {
        yolo_divisible(c as f64 * self.width_multiple)
    }

    /// Repeats after `depth_multiple` (Python's round-half-even, as in `parse_model`).
    pub fn repeats(&self, n: usize) -> usize {
        if n > 1 { ((n as f64 * self.depth_multiple).round_ties_even() as usize).max(1) } else { n }
    }

    /// Builds the backbone.
    pub fn init(&self, device: &Device) -> YoloV5FocusBackbone {
        let mut c = self.channels(FOCUS.0);
        let focus = FocusConfig::new(self.in_channels, c).with_kernel_size(FOCUS.1).init(device);
        let (mut downs, mut c3s) = (vec![], vec![]);
        let mut spp = None;
        for (i, &(width, n, shortcut)) in STAGES.iter().enumerate() {
            let c_out = self.channels(width);
            downs.push(conv_block(c, c_out, 3, 2, device));
            if i + 1 == STAGES.len() {
                spp = Some(Spp::new(c_out, c_out, device));
            }
            c3s.push(C3::new(c_out, c_out, self.repeats(n), shortcut, device));
            c = c_out;
        }
        YoloV5FocusBackbone { focus, downs, spp: spp.expect("last stage has SPP"), c3s }
    }
}

/// YOLOv5's `Bottleneck` (`e = 1.0`): 1x1 conv, 3x3 conv, optional residual add.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// `cv1`: 1x1.
    pub cv1: ConvBnAct,
    /// `cv2`: 3x3.
    pub cv2: ConvBnAct,
    /// Residual (`shortcut and c1 == c2`).
    pub add: bool,
}

impl Bottleneck {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv2.forward(self.cv1.forward(x.clone()));
        if self.add { x + y } else { y }
    }
}

impl Trace for Bottleneck {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let y = trace_conv(t, "cv1", &self.cv1, x.clone())?;
        let y = trace_conv(t, "cv2", &self.cv2, y)?;
        if self.add { ops::add(t, Some("add"), &[&x, &y]) } else { Ok(y) }
    }
}

/// YOLOv5's `C3`: CSP bottleneck with 3 convolutions,
/// `cv3(cat(m(cv1(x)), cv2(x)))` with hidden width `c2 / 2`.
///
/// - input: `[N, C1, H, W]`; output: `[N, C2, H, W]`
#[derive(Module, Debug)]
pub struct C3 {
    /// `cv1`: 1x1 into the bottlenecks.
    pub cv1: ConvBnAct,
    /// `cv2`: 1x1 bypass.
    pub cv2: ConvBnAct,
    /// `cv3`: 1x1 on the concatenation.
    pub cv3: ConvBnAct,
    /// `m`: the bottlenecks.
    pub m: Vec<Bottleneck>,
}

impl C3 {
    fn new(c1: usize, c2: usize, n: usize, shortcut: bool, device: &Device) -> Self {
        let h = c2 / 2;
        Self {
            cv1: conv_block(c1, h, 1, 1, device),
            cv2: conv_block(c1, h, 1, 1, device),
            cv3: conv_block(2 * h, c2, 1, 1, device),
            m: (0..n)
                .map(|_| Bottleneck {
                    cv1: conv_block(h, h, 1, 1, device),
                    cv2: conv_block(h, h, 3, 1, device),
                    add: shortcut,
                })
                .collect(),
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.cv1.forward(x.clone());
        for b in &self.m {
            y = b.forward(y);
        }
        self.cv3.forward(Tensor::cat(vec![y, self.cv2.forward(x)], 1))
    }
}

impl Trace for C3 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let y = trace_conv(t, "cv1", &self.cv1, x.clone())?;
        let y = trace_in(t, "m", &self.m, y)?;
        let z = trace_conv(t, "cv2", &self.cv2, x)?;
        let y = ops::concat(t, Some("cat"), &[&y, &z], 1)?;
        trace_conv(t, "cv3", &self.cv3, y)
    }
}

/// Spatial pyramid pooling: `cv2(cat(x, pool5(x), pool9(x), pool13(x)))` with `x = cv1(x)`,
/// stride-1 max pools padded to keep the size.
#[derive(Module, Debug)]
pub struct Spp {
    /// `cv1`: 1x1 to `c1 / 2`.
    pub cv1: ConvBnAct,
    /// `cv2`: 1x1 on the concatenation.
    pub cv2: ConvBnAct,
    /// `m`: the pools.
    pub m: Vec<MaxPool2d>,
}

impl Spp {
    fn new(c1: usize, c2: usize, device: &Device) -> Self {
        let h = c1 / 2;
        let m = SPP_KERNELS
            .iter()
            .map(|&k| {
                let p = k / 2;
                MaxPool2dConfig::new([k, k])
                    .with_strides([1, 1])
                    .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                    .init()
            })
            .collect();
        Self { cv1: conv_block(c1, h, 1, 1, device), cv2: conv_block(h * (SPP_KERNELS.len() + 1), c2, 1, 1, device), m }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.cv1.forward(x);
        let mut parts = vec![x.clone()];
        parts.extend(self.m.iter().map(|p| kiln_kernels::max_pool2d(p, x.clone())));
        self.cv2.forward(Tensor::cat(parts, 1))
    }
}

impl Trace for Spp {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_conv(t, "cv1", &self.cv1, x)?;
        let mut parts = vec![x.clone()];
        scoped(t, "m", |t| -> Result<(), TraceError> {
            for (i, p) in self.m.iter().enumerate() {
                parts.push(trace_in(t, &i.to_string(), p, x.clone())?);
            }
            Ok(())
        })?;
        let y = ops::concat(t, Some("cat"), &parts.iter().collect::<Vec<_>>(), 1)?;
        trace_conv(t, "cv2", &self.cv2, y)
    }
}

/// The YOLOv5 v5.0 backbone with a Focus stem.
///
/// - input: `[N, C, H, W]` with even `H`, `W`; output: the P5 map
///   `[N, 1024 x width_multiple, ceil(H/32), ceil(W/32)]` (exactly `H/32` for multiples of 32)
/// - PyTorch: layers `model.0..=9` of ultralytics/yolov5 v5.0 `Model(yolov5s.yaml)` with the
///   given multiples.
#[derive(Module, Debug)]
pub struct YoloV5FocusBackbone {
    /// `model.0`: Focus (space-to-depth + 3x3 Conv).
    pub focus: Focus,
    /// `model.1`, `model.3`, `model.5`, `model.7`: 3x3 stride-2 Convs.
    pub downs: Vec<ConvBnAct>,
    /// `model.8`: SPP.
    pub spp: Spp,
    /// `model.2`, `model.4`, `model.6`, `model.9`: C3 blocks.
    pub c3s: Vec<C3>,
}

impl YoloV5FocusBackbone {
    /// The P5 feature map.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.focus.forward(x);
        let last = self.downs.len() - 1;
        for (i, (down, c3)) in self.downs.iter().zip(&self.c3s).enumerate() {
            x = down.forward(x);
            if i == last {
                x = self.spp.forward(x);
            }
            x = c3.forward(x);
        }
        x
    }
}

impl Trace for YoloV5FocusBackbone {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "model", |t| {
            let mut x = scoped(t, "0", |t| {
                let y = trace_space_to_depth(t, Some("space_to_depth"), &x)?;
                trace_conv(t, "conv", &self.focus.conv, y)
            })?;
            let mut idx = 1;
            let last = self.downs.len() - 1;
            for (i, (down, c3)) in self.downs.iter().zip(&self.c3s).enumerate() {
                x = trace_conv(t, &idx.to_string(), down, x)?;
                idx += 1;
                if i == last {
                    x = trace_in(t, &idx.to_string(), &self.spp, x)?;
                    idx += 1;
                }
                x = trace_in(t, &idx.to_string(), c3, x)?;
                idx += 1;
            }
            Ok(x)
        })
    }
}

impl crate::Hooks for YoloV5FocusBackbone {}

crate::zoo_model!(YoloV5FocusBackbone, map);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "yolov5_focus_backbone".into(),
        aliases: vec!["yolov5_backbone".into()],
        summary: "YOLOv5 v5.0 backbone (Focus, C3, SPP), width 0.25 x width_mult, depth 0.33; outputs the P5 map"
            .into(),
        default_input: [3, 64, 64],
        num_classes: 1000,
        build: |o: &ModelOptions, d| {
            // num_classes is not used: the backbone has no classifier.
            Ok(Box::new(
                YoloV5FocusBackboneConfig::new()
                    .with_in_channels(o.in_channels)
                    .with_width_multiple(0.25 * o.width_mult)
                    .with_depth_multiple(0.33)
                    .init(d),
            ))
        },
    }]
}
