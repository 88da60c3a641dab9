//! Max pooling that returns its indices, and max unpooling (SegNet's decoder).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Int, Tensor};

use crate::trace::{Node, OpCost, Spatial, Trace, TraceError, Tracer, cost};

/// Configuration of a [`MaxPoolWithIndices`].
#[derive(Config, Debug)]
pub struct MaxPoolWithIndicesConfig {
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Stride (PyTorch defaults it to the kernel size).
    pub stride: [usize; 2],
    /// Symmetric padding.
    #[config(default = "[0, 0]")]
    pub padding: [usize; 2],
}

impl MaxPoolWithIndicesConfig {
    /// Initializes the module.
    pub fn init(&self) -> MaxPoolWithIndices {
        MaxPoolWithIndices { kernel_size: self.kernel_size, stride: self.stride, padding: self.padding }
    }
}

/// Max pooling that also returns, per output, the flat index `h * W + w` of the maximum within
/// its `(n, c)` input plane.
///
/// - input: `[N, C, H, W]`; outputs: values and indices `[N, C, H', W']`
/// - PyTorch: `nn.MaxPool2d(..., return_indices=True)`.
#[derive(Module, Debug)]
pub struct MaxPoolWithIndices {
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding.
    pub padding: [usize; 2],
}

impl MaxPoolWithIndices {
    /// Applies the pooling.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4, Int>) {
        kiln_kernels::max_pool2d_with_indices(x, self.kernel_size, self.stride, self.padding)
    }
}

impl Trace for MaxPoolWithIndices {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("MaxPool2d", 4)?;
        let o = |i: usize| {
            cost::window_out(
                "MaxPool2d",
                x.shape[2 + i],
                self.kernel_size[i],
                self.stride[i],
                2 * self.padding[i],
                1,
                false,
            )
        };
        let out = vec![x.shape[0], x.shape[1], o(0)?, o(1)?];
        let numel: u64 = out.iter().map(|&d| d as u64).product();
        let k = (self.kernel_size[0] * self.kernel_size[1]) as u64;
        let c = OpCost::new("MaxPool2d")
            .detail(format!("k{}x{} s{} +indices", self.kernel_size[0], self.kernel_size[1], self.stride[0]))
            .flops(numel * (k - 1))
            .spatial(Spatial::Window {
                kernel: self.kernel_size.to_vec(),
                stride: self.stride.to_vec(),
                padding: self.padding.to_vec(),
                dilation: vec![1, 1],
            });
        Ok(t.op(None, &[&x], out, c))
    }
}

/// Configuration of a [`MaxUnpool2d`].
#[derive(Config, Debug)]
pub struct MaxUnpool2dConfig {
    /// Kernel size of the pooling being inverted.
    pub kernel_size: [usize; 2],
    /// Stride of the pooling being inverted.
    pub stride: [usize; 2],
    /// Padding of the pooling being inverted.
    #[config(default = "[0, 0]")]
    pub padding: [usize; 2],
}

impl MaxUnpool2dConfig {
    /// Initializes the module.
    pub fn init(&self) -> MaxUnpool2d {
        MaxUnpool2d { kernel_size: self.kernel_size, stride: self.stride, padding: self.padding }
    }
}

/// The partial inverse of max pooling: each value is written back at the position its index
/// names, every other position is zero.
///
/// - inputs: values and indices `[N, C, H', W']` (from [`MaxPoolWithIndices`] or Burn's
///   `max_pool2d_with_indices`); output: `[N, C, H, W]` with, by default,
///   `H = (H' - 1) * stride - 2 * padding + kernel` (pass `output_size` when the pooled input
///   had an odd size).
/// - PyTorch: `nn.MaxUnpool2d(kernel_size, stride, padding)`.
///
/// Overlapping pooling windows can select the same input twice; both writes carry the same value,
/// so the forward result is still exact (as in PyTorch).
#[derive(Module, Debug)]
pub struct MaxUnpool2d {
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding.
    pub padding: [usize; 2],
}

impl MaxUnpool2d {
    /// Default output spatial size for a pooled size.
    pub fn default_output_size(&self, pooled: [usize; 2]) -> [usize; 2] {
        core::array::from_fn(|i| (pooled[i] - 1) * self.stride[i] + self.kernel_size[i] - 2 * self.padding[i])
    }

    /// Unpools `x` with `indices` to `output_size` (default: [`Self::default_output_size`]).
    pub fn forward(&self, x: Tensor<4>, indices: Tensor<4, Int>, output_size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = output_size.unwrap_or_else(|| self.default_output_size([h, w]));
        // kiln's kernel on flex / ndarray (Burn's scatter elsewhere).
        kiln_kernels::max_unpool2d(x, indices, size)
    }

    /// Traces the unpooling of `x` (whose indices came from `pooled_from`, the tensor that was
    /// pooled) to `output_size`.
    pub fn trace_unpool(
        &self,
        t: &mut dyn Tracer,
        x: Node,
        output_size: Option<[usize; 2]>,
    ) -> Result<Node, TraceError> {
        x.expect_rank("MaxUnpool2d", 4)?;
        let [oh, ow] = output_size.unwrap_or_else(|| self.default_output_size([x.shape[2], x.shape[3]]));
        let out = vec![x.shape[0], x.shape[1], oh, ow];
        let c = OpCost::new("MaxUnpool2d")
            .detail(format!("k{}x{} s{}", self.kernel_size[0], self.kernel_size[1], self.stride[0]))
            .spatial(Spatial::Upsample {
                scale: vec![oh as f64 / x.shape[2] as f64, ow as f64 / x.shape[3] as f64],
                taps: vec![1, 1],
            });
        Ok(t.op(None, &[&x], out, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn roundtrip(device: &Device) {
        // 4x4 plane with a known maximum in each 2x2 window.
        #[rustfmt::skip]
        let v = vec![
            1.0f32, 9.0, 2.0, 3.0,
            4.0,    5.0, 8.0, 0.0,
            7.0,    0.5, 1.0, 1.5,
            0.0,    6.0, 2.5, 1.0,
        ];
        let x = Tensor::<4>::from_data(TensorData::new(v, [1, 1, 4, 4]), device);
        let pool = MaxPoolWithIndicesConfig::new([2, 2], [2, 2]).init();
        let (p, idx) = pool.forward(x);
        assert_eq!(p.to_data().try_to_vec::<f32>().unwrap(), vec![9.0, 8.0, 7.0, 2.5]);
        assert_eq!(idx.to_data().convert::<i64>().try_to_vec::<i64>().unwrap(), vec![1, 6, 8, 14]);
        let up = MaxUnpool2dConfig::new([2, 2], [2, 2]).init().forward(p, idx, None);
        #[rustfmt::skip]
        let expect = vec![
            0.0f32, 9.0, 0.0, 0.0,
            0.0,    0.0, 8.0, 0.0,
            7.0,    0.0, 0.0, 0.0,
            0.0,    0.0, 2.5, 0.0,
        ];
        assert_eq!(up.into_data().try_to_vec::<f32>().unwrap(), expect);
    }

    #[test]
    fn unpool_restores_maxima_in_place_flex() {
        roundtrip(&Device::flex());
    }

    #[test]
    #[allow(deprecated)]
    fn unpool_restores_maxima_in_place_ndarray() {
        roundtrip(&Device::ndarray());
    }

    #[test]
    fn unpool_is_differentiable() {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 3.0, 2.0, 0.0], [1, 1, 2, 2]), &device).require_grad();
        let (p, idx) = MaxPoolWithIndicesConfig::new([2, 2], [2, 2]).init().forward(x.clone());
        let up = MaxUnpool2dConfig::new([2, 2], [2, 2]).init().forward(p, idx, None);
        let grads = up.mul_scalar(2.0).sum().backward();
        let g = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(g, vec![0.0, 2.0, 0.0, 0.0]);
    }
}
