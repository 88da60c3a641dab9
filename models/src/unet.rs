//! U-Net (Ronneberger et al. 2015) with same-padded convolutions and batch norm, as in the
//! widely used PyTorch implementation `milesial/Pytorch-UNet` (`UNet(n_channels, n_classes,
//! bilinear=False)`), with a configurable base width and depth.
//!
//! The PyTorch twin (child names = `state_dict` paths):
//!
//! ```python
//! class DoubleConv(nn.Module):
//!     def __init__(self, cin, cout):
//!         super().__init__()
//!         self.double_conv = nn.Sequential(
//!             nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
//!             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
//!     def forward(self, x): return self.double_conv(x)
//!
//! class Down(nn.Module):  # maxpool_conv = Sequential(MaxPool2d(2), DoubleConv(cin, cout))
//! class Up(nn.Module):
//!     def __init__(self, cin, cout):
//!         super().__init__()
//!         self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
//!         self.conv = DoubleConv(cin, cout)
//!     def forward(self, x1, x2):
//!         x1 = self.up(x1)
//!         dy, dx = x2.size(2) - x1.size(2), x2.size(3) - x1.size(3)
//!         x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
//!         return self.conv(torch.cat([x2, x1], dim=1))
//!
//! class UNet(nn.Module):  # base=16, depth=4: widths 16, 32, 64, 128, 256
//!     # inc = DoubleConv(n_channels, 16); down1..down4; up1..up4; outc.conv = Conv2d(16, n_classes, 1)
//! ```
//!
//! Inputs whose sides are not multiples of `2^depth` work as in the reference: the upsampled map
//! is zero-padded to its skip's size before the concatenation (a `pad` row in the report).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, OpCost, Spatial, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{ConvBnAct, ConvBnActConfig};

use crate::registry::{ModelEntry, ModelOptions};

/// Traces a [`ConvBnAct`] with its conv, norm and activation under the given child names
/// (`["0", "1", "2"]` is what `ConvBnAct`'s own trace uses; PyTorch twins that inline the three
/// layers in a larger `Sequential`, or name them `conv` / `bn` / `act`, need others).
pub(crate) fn trace_conv_bn_act_as(
    t: &mut dyn Tracer,
    m: &ConvBnAct,
    names: [&str; 3],
    x: Node,
) -> Result<Node, TraceError> {
    let mut x = trace_in(t, names[0], &m.conv, x)?;
    if let Some(bn) = &m.bn {
        x = trace_in(t, names[1], bn, x)?;
    }
    trace_in(t, names[2], &m.act, x)
}

/// Configuration of a [`UNet`].
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Output classes (channels of the score map).
    #[config(default = 2)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the first level; level `k` has `base_width * 2^k`.
    #[config(default = 16)]
    pub base_width: usize,
    /// Number of down (and up) steps.
    #[config(default = 4)]
    pub depth: usize,
}

impl UNetConfig {
    /// Builds the network.
    ///
    /// # Panics
    /// If `depth` is 0.
    pub fn init(&self, device: &Device) -> UNet {
        assert!(self.depth >= 1, "U-Net needs depth >= 1");
        let width = |k: usize| self.base_width << k;
        let inc = DoubleConv::new(self.in_channels, width(0), device);
        let downs = (1..=self.depth)
            .map(|k| Down {
                pool: MaxPool2dConfig::new([2, 2]).init(),
                conv: DoubleConv::new(width(k - 1), width(k), device),
            })
            .collect();
        let ups = (1..=self.depth)
            .map(|k| {
                let c_in = width(self.depth + 1 - k);
                Up {
                    up: ConvTranspose2dConfig::new([c_in, c_in / 2], [2, 2]).with_stride([2, 2]).init(device),
                    conv: DoubleConv::new(c_in, width(self.depth - k), device),
                }
            })
            .collect();
        let outc = Conv2dConfig::new([width(0), self.num_classes], [1, 1]).init(device);
        UNet { inc, downs, ups, outc }
    }
}

/// Two 3x3 conv-BN-ReLU layers.
///
/// - input: `[N, C_in, H, W]`; output: `[N, C_out, H, W]`
/// - PyTorch: `DoubleConv` (children `double_conv.0..5`).
#[derive(Module, Debug)]
pub struct DoubleConv {
    /// `double_conv.0..2`.
    pub conv1: ConvBnAct,
    /// `double_conv.3..5`.
    pub conv2: ConvBnAct,
}

impl DoubleConv {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self {
            conv1: ConvBnActConfig::new(c_in, c_out).init(device),
            conv2: ConvBnActConfig::new(c_out, c_out).init(device),
        }
    }

    /// Applies both layers.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv2.forward(self.conv1.forward(x))
    }
}

impl Trace for DoubleConv {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "double_conv", |t| {
            let x = trace_conv_bn_act_as(t, &self.conv1, ["0", "1", "2"], x)?;
            trace_conv_bn_act_as(t, &self.conv2, ["3", "4", "5"], x)
        })
    }
}

/// 2x2 max pool, then a [`DoubleConv`] (PyTorch: `Down`, children `maxpool_conv.0` / `.1`).
#[derive(Module, Debug)]
pub struct Down {
    /// `maxpool_conv.0`.
    pub pool: MaxPool2d,
    /// `maxpool_conv.1`.
    pub conv: DoubleConv,
}

impl Down {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(kiln_kernels::max_pool2d(&self.pool, x))
    }
}

impl Trace for Down {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "maxpool_conv", |t| {
            let x = trace_in(t, "0", &self.pool, x)?;
            trace_in(t, "1", &self.conv, x)
        })
    }
}

/// 2x2 stride-2 transposed conv halving the channels, pad to the skip's size, concatenate
/// `[skip, upsampled]`, then a [`DoubleConv`] (PyTorch: `Up`, children `up`, `conv`).
#[derive(Module, Debug)]
pub struct Up {
    /// `up`: `C -> C/2`, doubling the spatial size.
    pub up: ConvTranspose2d,
    /// `conv`: `C -> C_out` on the concatenation.
    pub conv: DoubleConv,
}

/// `(top, bottom, left, right)` zero padding that brings `x` to `skip`'s spatial size.
fn pad_to(x: &[usize], skip: &[usize]) -> Option<[usize; 4]> {
    let (dy, dx) = (skip[2].checked_sub(x[2])?, skip[3].checked_sub(x[3])?);
    Some([dy / 2, dy - dy / 2, dx / 2, dx - dx / 2])
}

impl Up {
    /// Upsamples `x`, merges it with the encoder's `skip`, convolves.
    pub fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        let mut x = kiln_kernels::conv_transpose2d(&self.up, x);
        let [top, bottom, left, right] =
            pad_to(&x.dims(), &skip.dims()).expect("skip is at least as large as the upsampled map");
        if top + bottom + left + right > 0 {
            x = x.pad((left, right, top, bottom), PadMode::Constant(0.0));
        }
        self.conv.forward(Tensor::cat(vec![skip, x], 1))
    }

    /// Traces [`Self::forward`].
    pub fn trace_up(&self, t: &mut dyn Tracer, x: Node, skip: &Node) -> Result<Node, TraceError> {
        let mut x = trace_in(t, "up", &self.up, x)?;
        let [top, bottom, left, right] = pad_to(&x.shape, &skip.shape).ok_or_else(|| TraceError::Mismatch {
            op: "UNet skip".into(),
            shapes: vec![x.shape.clone(), skip.shape.clone()],
        })?;
        if top + bottom + left + right > 0 {
            let out = vec![x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right];
            let c = OpCost::new("Pad").detail(format!("t{top} b{bottom} l{left} r{right}")).spatial(Spatial::Window {
                kernel: vec![1, 1],
                stride: vec![1, 1],
                padding: vec![top, left],
                dilation: vec![1, 1],
            });
            x = t.op(Some("pad"), &[&x], out, c);
        }
        let x = ops::concat(t, Some("cat"), &[skip, &x], 1)?;
        trace_in(t, "conv", &self.conv, x)
    }
}

/// U-Net.
///
/// - input: `[N, C, H, W]` with `H, W >= 2^depth`; output: `[N, num_classes, H, W]`
/// - PyTorch: milesial's `UNet(n_channels, n_classes, bilinear=False)` at width 64 and depth 4;
///   here the width and depth are options. Rows: `inc`, `down{k}`, `up{k}` (`k = 1..=depth`),
///   `outc.conv`.
#[derive(Module, Debug)]
pub struct UNet {
    /// `inc`.
    pub inc: DoubleConv,
    /// `down1..`.
    pub downs: Vec<Down>,
    /// `up1..` (deepest first).
    pub ups: Vec<Up>,
    /// `outc.conv`: 1x1 conv to class scores.
    pub outc: Conv2d,
}

impl UNet {
    /// Per-pixel class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = vec![self.inc.forward(x)];
        for d in &self.downs {
            let x = d.forward(skips.last().expect("non-empty").clone());
            skips.push(x);
        }
        let mut x = skips.pop().expect("deepest map");
        for u in &self.ups {
            x = u.forward(x, skips.pop().expect("one skip per up step"));
        }
        self.outc.forward(x)
    }
}

impl Trace for UNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let mut skips = vec![trace_in(t, "inc", &self.inc, x)?];
        for (k, d) in self.downs.iter().enumerate() {
            let x = skips.last().expect("non-empty").clone();
            skips.push(trace_in(t, &format!("down{}", k + 1), d, x)?);
        }
        let mut x = skips.pop().expect("deepest map");
        for (k, u) in self.ups.iter().enumerate() {
            let skip = skips.pop().expect("one skip per up step");
            x = scoped(t, &format!("up{}", k + 1), |t| u.trace_up(t, x, &skip))?;
        }
        scoped(t, "outc", |t| trace_in(t, "conv", &self.outc, x))
    }
}

impl crate::Hooks for UNet {}

crate::zoo_model!(UNet, map);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "unet".into(),
        aliases: vec![],
        summary: "U-Net (milesial Pytorch-UNet layout, base width 16, depth 4, transposed-conv decoder)".into(),
        default_input: [3, 64, 64],
        num_classes: 2,
        build: |o: &ModelOptions, d| {
            o.no_width("unet")?;
            Ok(Box::new(UNetConfig::new().with_num_classes(o.num_classes).with_in_channels(o.in_channels).init(d)))
        },
    }]
}
