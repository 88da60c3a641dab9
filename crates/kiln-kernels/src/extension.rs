//! The depthwise convolution as a Burn backend extension: [`DepthwiseConvBackend`] is implemented
//! for `Flex` and `NdArray` with the loops of [`crate::depthwise_cpu`], and for `Autodiff<B, C>`
//! with a hand-written backward pass (input and weight gradients) that calls the same loops.
//! `#[backend_extension]` generates the runtime dispatch from Burn's `Dispatch` backend, which is
//! what a `Tensor<D>` holds.

// burn-ndarray is deprecated in Burn 0.22; kiln keeps supporting it (and registers the kernel for it).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::ops::ConvOptions;

#[cfg(feature = "flex")]
use burn::backend::Flex;
#[cfg(feature = "ndarray")]
use burn::backend::NdArray;

use crate::depthwise_cpu::{self, DwGeom};

/// A depthwise convolution (`groups == in_channels == out_channels`, one filter per channel) and
/// its gradients, on backends with a direct kernel.
///
/// Shapes: `x` `[N, C, H, W]`, `weight` `[C, 1, kh, kw]`, output / `grad`
/// `[N, C, OH, OW]`. `options` are Burn's convolution options with `groups == C`.
#[allow(deprecated)]
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait DepthwiseConvBackend: Backend {
    /// The forward convolution (without bias: the public wrapper adds it).
    fn depthwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// The gradient with respect to `x` (`x` gives the input shape).
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient with respect to `weight`.
    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// The geometry of a call; panics with a message naming the mismatch (the public wrapper checks
/// shapes before it gets here).
fn geometry(x_shape: [usize; 4], w_shape: [usize; 4], options: &ConvOptions<2>) -> DwGeom {
    assert!(
        w_shape[0] == x_shape[1] && w_shape[1] == 1 && options.groups == x_shape[1],
        "depthwise kernel: weight {w_shape:?} and groups {} do not describe a depthwise convolution of an input {x_shape:?}",
        options.groups
    );
    DwGeom::new(x_shape, [w_shape[2], w_shape[3]], options.stride, options.padding, options.dilation)
        .unwrap_or_else(|| panic!("depthwise kernel: empty output for input {x_shape:?}, kernel {w_shape:?}"))
}

/// Access to contiguous `f32` data of a concrete CPU backend's tensors.
pub(crate) trait CpuF32: Backend {
    fn is_f32(t: &FloatTensor<Self>) -> bool;
    fn dims4(t: &FloatTensor<Self>) -> [usize; 4];
    fn dims(t: &FloatTensor<Self>) -> Vec<usize> {
        burn::backend::TensorMetadata::shape(t).to_vec()
    }
    /// Runs `f` on the tensor's elements in row-major order (borrowed when contiguous).
    fn with_f32<R>(t: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> R;
    fn from_f32(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Self>;
}

#[cfg(feature = "flex")]
impl CpuF32 for Flex {
    fn is_f32(t: &FloatTensor<Self>) -> bool {
        t.dtype() == burn::tensor::DType::F32
    }
    fn dims4(t: &FloatTensor<Self>) -> [usize; 4] {
        t.layout().shape().dims::<4>()
    }
    fn with_f32<R>(t: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> R {
        match t.as_slice::<f32>() {
            Some(s) => f(s),
            None => f(t.to_contiguous().as_slice::<f32>().expect("contiguous f32 tensor")),
        }
    }
    fn from_f32(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Self> {
        burn::backend::flex::FlexTensor::from_data(burn::tensor::TensorData::new(values, shape.to_vec()))
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
impl CpuF32 for NdArray {
    fn is_f32(t: &FloatTensor<Self>) -> bool {
        matches!(t, burn::backend::ndarray::NdArrayTensor::F32(_))
    }
    fn dims4(t: &FloatTensor<Self>) -> [usize; 4] {
        use burn::backend::TensorMetadata;
        t.shape().dims::<4>()
    }
    fn with_f32<R>(t: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> R {
        match t {
            burn::backend::ndarray::NdArrayTensor::F32(storage) => {
                let view = storage.view();
                match view.as_slice() {
                    Some(s) => f(s),
                    None => f(&view.iter().copied().collect::<Vec<f32>>()),
                }
            }
            other => panic!("depthwise kernel: expected an f32 tensor, got {other:?}"),
        }
    }
    fn from_f32(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Self> {
        burn::backend::ndarray::NdArrayTensor::from_data(burn::tensor::TensorData::new(values, shape.to_vec()))
    }
}

/// The concrete implementation shared by the CPU backends. Non-`f32` tensors go to Burn's own
/// convolution ops.
macro_rules! cpu_impl {
    ($backend:ty, $feature:literal) => {
        #[cfg(feature = $feature)]
        #[allow(deprecated)]
        impl DepthwiseConvBackend for $backend {
            fn depthwise_conv2d(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                if !Self::is_f32(&x) || !Self::is_f32(&weight) {
                    return <Self as burn::backend::ops::ModuleOps<Self>>::conv2d(x, weight, None, options);
                }
                let g = geometry(Self::dims4(&x), Self::dims4(&weight), &options);
                let out =
                    Self::with_f32(&x, |xs| Self::with_f32(&weight, |ws| depthwise_cpu::forward(&g, xs, ws, None)));
                Self::from_f32(out, &g.out_shape())
            }

            fn depthwise_conv2d_x_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                if !Self::is_f32(&grad) || !Self::is_f32(&weight) {
                    return <Self as burn::backend::ops::ModuleOps<Self>>::conv2d_x_backward(x, weight, grad, options);
                }
                let x_shape = Self::dims4(&x);
                let g = geometry(x_shape, Self::dims4(&weight), &options);
                let dx =
                    Self::with_f32(&grad, |gs| Self::with_f32(&weight, |ws| depthwise_cpu::input_grad(&g, gs, ws)));
                Self::from_f32(dx, &x_shape)
            }

            fn depthwise_conv2d_weight_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                if !Self::is_f32(&grad) || !Self::is_f32(&x) {
                    return <Self as burn::backend::ops::ModuleOps<Self>>::conv2d_weight_backward(
                        x, weight, grad, options,
                    );
                }
                let w_shape = Self::dims4(&weight);
                let g = geometry(Self::dims4(&x), w_shape, &options);
                let dw = Self::with_f32(&x, |xs| Self::with_f32(&grad, |gs| depthwise_cpu::weight_grad(&g, xs, gs)));
                Self::from_f32(dw, &w_shape)
            }
        }
    };
}

cpu_impl!(Flex, "flex");
cpu_impl!(NdArray, "ndarray");

#[derive(Debug)]
struct DepthwiseNoBias;

impl<B: Backend + DepthwiseConvBackend> Backward<B, 2> for DepthwiseNoBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = node_x {
            let dx = B::depthwise_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::depthwise_conv2d_weight_backward(x, weight, grad, options));
        }
    }
}

impl<B: Backend + DepthwiseConvBackend, C: CheckpointStrategy> DepthwiseConvBackend for Autodiff<B, C> {
    fn depthwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        match DepthwiseNoBias.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::depthwise_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::depthwise_conv2d(x.into_primitive(), weight.into_primitive(), options))
            }
        }
    }

    // The gradient ops are not themselves differentiated (no double backward): they compute on
    // the inner backend and return untracked tensors.
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let out =
            B::depthwise_conv2d_x_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive(), options);
        <Self as burn::backend::AutodiffBackend>::from_inner(out)
    }

    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let out = B::depthwise_conv2d_weight_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
            options,
        );
        <Self as burn::backend::AutodiffBackend>::from_inner(out)
    }
}
