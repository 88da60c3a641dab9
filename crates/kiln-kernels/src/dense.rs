//! Dense convolutions (one group: LeNet-5's 5x5, ResNet's 3x3 / 7x7, the mobile nets' stems)
//! as one matrix product per batch. Burn's flex convolution runs one small product per image, and
//! Burn's CPU backward computes the input gradient as a transposed convolution and the weight
//! gradient as another convolution, both slow for few channels. Here, with `K = Cin*kh*kw` and
//! `P = OH*OW`:
//!
//! - forward: `y [Cout, N*P] = W [Cout, K] x cols [K, N*P]` (im2col with the images side by side,
//!   row copies), then back to `[N, Cout, OH, OW]`;
//! - input gradient: `dcols [K, N*P] = W^T x dy [Cout, N*P]`, added back (col2im);
//! - weight gradient: `sum_n dy_n [Cout, P] x cols_n^T [P, K]` (one batched product + a sum: a
//!   single product over `N*P` has too few rows and columns for the matmul to parallelise).
//!
//! [`DenseConvBackend`] is implemented for `Flex` and `NdArray` and for `Autodiff<B, C>` with
//! this backward.

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

    /// For kernel column `kj`: the output columns `[lo, hi)` whose input column
    /// `ow * stride + off` is inside the input, and `off`.
    fn cols(&self, kj: usize) -> (usize, usize, isize) {
        let off = (kj * self.dil[1]) as isize - self.pad[1] as isize;
        let s = self.stride[1];
        let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(s) };
        let last = self.w as isize - 1 - off;
        let hi = if last < 0 { 0 } else { (last as usize / s + 1).min(self.ow) };
        (lo, hi.max(lo), off)
    }

    /// Calls `f(oh, input_row_offset, lo, hi, off)` for patch row `k` and every output row `oh`
    /// whose input row is inside the image: patch element `(k, oh * OW + ow)` is input element
    /// `input_row_offset + ow * stride + off` for `ow` in `[lo, hi)`, zero elsewhere.
    fn rows_of(&self, k: usize, mut f: impl FnMut(usize, usize, usize, usize, isize)) {
        let (ci, kk) = (k / (self.kh * self.kw), k % (self.kh * self.kw));
        let (ki, kj) = (kk / self.kw, kk % self.kw);
        let (lo, hi, off) = self.cols(kj);
        if hi <= lo {
            return;
        }
        for oh in 0..self.oh {
            let iy = (oh * self.stride[0] + ki * self.dil[0]) as isize - self.pad[0] as isize;
            if iy >= 0 && (iy as usize) < self.h {
                f(oh, (ci * self.h + iy as usize) * self.w, lo, hi, off);
            }
        }
    }
}

/// `cols` `[K, N * P]` of `x` (the images side by side in each patch row, so that the forward
/// pass is one matrix product `W [Cout, K] x cols` for the whole batch). Parallel over patch rows.
fn im2col_rows(g: &Geom, x: &[f32]) -> Vec<f32> {
    let (plane, np, p, ow, s) = (g.cin * g.h * g.w, g.n * g.p(), g.p(), g.ow, g.stride[1]);
    let mut cols = vec![0.0f32; g.k() * np];
    cols.par_chunks_mut(np).enumerate().for_each(|(k, c)| {
        for n in 0..g.n {
            let xs = &x[n * plane..(n + 1) * plane];
            let c = &mut c[n * p..(n + 1) * p];
            g.rows_of(k, |oh, row, lo, hi, off| {
                let dst = &mut c[oh * ow + lo..oh * ow + hi];
                let start = (row as isize + (lo * s) as isize + off) as usize;
                if s == 1 {
                    dst.copy_from_slice(&xs[start..start + (hi - lo)]);
                } else {
                    for (d, &v) in dst.iter_mut().zip(xs[start..].iter().step_by(s)) {
                        *d = v;
                    }
                }
            });
        }
    });
    cols
}

/// `dx` `[N, Cin, H, W]` from `dcols` `[K, N * P]` (the adjoint of [`im2col_rows`]). Parallel
/// over images.
fn col2im_rows(g: &Geom, dcols: &[f32]) -> Vec<f32> {
    let (plane, np, p, ow, s) = (g.cin * g.h * g.w, g.n * g.p(), g.p(), g.ow, g.stride[1]);
    let mut dx = vec![0.0f32; g.n * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(n, d)| {
        for k in 0..g.k() {
            let c = &dcols[k * np + n * p..k * np + (n + 1) * p];
            g.rows_of(k, |oh, row, lo, hi, off| {
                let src = &c[oh * ow + lo..oh * ow + hi];
                let start = (row as isize + (lo * s) as isize + off) as usize;
                if s == 1 {
                    for (d, &v) in d[start..start + (hi - lo)].iter_mut().zip(src) {
                        *d += v;
                    }
                } else {
                    for (d, &v) in d[start..].iter_mut().step_by(s).zip(src) {
                        *d += v;
                    }
                }
            });
        }
    });
    dx
}

/// `dy` `[N, Cout, P]` as `[Cout, N * P]` (the images side by side).
fn dy_rows(g: &Geom, cout: usize, dy: &[f32]) -> Vec<f32> {
    let (n, p) = (g.n, g.p());
    let mut out = vec![0.0f32; cout * n * p];
    out.par_chunks_mut(n * p).enumerate().for_each(|(co, row)| {
        for i in 0..n {
            row[i * p..(i + 1) * p].copy_from_slice(&dy[(i * cout + co) * p..(i * cout + co + 1) * p]);
        }
    });
    out
}

/// `[N, Cout, P]` from `[Cout, N * P]`.
fn images_first(g: &Geom, cout: usize, y: &[f32]) -> Vec<f32> {
    let (n, p) = (g.n, g.p());
    let mut out = vec![0.0f32; n * cout * p];
    out.par_chunks_mut(cout * p).enumerate().for_each(|(i, o)| {
        for co in 0..cout {
            o[co * p..(co + 1) * p].copy_from_slice(&y[co * n * p + i * p..co * n * p + (i + 1) * p]);
        }
    });
    out
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
                if !Self::is_f32(&x) || !Self::is_f32(&weight) {
                    return <Self as ModuleOps<Self>>::conv2d(x, weight, None, options);
                }
                // y [Cout, N * P] = W [Cout, K] x cols [K, N * P]: one matrix product for the
                // batch (the backend's convolution runs one small product per image).
                let w_shape = Self::dims4(&weight);
                let g = Geom::new(Self::dims4(&x), w_shape, &options);
                let cout = w_shape[0];
                let cols = Self::with_f32(&x, |xs| im2col_rows(&g, xs));
                let cols = Self::from_f32(cols, &[g.k(), g.n * g.p()]);
                let w = Self::float_reshape(weight, [cout, g.k()].into());
                let y = Self::float_matmul(w, cols);
                let y = Self::with_f32(&y, |ys| images_first(&g, cout, ys));
                Self::from_f32(y, &[g.n, cout, g.oh, g.ow])
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
                // dcols [K, N * P] = W^T [K, Cout] x dy [Cout, N * P]: one matrix product for
                // the batch.
                let dy = Self::with_f32(&grad, |d| dy_rows(&g, cout, d));
                let dy = Self::from_f32(dy, &[cout, g.n * g.p()]);
                let w_t = Self::float_swap_dims(Self::float_reshape(weight, [cout, g.k()].into()), 0, 1);
                let dcols = Self::float_matmul(w_t, dy);
                let dx = Self::with_f32(&dcols, |d| col2im_rows(&g, d));
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
                // cols [K, N, P] (the forward's layout), viewed as [N, P, K].
                let cols = Self::with_f32(&x, |xs| im2col_rows(&g, xs));
                let cols = Self::float_permute(Self::from_f32(cols, &[g.k(), g.n, g.p()]), &[1, 2, 0]);
                // dW [Cout, K] = sum_n dy_n [Cout, P] x cols_n^T [P, K].
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
