//! Squeeze-and-excitation (Hu et al.): a channel gate computed from global context.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

use crate::activation::{Act, ActKind};
use crate::trace::{Node, Trace, TraceError, Tracer, ops, trace_in};

/// Configuration of a [`SqueezeExcite`].
#[derive(Config, Debug)]
pub struct SqueezeExciteConfig {
    /// Channels of the gated tensor.
    pub channels: usize,
    /// Channels of the bottleneck.
    pub squeeze_channels: usize,
    /// Activation between the two 1x1 convs.
    #[config(default = "ActKind::Relu")]
    pub act: ActKind,
    /// The gate (`Sigmoid` in SENet, `HardSigmoid` in MobileNetV3).
    #[config(default = "ActKind::Sigmoid")]
    pub gate: ActKind,
}

impl SqueezeExciteConfig {
    /// Initializes the module.
    pub fn init(&self, device: &Device) -> SqueezeExcite {
        SqueezeExcite {
            fc1: Conv2dConfig::new([self.channels, self.squeeze_channels], [1, 1]).init(device),
            activation: Act::new(self.act),
            fc2: Conv2dConfig::new([self.squeeze_channels, self.channels], [1, 1]).init(device),
            scale_activation: Act::new(self.gate),
        }
    }
}

/// `x * gate(fc2(act(fc1(avgpool(x)))))`.
///
/// - input: `[N, C, H, W]`; output: `[N, C, H, W]`
/// - PyTorch: `torchvision.ops.SqueezeExcitation` (same child names: `fc1`, `activation`, `fc2`,
///   `scale_activation`).
///
/// The analyzer reports its output's receptive field as `"global"`: the gate sees the whole input.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    /// Squeeze 1x1 conv (with bias).
    pub fc1: Conv2d,
    /// Activation after `fc1`.
    pub activation: Act,
    /// Excite 1x1 conv (with bias).
    pub fc2: Conv2d,
    /// The gate.
    pub scale_activation: Act,
}

impl SqueezeExcite {
    /// Applies the module.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = adaptive_avg_pool2d(x.clone(), [1, 1]);
        let s = self.activation.forward(self.fc1.forward(s));
        let s = self.scale_activation.forward(self.fc2.forward(s));
        x * s
    }
}

impl Trace for SqueezeExcite {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("SqueezeExcite", 4)?;
        let s = ops::global_avg_pool(t, Some("avgpool"), &x, true)?;
        let s = trace_in(t, "fc1", &self.fc1, s)?;
        let s = trace_in(t, "activation", &self.activation, s)?;
        let s = trace_in(t, "fc2", &self.fc2, s)?;
        let s = trace_in(t, "scale_activation", &self.scale_activation, s)?;
        ops::mul(t, Some("scale"), &x, &s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;

    #[test]
    fn gate_scales_channels_by_hand_computed_values() {
        // fc1 = fc2 = 0 weights with biases: gate = sigmoid(b2) per channel, independent of x.
        let device = Device::flex();
        let mut se = SqueezeExciteConfig::new(2, 1).init(&device);
        se.fc1.weight = Param::from_tensor(Tensor::zeros([1, 2, 1, 1], &device));
        se.fc2.weight = Param::from_tensor(Tensor::zeros([2, 1, 1, 1], &device));
        se.fc2.bias = Some(Param::from_tensor(Tensor::from_floats([0.0, 2.0], &device)));
        let x = Tensor::<4>::ones([1, 2, 3, 3], &device).mul_scalar(3.0);
        let y = se.forward(x).into_data().try_to_vec::<f32>().unwrap();
        let g1 = 1.0 / (1.0 + (-2.0f32).exp());
        assert!(y[..9].iter().all(|v| (v - 1.5).abs() < 1e-6));
        assert!(y[9..].iter().all(|v| (v - 3.0 * g1).abs() < 1e-6));
    }
}
