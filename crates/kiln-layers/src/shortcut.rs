//! Shortcut merges: addition (ResNet, MobileNetV2) and concatenation (DenseNet, U-Net).

use burn::module::Module;
use burn::tensor::Tensor;

use crate::trace::{Node, TraceError, Tracer, ops};

/// Element-wise sum of same-shape tensors.
///
/// - inputs: k tensors `[N, C, H, W]`; output: `[N, C, H, W]`
/// - PyTorch: `x + identity` in torchvision's ResNet `BasicBlock` / `Bottleneck`.
#[derive(Module, Debug, Default)]
pub struct Add;

impl Add {
    /// Sums the inputs.
    ///
    /// # Panics
    /// On an empty list.
    pub fn forward<const D: usize>(&self, xs: Vec<Tensor<D>>) -> Tensor<D> {
        xs.into_iter().reduce(|a, b| a + b).expect("Add needs at least one input")
    }

    /// Traces the sum.
    pub fn trace(&self, t: &mut dyn Tracer, xs: &[&Node]) -> Result<Node, TraceError> {
        ops::add(t, None, xs)
    }
}

/// Concatenation along the channel dimension (or another `dim`).
///
/// - inputs: `[N, C_i, H, W]`; output: `[N, sum C_i, H, W]`
/// - PyTorch: `torch.cat(xs, 1)` in DenseNet's dense layers and U-Net's skips.
#[derive(Module, Debug)]
pub struct Concat {
    /// Dimension to concatenate along (1 = channels).
    pub dim: usize,
}

impl Default for Concat {
    fn default() -> Self {
        Self { dim: 1 }
    }
}

impl Concat {
    /// Concatenates the inputs.
    pub fn forward<const D: usize>(&self, xs: Vec<Tensor<D>>) -> Tensor<D> {
        Tensor::cat(xs, self.dim)
    }

    /// Traces the concatenation.
    pub fn trace(&self, t: &mut dyn Tracer, xs: &[&Node]) -> Result<Node, TraceError> {
        ops::concat(t, None, xs, self.dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn add_and_concat_values() {
        let device = Device::flex();
        let a = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 1, 1, 2]), &device);
        let b = Tensor::<4>::from_data(TensorData::new(vec![10.0f32, 20.0], [1, 1, 1, 2]), &device);
        assert_eq!(Add.forward(vec![a.clone(), b.clone()]).into_data().try_to_vec::<f32>().unwrap(), vec![11.0, 22.0]);
        let c = Concat::default().forward(vec![a, b]);
        assert_eq!(c.dims(), [1, 2, 1, 2]);
        assert_eq!(c.into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 2.0, 10.0, 20.0]);
    }
}
