//! The inverted residual ("MBConv") block of MobileNetV2 and V3: 1x1 expansion, depthwise kxk,
//! optional squeeze-excite, linear 1x1 projection, residual add when shapes allow.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::activation::ActKind;
use crate::conv_bn_act::{ConvBnAct, ConvBnActConfig};
use crate::squeeze_excite::{SqueezeExcite, SqueezeExciteConfig};
use crate::trace::{Node, Trace, TraceError, Tracer, ops, scoped, trace_in};

/// Which torchvision definition the block's child names follow.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum IrStyle {
    /// `torchvision.models.mobilenetv2.InvertedResidual`: children in `conv`
    /// (`conv.0` expand, `conv.1` depthwise, `conv.2` project conv, `conv.3` project norm).
    V2,
    /// `torchvision.models.mobilenetv3.InvertedResidual`: children in `block`
    /// (`block.0` expand, `block.1` depthwise, `block.2` SE, `block.3` project).
    V3,
}

/// Configuration of an [`InvertedResidual`].
#[derive(Config, Debug)]
pub struct InvertedResidualConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Channels after the expansion (equal to `in_channels`: no expansion conv).
    pub expanded_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Depthwise kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Depthwise stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Depthwise dilation.
    #[config(default = 1)]
    pub dilation: usize,
    /// Activation of the expansion and depthwise convs.
    #[config(default = "ActKind::Relu6")]
    pub act: ActKind,
    /// Squeeze-excite bottleneck channels, if the block has SE.
    #[config(default = "None")]
    pub se_channels: Option<usize>,
    /// SE gate.
    #[config(default = "ActKind::HardSigmoid")]
    pub se_gate: ActKind,
    /// Batch-norm epsilon.
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// Batch-norm momentum (PyTorch convention).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// Naming style.
    #[config(default = "IrStyle::V2")]
    pub style: IrStyle,
}

impl InvertedResidualConfig {
    /// Initializes the block.
    pub fn init(&self, device: &Device) -> InvertedResidual {
        let cba =
            |cin, cout| ConvBnActConfig::new(cin, cout).with_bn_eps(self.bn_eps).with_bn_momentum(self.bn_momentum);
        let e = self.expanded_channels;
        let expand = (e != self.in_channels)
            .then(|| cba(self.in_channels, e).with_kernel_size(1).with_act(self.act).init(device));
        let dw = cba(e, e)
            .with_kernel_size(self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(e)
            .with_act(self.act)
            .init(device);
        let se = self.se_channels.map(|s| SqueezeExciteConfig::new(e, s).with_gate(self.se_gate).init(device));
        let project = cba(e, self.out_channels).with_kernel_size(1).with_act(ActKind::Identity).init(device);
        InvertedResidual {
            expand,
            dw,
            se,
            project,
            use_res: self.stride == 1 && self.in_channels == self.out_channels,
            style: self.style,
        }
    }
}

/// Inverted residual block.
///
/// - input: `[N, C_in, H, W]`; output: `[N, C_out, H / stride, W / stride]`
/// - PyTorch: torchvision's `InvertedResidual` (MobileNetV2, or V3 with SE); see [`IrStyle`] for
///   the child names, which the analyzer's rows follow.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1x1 expansion (absent when the expansion ratio is 1).
    pub expand: Option<ConvBnAct>,
    /// Depthwise conv.
    pub dw: ConvBnAct,
    /// Squeeze-excite.
    pub se: Option<SqueezeExcite>,
    /// Linear 1x1 projection (conv + BN, no activation).
    pub project: ConvBnAct,
    /// Whether the input is added to the output.
    pub use_res: bool,
    /// Naming style.
    #[module(skip)]
    pub style: IrStyle,
}

impl InvertedResidual {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(e) = &self.expand {
            y = e.forward(y);
        }
        y = self.dw.forward(y);
        if let Some(se) = &self.se {
            y = se.forward(y);
        }
        y = self.project.forward(y);
        if self.use_res { y + x } else { y }
    }
}

impl Trace for InvertedResidual {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let container = match self.style {
            IrStyle::V2 => "conv",
            IrStyle::V3 => "block",
        };
        let style = self.style;
        let y = scoped(t, container, |t| -> Result<Node, TraceError> {
            let mut i = 0;
            let mut y = x.clone();
            let mut next = |t: &mut dyn Tracer, m: &dyn Trace, y: Node| -> Result<Node, TraceError> {
                let r = trace_in(t, &i.to_string(), m, y);
                i += 1;
                r
            };
            if let Some(e) = &self.expand {
                y = next(t, e, y)?;
            }
            y = next(t, &self.dw, y)?;
            if let Some(se) = &self.se {
                y = next(t, se, y)?;
            }
            match style {
                IrStyle::V3 => next(t, &self.project, y),
                IrStyle::V2 => {
                    // torchvision V2 inlines the projection's conv and norm in `conv`.
                    let y = next(t, &self.project.conv, y)?;
                    match &self.project.bn {
                        Some(bn) => next(t, bn, y),
                        None => Ok(y),
                    }
                }
            }
        })?;
        if self.use_res { ops::add(t, Some("add"), &[&y, &x]) } else { Ok(y) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn residual_only_when_shapes_match() {
        let device = Device::flex();
        let a = InvertedResidualConfig::new(16, 96, 16).init(&device);
        assert!(a.use_res);
        let b = InvertedResidualConfig::new(16, 96, 24).with_stride(2).init(&device);
        assert!(!b.use_res);
        let x = Tensor::<4>::random([1, 16, 10, 10], Distribution::Default, &device);
        assert_eq!(a.forward(x.clone()).dims(), [1, 16, 10, 10]);
        assert_eq!(b.forward(x).dims(), [1, 24, 5, 5]);
    }

    #[test]
    fn zero_projection_makes_the_block_an_identity() {
        // With the projection's BN gamma and beta at 0 the branch outputs 0, so y == x exactly.
        let device = Device::flex();
        let mut m =
            InvertedResidualConfig::new(8, 24, 8).with_se_channels(Some(8)).with_style(IrStyle::V3).init(&device);
        let bn = m.project.bn.as_mut().unwrap();
        bn.gamma = burn::module::Param::from_tensor(Tensor::zeros([8], &device));
        let x = Tensor::<4>::random([2, 8, 6, 6], Distribution::Default, &device);
        let y = m.forward(x.clone());
        let diff = (y - x).abs().max().into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }
}
