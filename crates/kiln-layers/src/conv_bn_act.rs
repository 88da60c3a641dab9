//! Convolution + batch norm + activation: torchvision's `Conv2dNormActivation`, the unit every
//! CNN in the zoo is made of. Covers standard, dilated, grouped, depthwise and 1x1 convolutions.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use crate::activation::{Act, ActKind};
use crate::trace::{Node, Trace, TraceError, Tracer, trace_in};

/// Configuration of a [`ConvBnAct`].
#[derive(Config, Debug)]
pub struct ConvBnActConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Dilation (atrous rate).
    #[config(default = 1)]
    pub dilation: usize,
    /// Groups (`in_channels` for a depthwise convolution).
    #[config(default = 1)]
    pub groups: usize,
    /// Symmetric padding; `None` means torchvision's default `(kernel_size - 1) / 2 * dilation`,
    /// which keeps the spatial size at stride 1.
    #[config(default = "None")]
    pub padding: Option<usize>,
    /// Whether a batch norm follows the convolution.
    #[config(default = true)]
    pub norm: bool,
    /// Whether the convolution has a bias; `None` means "only when there is no norm".
    #[config(default = "None")]
    pub bias: Option<bool>,
    /// The activation after the norm.
    #[config(default = "ActKind::Relu")]
    pub act: ActKind,
    /// Batch-norm epsilon (PyTorch default 1e-5; torchvision's MobileNetV3 uses 1e-3).
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// Batch-norm momentum, PyTorch's convention (0.1 default; MobileNetV3 uses 0.01).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
}

impl ConvBnActConfig {
    /// A depthwise convolution (`groups = channels`).
    pub fn depthwise(channels: usize, kernel_size: usize, stride: usize) -> Self {
        Self::new(channels, channels).with_kernel_size(kernel_size).with_stride(stride).with_groups(channels)
    }

    /// A 1x1 (pointwise) convolution.
    pub fn pointwise(in_channels: usize, out_channels: usize) -> Self {
        Self::new(in_channels, out_channels).with_kernel_size(1)
    }

    /// Initializes the block. Convolutions use torchvision's Kaiming-normal (fan-out) init,
    /// batch norms ones / zeros.
    pub fn init(&self, device: &Device) -> ConvBnAct {
        let pad = self.padding.unwrap_or((self.kernel_size - 1) / 2 * self.dilation);
        let conv = Conv2dConfig::new([self.in_channels, self.out_channels], [self.kernel_size; 2])
            .with_stride([self.stride; 2])
            .with_dilation([self.dilation; 2])
            .with_groups(self.groups)
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(self.bias.unwrap_or(!self.norm))
            .with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true })
            .init(device);
        let bn = self.norm.then(|| {
            BatchNormConfig::new(self.out_channels)
                .with_epsilon(self.bn_eps)
                .with_momentum(self.bn_momentum)
                .init(device)
        });
        ConvBnAct { conv, bn, act: Act::new(self.act) }
    }
}

/// Convolution, optional batch norm, activation.
///
/// - input: `[N, C_in, H, W]`
/// - output: `[N, C_out, (H + 2p - d(k-1) - 1) / s + 1, (W + ...) / s + 1]`
/// - PyTorch: `torchvision.ops.Conv2dNormActivation`; its children are named `0` (conv),
///   `1` (norm), `2` (activation), and so are the rows the analyzer reports.
#[derive(Module, Debug)]
pub struct ConvBnAct {
    /// The convolution.
    pub conv: Conv2d,
    /// The batch norm, if any.
    pub bn: Option<BatchNorm>,
    /// The activation.
    pub act: Act,
}

impl ConvBnAct {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = kiln_kernels::conv2d(&self.conv, x);
        match &self.bn {
            Some(bn) => bn_act(bn, &self.act, x),
            None => self.act.forward(x),
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.conv.weight.lazy_shape().dims::<4>()[0]
    }

    /// Folds the batch norm into the convolution for inference: `w' = w * g / sqrt(v + eps)`,
    /// `b' = (b - m) * g / sqrt(v + eps) + beta`. The result has no norm and a biased conv, and
    /// gives the same outputs as this block in inference mode.
    pub fn fold_bn(self) -> ConvBnAct {
        let Some(bn) = self.bn else { return self };
        let conv = fold_bn_into_conv(self.conv, &bn);
        ConvBnAct { conv, bn: None, act: self.act }
    }
}

/// `act(bn(x))` through kiln's batch-norm kernel, which applies a ReLU / ReLU6 in the same pass
/// (inference) or right after it (training); other activations follow it.
pub fn bn_act<const D: usize>(bn: &BatchNorm, act: &Act, x: Tensor<D>) -> Tensor<D> {
    match act.kind.clamp_bounds() {
        Some((lo, hi)) => kiln_kernels::batch_norm_act(bn, x, lo, hi),
        None => act.forward(kiln_kernels::batch_norm(bn, x)),
    }
}

/// Folds an inference-mode batch norm into the preceding convolution (see
/// [`ConvBnAct::fold_bn`]).
pub fn fold_bn_into_conv(mut conv: Conv2d, bn: &BatchNorm) -> Conv2d {
    let w = conv.weight.val();
    let [c_out, _, _, _] = w.dims();
    let device = w.device();
    let scale = bn.gamma.val().div(bn.running_var.value().to_device(&device).add_scalar(bn.epsilon).sqrt());
    let mean = bn.running_mean.value().to_device(&device);
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([c_out], &device),
    };
    let new_w = w.mul(scale.clone().reshape([c_out, 1, 1, 1]));
    let new_b = bias.sub(mean).mul(scale).add(bn.beta.val());
    // The folded values are new leaves: on an autodiff device (a model folded before QAT or
    // fine-tuning) they must not carry the graph that computed them.
    conv.weight = Param::from_tensor(new_w.detach());
    conv.bias = Some(Param::from_tensor(new_b.detach()));
    conv
}

impl Trace for ConvBnAct {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let mut x = trace_in(t, "0", &self.conv, x)?;
        let mut idx = 1;
        if let Some(bn) = &self.bn {
            x = trace_in(t, "1", bn, x)?;
            idx = 2;
        }
        trace_in(t, &idx.to_string(), &self.act, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn padding_keeps_size_and_stride_halves() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 8, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        for (k, d, s, expect) in [(3, 1, 1, 9), (3, 2, 1, 9), (5, 1, 2, 5), (3, 3, 2, 5), (1, 1, 1, 9)] {
            let m = ConvBnActConfig::new(8, 4).with_kernel_size(k).with_dilation(d).with_stride(s).init(&device);
            assert_eq!(m.forward(x.clone()).dims(), [1, 4, expect, expect], "k{k} d{d} s{s}");
        }
        let dw = ConvBnActConfig::depthwise(8, 3, 1).init(&device);
        assert_eq!(dw.conv.weight.dims(), [8, 1, 3, 3]);
        assert!(dw.conv.bias.is_none());
    }

    #[test]
    fn relu_output_is_nonnegative_and_bn_normalises() {
        // A 1x1 conv with weight 1 and a BN in inference mode with mean 1, var 4:
        // y = relu((x - 1) / sqrt(4 + eps)).
        let device = Device::flex();
        let mut m = ConvBnActConfig::pointwise(1, 1).init(&device);
        m.conv.weight = Param::from_tensor(Tensor::ones([1, 1, 1, 1], &device));
        let bn = m.bn.as_mut().unwrap();
        bn.running_mean = burn::module::RunningState::new(Tensor::ones([1], &device));
        bn.running_var = burn::module::RunningState::new(Tensor::ones([1], &device).mul_scalar(4.0));
        let x = Tensor::<4>::from_data(TensorData::new(vec![-3.0f32, 1.0, 3.0, 5.0], [1, 1, 2, 2]), &device);
        let y = m.forward(x).into_data().try_to_vec::<f32>().unwrap();
        let s = (4.0f32 + 1e-5).sqrt();
        for (a, b) in y.iter().zip([0.0, 0.0, 2.0 / s, 4.0 / s]) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn bn_folding_preserves_outputs() {
        let device = Device::flex();
        let mut m = ConvBnActConfig::new(4, 6).with_stride(2).with_act(ActKind::Relu6).init(&device);
        let bn = m.bn.as_mut().unwrap();
        bn.gamma = Param::from_tensor(Tensor::random([6], Distribution::Uniform(0.5, 1.5), &device));
        bn.beta = Param::from_tensor(Tensor::random([6], Distribution::Normal(0.0, 1.0), &device));
        bn.running_mean = burn::module::RunningState::new(Tensor::random([6], Distribution::Normal(0.0, 1.0), &device));
        bn.running_var = burn::module::RunningState::new(Tensor::random([6], Distribution::Uniform(0.5, 2.0), &device));
        let x = Tensor::<4>::random([2, 4, 11, 11], Distribution::Normal(0.0, 1.0), &device);
        let before = m.forward(x.clone());
        let folded = m.fold_bn();
        assert!(folded.bn.is_none() && folded.conv.bias.is_some());
        let after = folded.forward(x);
        let max_ref = before.clone().abs().max().into_scalar::<f32>();
        let diff = (before - after).abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-5 * max_ref.max(1.0), "diff {diff}");
    }
}
