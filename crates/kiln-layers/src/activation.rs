//! Activations as one configurable module, so blocks can take "which activation" as config.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation as act;

use crate::trace::{Node, Trace, TraceError, Tracer, cost};

/// Which activation. The PyTorch twin of each variant is given on it.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum ActKind {
    /// No activation (`nn.Identity`).
    Identity,
    /// `max(0, x)` (`nn.ReLU`).
    Relu,
    /// `min(max(0, x), 6)` (`nn.ReLU6`).
    Relu6,
    /// `x` if `x > 0` else `slope * x` (`nn.LeakyReLU(slope)`).
    LeakyRelu(f64),
    /// `1 / (1 + e^-x)` (`nn.Sigmoid`).
    Sigmoid,
    /// `tanh(x)` (`nn.Tanh`).
    Tanh,
    /// `x * sigmoid(x)`, a.k.a. SiLU (`nn.SiLU`).
    Swish,
    /// MobileNetV3's hard sigmoid `ReLU6(x + 3) / 6` (`nn.Hardsigmoid`). Note Burn's
    /// `HardSigmoid` defaults to slope 0.2, which is *not* this function.
    HardSigmoid,
    /// The older hard sigmoid `max(0, min(1, (x + 1) / 2))` (Courbariaux et al., BinaryConnect).
    HardSigmoidLegacy,
    /// `x * ReLU6(x + 3) / 6` (`nn.Hardswish`).
    HardSwish,
}

impl ActKind {
    /// Name used in reports, matching the PyTorch class.
    pub fn name(&self) -> &'static str {
        match self {
            ActKind::Identity => "Identity",
            ActKind::Relu => "ReLU",
            ActKind::Relu6 => "ReLU6",
            ActKind::LeakyRelu(_) => "LeakyReLU",
            ActKind::Sigmoid => "Sigmoid",
            ActKind::Tanh => "Tanh",
            ActKind::Swish => "SiLU",
            ActKind::HardSigmoid => "Hardsigmoid",
            ActKind::HardSigmoidLegacy => "HardSigmoid(legacy)",
            ActKind::HardSwish => "Hardswish",
        }
    }

    /// FLOPs per element (see [`cost::FLOP_CONVENTION`]).
    pub fn flops_per_element(&self) -> u64 {
        match self {
            ActKind::Identity => 0,
            ActKind::Relu => 1,
            ActKind::Relu6 | ActKind::LeakyRelu(_) => 2,
            ActKind::HardSigmoid | ActKind::HardSigmoidLegacy => 3,
            ActKind::HardSwish | ActKind::Sigmoid => 4,
            ActKind::Swish | ActKind::Tanh => 5,
        }
    }

    /// The bounds `(lo, hi)` when the activation is `clamp(x, lo, hi)` (identity, ReLU, ReLU6),
    /// which kiln's batch-norm kernel can apply in the same pass.
    pub fn clamp_bounds(&self) -> Option<(f32, f32)> {
        match self {
            ActKind::Identity => Some((f32::NEG_INFINITY, f32::INFINITY)),
            ActKind::Relu => Some((0.0, f32::INFINITY)),
            ActKind::Relu6 => Some((0.0, 6.0)),
            _ => None,
        }
    }

    /// Applies the activation.
    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            ActKind::Identity => x,
            ActKind::Relu => act::relu(x),
            ActKind::Relu6 => kiln_kernels::relu6(x),
            ActKind::LeakyRelu(slope) => act::leaky_relu(x, *slope),
            ActKind::Sigmoid => act::sigmoid(x),
            ActKind::Tanh => act::tanh(x),
            ActKind::Swish => act::silu(x),
            ActKind::HardSigmoid => act::hard_sigmoid(x, 1.0 / 6.0, 0.5),
            ActKind::HardSigmoidLegacy => act::hard_sigmoid(x, 0.5, 0.5),
            ActKind::HardSwish => {
                let gate = act::hard_sigmoid(x.clone(), 1.0 / 6.0, 0.5);
                x * gate
            }
        }
    }
}

/// An activation layer.
///
/// - input: any shape; output: the same shape.
/// - PyTorch: `nn.ReLU`, `nn.ReLU6`, `nn.LeakyReLU`, `nn.Sigmoid`, `nn.Tanh`, `nn.SiLU`,
///   `nn.Hardsigmoid`, `nn.Hardswish`, `nn.Identity` (see [`ActKind`]).
#[derive(Module, Debug)]
pub struct Act {
    /// The function applied.
    #[module(skip)]
    pub kind: ActKind,
}

impl Act {
    /// A new activation layer.
    pub fn new(kind: ActKind) -> Self {
        Self { kind }
    }

    /// Applies the activation.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.kind.apply(x)
    }

    /// Whether it is the identity.
    pub fn is_identity(&self) -> bool {
        self.kind == ActKind::Identity
    }
}

impl Trace for Act {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        if self.is_identity() {
            return Ok(x);
        }
        let c = cost::elementwise(self.kind.name(), &x, self.kind.flops_per_element());
        let out = x.shape.clone();
        Ok(t.op(None, &[&x], out, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor, TensorData};

    fn eval(kind: ActKind, xs: &[f32]) -> Vec<f32> {
        let device = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), &device);
        Act::new(kind).forward(x).into_data().try_to_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn hard_sigmoid_both_definitions() {
        let xs = [-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 4.0];
        // ReLU6(x + 3) / 6
        close(&eval(ActKind::HardSigmoid, &xs), &[0.0, 0.0, 2.0 / 6.0, 0.5, 4.0 / 6.0, 1.0, 1.0]);
        // max(0, min(1, (x + 1) / 2))
        close(&eval(ActKind::HardSigmoidLegacy, &xs), &[0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn hard_swish_swish_relu6_leaky() {
        let xs = [-4.0, -1.0, 0.0, 1.0, 4.0, 7.0];
        close(&eval(ActKind::HardSwish, &xs), &[0.0, -1.0 * 2.0 / 6.0, 0.0, 4.0 / 6.0, 4.0, 7.0]);
        let sw: Vec<f32> = xs.iter().map(|&x: &f32| x / (1.0 + (-x).exp())).collect();
        close(&eval(ActKind::Swish, &xs), &sw);
        close(&eval(ActKind::Relu6, &xs), &[0.0, 0.0, 0.0, 1.0, 4.0, 6.0]);
        close(&eval(ActKind::LeakyRelu(0.1), &xs), &[-0.4, -0.1, 0.0, 1.0, 4.0, 7.0]);
        close(&eval(ActKind::Relu, &xs), &[0.0, 0.0, 0.0, 1.0, 4.0, 7.0]);
        let th: Vec<f32> = xs.iter().map(|x: &f32| x.tanh()).collect();
        close(&eval(ActKind::Tanh, &xs), &th);
    }
}
