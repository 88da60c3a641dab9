//! Depthwise-separable convolution (MobileNetV1): a depthwise kxk conv then a pointwise 1x1.

use burn::config::Config;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::activation::{Act, ActKind};
use crate::conv_bn_act::ConvBnActConfig;
use crate::trace::{Node, Trace, TraceError, Tracer, ops, trace_in};

/// Configuration of a [`DepthwiseSeparable`].
#[derive(Config, Debug)]
pub struct DepthwiseSeparableConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Depthwise kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride of the depthwise conv.
    #[config(default = 1)]
    pub stride: usize,
    /// Dilation of the depthwise conv.
    #[config(default = 1)]
    pub dilation: usize,
    /// Activation after each norm.
    #[config(default = "ActKind::Relu")]
    pub act: ActKind,
    /// Whether the activation is also applied after the pointwise conv (MobileNetV1: yes).
    #[config(default = true)]
    pub pw_act: bool,
    /// Add the input to the output when shapes allow (stride 1, same channels).
    #[config(default = false)]
    pub skip: bool,
    /// Batch-norm epsilon.
    #[config(default = 1e-5)]
    pub bn_eps: f64,
}

impl DepthwiseSeparableConfig {
    /// Initializes the block.
    pub fn init(&self, device: &Device) -> DepthwiseSeparable {
        let dw = ConvBnActConfig::depthwise(self.in_channels, self.kernel_size, self.stride)
            .with_dilation(self.dilation)
            .with_bn_eps(self.bn_eps)
            .init(device);
        let pw = ConvBnActConfig::pointwise(self.in_channels, self.out_channels).with_bn_eps(self.bn_eps).init(device);
        DepthwiseSeparable {
            conv_dw: dw.conv,
            bn1: dw.bn.expect("norm enabled"),
            act1: Act::new(self.act),
            conv_pw: pw.conv,
            bn2: pw.bn.expect("norm enabled"),
            act2: Act::new(if self.pw_act { self.act } else { ActKind::Identity }),
            skip: self.skip && self.stride == 1 && self.in_channels == self.out_channels,
        }
    }
}

/// Depthwise conv, BN, act, pointwise conv, BN, (act), (+ input).
///
/// - input: `[N, C_in, H, W]`; output: `[N, C_out, H / stride, W / stride]`
/// - MACs: `H'W'C_in k^2 + H'W'C_in C_out`, i.e. `1/C_out + 1/k^2` of a standard conv.
/// - PyTorch: timm's `DepthwiseSeparableConv` (child names `conv_dw`, `bn1`, `conv_pw`, `bn2`;
///   timm keeps the activations inside `bn1` / `bn2`, reported here as `bn1.act`, `bn2.act`).
#[derive(Module, Debug)]
pub struct DepthwiseSeparable {
    /// Depthwise kxk conv.
    pub conv_dw: Conv2d,
    /// Norm after the depthwise conv.
    pub bn1: BatchNorm,
    /// Activation after `bn1`.
    pub act1: Act,
    /// Pointwise 1x1 conv.
    pub conv_pw: Conv2d,
    /// Norm after the pointwise conv.
    pub bn2: BatchNorm,
    /// Activation after `bn2` (identity when `pw_act` is off).
    pub act2: Act,
    /// Residual connection.
    pub skip: bool,
}

impl DepthwiseSeparable {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = crate::bn_act(&self.bn1, &self.act1, kiln_kernels::conv2d(&self.conv_dw, x.clone()));
        let y = crate::bn_act(&self.bn2, &self.act2, kiln_kernels::conv2d(&self.conv_pw, y));
        if self.skip { y + x } else { y }
    }
}

impl Trace for DepthwiseSeparable {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let y = trace_in(t, "conv_dw", &self.conv_dw, x.clone())?;
        let y = trace_in(t, "bn1", &self.bn1, y)?;
        let y = trace_in(t, "bn1.act", &self.act1, y)?;
        let y = trace_in(t, "conv_pw", &self.conv_pw, y)?;
        let y = trace_in(t, "bn2", &self.bn2, y)?;
        let y = trace_in(t, "bn2.act", &self.act2, y)?;
        if self.skip { ops::add(t, Some("skip"), &[&y, &x]) } else { Ok(y) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_and_parameter_count() {
        let device = Device::flex();
        let m = DepthwiseSeparableConfig::new(32, 64).with_stride(2).init(&device);
        let y = m.forward(Tensor::random([2, 32, 15, 15], Distribution::Default, &device));
        assert_eq!(y.dims(), [2, 64, 8, 8]);
        // dw 32*9, bn 2*32, pw 32*64, bn 2*64 (trainable) + 2*32 + 2*64 running stats
        assert_eq!(m.num_params(), 32 * 9 + 64 + 32 * 64 + 128 + 64 + 128);
    }
}
