//! Small dense convolutions (one group, e.g. LeNet-5's 5x5) with a backward pass built on the
//! backend's matrix product: Burn's CPU backends compute the input gradient as a transposed
//! convolution and the weight gradient as another convolution, both slow for few channels.
//! Here, with `cols` the `[N, OH*OW, Cin*kh*kw]` patch matrix of `x` (im2col):
//!
//! - weight gradient: `sum_n dy_n [Cout, P] x cols_n [P, K]` (one batched matmul + a sum);
//! - input gradient: `dcols_n = dy_n^T [P, Cout] x W [Cout, K]`, scattered back (col2im).
//!
//! The forward pass is the backend's own convolution. [`DenseConvBackend`] is implemented for
//! `Flex` and `NdArray` and for `Autodiff<B, C>` with this backward.

// burn-ndarray is deprecated in Burn 0.22; kiln keeps supporting it (and registers the kernel for it).
#![allow(deprecated)]

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

#[cfg(feature = "flex")]
use burn::backend::Flex;
#[cfg(feature = "ndarray")]
use burn::backend::NdArray;

use crate::extension::CpuF32;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many times the backward kernels of this module ran in this process (tests use it to prove
/// that a call took the kernel path).
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// A dense (one group) 2-D convolution whose backward pass runs through matrix products.
/// Shapes: `x` `[N, Cin, H, W]`, `weight` `[Cout, Cin, kh, kw]`, `grad` `[N, Cout, OH, OW]`.
#[allow(deprecated)]
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait DenseConvBackend: Backend {
    /// The forward convolution (no bias; the public wrapper adds it).
    fn dense_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// The gradient with respect to `x`.
    fn dense_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient with respect to `weight`.
    fn dense_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// The geometry of a dense convolution.
#[derive(Clone, Copy, Debug)]
pub struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
}

impl Geom {
    fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Self {
        let [n, cin, h, w] = x;
        let [_, _, kh, kw] = weight;
        let out = |size: usize, k: usize, i: usize| {
            let span = options.dilation[i] * (k - 1) + 1;
            (size + options.padding[i].0 + options.padding[i].1 - span) / options.stride[i] + 1
        };
        Self {
            n,
            cin,
            h,
            w,
            kh,
            kw,
            oh: out(h, kh, 0),
            ow: out(w, kw, 1),
            stride: options.stride,
            pad: [options.padding[0].0, options.padding[1].0],
            dil: options.dilation,
        }
    }

    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// For every `(p, k)` the input offset inside one image, or `usize::MAX` for padding.
    fn index(&self) -> Vec<usize> {
        let (k, p) = (self.k(), self.p());
        let mut idx = vec![usize::MAX; p * k];
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let row = &mut idx[(oy * self.ow + ox) * k..(oy * self.ow + ox + 1) * k];
                for ci in 0..self.cin {
                    for ki in 0..self.kh {
                        let iy = (oy * self.stride[0] + ki * self.dil[0]) as isize - self.pad[0] as isize;
                        if iy < 0 || iy as usize >= self.h {
                            continue;
                        }
                        for kj in 0..self.kw {
                            let ix = (ox * self.stride[1] + kj * self.dil[1]) as isize - self.pad[1] as isize;
                            if ix >= 0 && (ix as usize) < self.w {
                                row[(ci * self.kh + ki) * self.kw + kj] =
                                    (ci * self.h + iy as usize) * self.w + ix as usize;
                            }
                        }
                    }
                }
            }
        }
        idx
    }
}

/// `cols` `[N, P, K]` of `x` `[N, Cin, H, W]`.
fn im2col(g: &Geom, x: &[f32]) -> Vec<f32> {
    let idx = g.index();
    let (plane, pk) = (g.cin * g.h * g.w, g.p() * g.k());
    let mut cols = vec![0.0f32; g.n * pk];
    cols.par_chunks_mut(pk).enumerate().for_each(|(n, c)| {
        let xs = &x[n * plane..(n + 1) * plane];
        for (v, &i) in c.iter_mut().zip(&idx) {
            if i != usize::MAX {
                *v = xs[i];
            }
        }
    });
    cols
}

/// `dx` `[N, Cin, H, W]` from `dcols` `[N, P, K]` (the adjoint of [`im2col`]).
fn col2im(g: &Geom, dcols: &[f32]) -> Vec<f32> {
    let idx = g.index();
    let (plane, pk) = (g.cin * g.h * g.w, g.p() * g.k());
    let mut dx = vec![0.0f32; g.n * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(n, d)| {
        for (&v, &i) in dcols[n * pk..(n + 1) * pk].iter().zip(&idx) {
            if i != usize::MAX {
                d[i] += v;
            }
        }
    });
    dx
}

macro_rules! cpu_impl {
    ($backend:ty, $feature:literal) => {
        #[cfg(feature = $feature)]
        #[allow(deprecated)]
        impl DenseConvBackend for $backend {
            fn dense_conv2d(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                <Self as ModuleOps<Self>>::conv2d(x, weight, None, options)
            }

            fn dense_conv2d_x_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                if !Self::is_f32(&grad) || !Self::is_f32(&weight) {
                    return <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, grad, options);
                }
                CALLS.fetch_add(1, Ordering::Relaxed);
                let x_shape = Self::dims4(&x);
                let w_shape = Self::dims4(&weight);
                let g = Geom::new(x_shape, w_shape, &options);
                let cout = w_shape[0];
                // dcols [N, P, K] = dy^T [N, P, Cout] x W [Cout, K].
                let dy = burn::backend::TensorMetadata::shape(&grad);
                let dy = Self::float_reshape(grad, [dy[0], cout, g.p()].into());
                let dy_t = Self::float_swap_dims(dy, 1, 2);
                let w2 = Self::float_reshape(weight, [1, cout, g.k()].into());
                let dcols = Self::float_matmul(dy_t, w2);
                let dx = Self::with_f32(&dcols, |d| col2im(&g, d));
                Self::from_f32(dx, &x_shape)
            }

            fn dense_conv2d_weight_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                if !Self::is_f32(&grad) || !Self::is_f32(&x) {
                    return <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, grad, options);
                }
                CALLS.fetch_add(1, Ordering::Relaxed);
                let w_shape = Self::dims4(&weight);
                let g = Geom::new(Self::dims4(&x), w_shape, &options);
                let cout = w_shape[0];
                let cols = Self::with_f32(&x, |xs| im2col(&g, xs));
                let cols = Self::from_f32(cols, &[g.n, g.p(), g.k()]);
                // dW [Cout, K] = sum_n dy_n [Cout, P] x cols_n [P, K].
                let dy = Self::float_reshape(grad, [g.n, cout, g.p()].into());
                let dw = Self::float_sum_dim(Self::float_matmul(dy, cols), 0);
                Self::float_reshape(dw, w_shape.into())
            }
        }
    };
}

cpu_impl!(Flex, "flex");
cpu_impl!(NdArray, "ndarray");

#[derive(Debug)]
struct DenseConv;

impl<B: Backend + DenseConvBackend> Backward<B, 2> for DenseConv {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = node_x {
            let dx = B::dense_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::dense_conv2d_weight_backward(x, weight, grad, options));
        }
    }
}

impl<B: Backend + DenseConvBackend, C: CheckpointStrategy> DenseConvBackend for Autodiff<B, C> {
    fn dense_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        match DenseConv.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::dense_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::dense_conv2d(x.into_primitive(), weight.into_primitive(), options))
            }
        }
    }

    fn dense_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let out =
            B::dense_conv2d_x_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive(), options);
        Self::from_inner(out)
    }

    fn dense_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let out = B::dense_conv2d_weight_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
            options,
        );
        Self::from_inner(out)
    }
}
