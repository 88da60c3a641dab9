//! Dense convolutions (one group: LeNet-5's 5x5, ResNet's 3x3 / 7x7, the mobile nets' stems)
//! as matrix products over the whole batch. Burn's flex convolution runs one small product per
//! image, and Burn's CPU backward computes the input gradient as a transposed convolution and the
//! weight gradient as another convolution, both slow for few channels. Here, with
//! `K = Cin*kh*kw` and `P = OH*OW`:
//!
//! - forward: `cols [K, N*P]` (im2col with the images side by side, row copies), then
//!   `y_n [Cout, P] = W [Cout, K] x cols[:, n]` written straight into `[N, Cout, OH, OW]`;
//! - input gradient: `dcols_n [K, P] = W^T x dy_n`, added back into the image (col2im) while it
//!   is still in cache, image by image;
//! - weight gradient: `dW [Cout, K] = dy [Cout, N*P] x cols^T`, dot products over `N*P`.
//!
//! The products run through [`crate::gemm`] (short inner dimension, no packing): for LeNet-5's
//! shapes the `gemm` crate behind burn-flex's matmul was 2-4x slower. Under autodiff the forward's
//! `cols` is kept for the weight gradient when it is small ([`KEEP_COLS_MAX`] elements), so
//! im2col runs once per step; larger ones are rebuilt from the checkpointed input.
//!
//! [`DenseConvBackend`] is implemented for `Flex` and `NdArray` and for `Autodiff<B, C>` with
//! this backward.

// burn-ndarray is deprecated in Burn 0.22; kiln keeps supporting it (and registers the kernel for it).
#![allow(deprecated)]

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::TensorMetadata;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

#[cfg(feature = "flex")]
use burn::backend::Flex;
#[cfg(feature = "ndarray")]
use burn::backend::NdArray;

use crate::extension::CpuF32;
use crate::gemm::{self, SendPtr, View};

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many times the backward kernels of this module ran in this process (tests use it to prove
/// that a call took the kernel path).
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// A dense (one group) 2-D convolution through im2col and matrix products. Shapes: `x`
/// `[N, Cin, H, W]`, `weight` `[Cout, Cin, kh, kw]`, `cols` `[K, N*P]`, `dy_rows` `[Cout, N*P]`.
#[allow(deprecated)]
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait DenseConvBackend: Backend {
    /// The forward convolution (no bias; the public wrapper adds it).
    fn dense_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// The patch matrix `cols [K, N*P]` of `x` for a kernel of `weight`'s shape.
    fn dense_im2col(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// The forward convolution of the input of shape `x_dims` from its patch matrix.
    fn dense_conv2d_cols(
        cols: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        x_dims: [usize; 4],
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The output gradient `[N, Cout, OH, OW]` as `[Cout, N*P]` (the images side by side).
    fn dense_dy_rows(grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradient with respect to `x` (shape `x_dims`).
    fn dense_conv2d_x_backward(
        dy_rows: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        x_dims: [usize; 4],
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient with respect to `weight`.
    fn dense_conv2d_weight_backward(
        cols: FloatTensor<Self>,
        dy_rows: FloatTensor<Self>,
        weight: FloatTensor<Self>,
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

/// One `K x 32` panel of `B` for [`gemm::matmul_panels`]: the patches of output positions
/// `[q0, q1)` (at most 32) of one image `xs`, patch row `k`'s 32 values at `k * 32`, zero for
/// padding and past `q1`. Compiled for AVX-512 on x86-64 (the packed path runs only there): the
/// zero fill and the row copies are zmm moves (`copy_from_slice` here was a `memmove` call per
/// row segment).
///
/// # Safety
/// On x86-64 the CPU must have AVX-512F.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn fill_panel(g: &Geom, xs: &[f32], q0: usize, q1: usize, chunk: &mut [f32]) {
    const NR: usize = gemm::PANEL_COLS;
    let (ow, s) = (g.ow, g.stride[1]);
    for (kk, row) in chunk.chunks_exact_mut(NR).enumerate() {
        row.fill(0.0);
        let (ci, rest) = (kk / (g.kh * g.kw), kk % (g.kh * g.kw));
        let (ki, kj) = (rest / g.kw, rest % g.kw);
        let (lo, hi, off) = g.cols(kj);
        let mut q = q0;
        while q < q1 {
            let (oh, a) = (q / ow, q % ow);
            let b = (a + (q1 - q)).min(ow);
            let iy = (oh * g.stride[0] + ki * g.dil[0]) as isize - g.pad[0] as isize;
            let (a2, b2) = (a.max(lo), b.min(hi));
            if iy >= 0 && (iy as usize) < g.h && a2 < b2 {
                let start = (((ci * g.h + iy as usize) * g.w) as isize + (a2 * s) as isize + off) as usize;
                let d = &mut row[q - q0 + (a2 - a)..q - q0 + (b2 - a)];
                if s == 1 {
                    // SAFETY: AVX-512F is present (this function's contract).
                    unsafe { copy_run(d, &xs[start..start + (b2 - a2)]) };
                } else {
                    for (d, &v) in d.iter_mut().zip(xs[start..].iter().step_by(s)) {
                        *d = v;
                    }
                }
            }
            q += b - a;
        }
    }
}

/// `dst.copy_from_slice(src)` for runs of at most 32 values: two masked zmm moves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn copy_run(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::*;
    let n = dst.len();
    assert!(n == src.len() && n <= 32, "copy_run: runs are at most 32 values");
    let lanes = |w: usize| if w >= 16 { 0xFFFFu16 } else { ((1u32 << w) - 1) as u16 };
    let (m0, m1) = (lanes(n), lanes(n.saturating_sub(16)));
    // SAFETY: the masks cover exactly the first `n` lanes, inside both slices (asserted above).
    unsafe {
        _mm512_mask_storeu_ps(dst.as_mut_ptr(), m0, _mm512_maskz_loadu_ps(m0, src.as_ptr()));
        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(16), m1, _mm512_maskz_loadu_ps(m1, src.as_ptr().add(16)));
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_run(dst: &mut [f32], src: &[f32]) {
    dst.copy_from_slice(src);
}

thread_local! {
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The forward pass as an implicit GEMM on the AVX-512 packed path (enough columns for packing
/// `W` to pay): each task fills one `K x 32` panel of patches at a time ([`fill_panel`], into a
/// per-thread buffer that stays in L2) and runs every row panel of `W` over it
/// ([`gemm::matmul_panels`]), so the patch matrix (58 MB for ResNet-18's first stage at batch 8)
/// is never written out. `None` where the packed path does not apply.
fn forward_panels(g: &Geom, cout: usize, w: &[f32], x: &[f32]) -> Option<Vec<f32>> {
    const NR: usize = gemm::PANEL_COLS;
    let (k, p) = (g.k(), g.p());
    let packed = gemm::PackedA::new(cout, k, View { data: w, rs: k, cs: 1 }, g.n * p)?;
    let plane = g.cin * g.h * g.w;
    let mut y = vec![0.0f32; g.n * cout * p];
    let (rows, tcols) = gemm::task_split(cout, p, g.n, rayon::current_num_threads());
    let (rb, cb) = (cout.div_ceil(rows), p.div_ceil(tcols).max(1));
    let out = SendPtr(y.as_mut_ptr());
    (0..g.n * rb * cb).into_par_iter().for_each(|t| {
        let (n, r, b) = (t / (rb * cb), (t / cb) % rb, t % cb);
        let (i0, i1) = (r * rows, ((r + 1) * rows).min(cout));
        let (j0, j1) = (b * tcols, ((b + 1) * tcols).min(p));
        let xs = &x[n * plane..(n + 1) * plane];
        PANEL.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(k * NR, 0.0);
            for q0 in (j0..j1).step_by(NR) {
                let q1 = (q0 + NR).min(j1);
                // SAFETY: the packed path (`PackedA`) exists only on CPUs with AVX-512F.
                unsafe { fill_panel(g, xs, q0, q1, &mut buf) };
                // SAFETY: task (n, r, b) writes only rows [i0, i1) x columns [q0, q1) of image
                // n's [Cout, P] block of `y` (the slice starts at column q0); blocks are disjoint.
                let c = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.get().add(n * cout * p + i0 * p + q0),
                        (i1 - i0 - 1) * p + (q1 - q0),
                    )
                };
                gemm::matmul_panels(&packed, i0, i1 - i0, k, &buf, c, p, 0, q1 - q0);
            }
        });
    });
    Some(y)
}

/// Adds `dcols` (`[K, P]` for one image, row stride `ld`) back into that image's `d`
/// `[Cin, H, W]` (the adjoint of [`im2col_rows`]).
fn col2im_image(g: &Geom, dcols: &[f32], ld: usize, d: &mut [f32]) {
    let (ow, s) = (g.ow, g.stride[1]);
    for k in 0..g.k() {
        let c = &dcols[k * ld..k * ld + g.p()];
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
}

/// `y [N, Cout, P]`: `y_n = W [Cout, K] x cols[:, n*P..(n+1)*P]`, parallel over images and
/// blocks of columns (and of rows, when those are too few to keep every thread busy:
/// [`gemm::task_split`]).
fn forward_from_cols(g: &Geom, cout: usize, w: &[f32], cols: &[f32]) -> Vec<f32> {
    let (k, p, np) = (g.k(), g.p(), g.n * g.p());
    let mut y = vec![0.0f32; g.n * cout * p];
    let (rows, tcols) = gemm::task_split(cout, p, g.n, rayon::current_num_threads());
    let (rb, cb) = (cout.div_ceil(rows), p.div_ceil(tcols).max(1));
    let packed = if g.n * rb * cb > 1 { gemm::PackedA::new(cout, k, View { data: w, rs: k, cs: 1 }, np) } else { None };
    let out = SendPtr(y.as_mut_ptr());
    let task = |t: usize| {
        let (n, r, b) = (t / (rb * cb), (t / cb) % rb, t % cb);
        let (i0, i1) = (r * rows, ((r + 1) * rows).min(cout));
        let (j0, j1) = (b * tcols, ((b + 1) * tcols).min(p));
        // SAFETY: task (n, r, b) writes only rows [i0, i1) x columns [j0, j1) of image n's
        // [Cout, P] block of `y`; the tasks' blocks are disjoint.
        let c = unsafe { std::slice::from_raw_parts_mut(out.get().add(n * cout * p + i0 * p), (i1 - i0) * p) };
        let a = View { data: &w[i0 * k..], rs: k, cs: 1 };
        gemm::matmul_into_pre(packed.as_ref(), i0, i1 - i0, k, a, &cols[n * p..], np, c, p, j0, j1);
    };
    if g.n * cout * p * k < 1 << 16 {
        (0..g.n * rb * cb).for_each(task);
    } else {
        (0..g.n * rb * cb).into_par_iter().for_each(task);
    }
    y
}

/// `dx [N, Cin, H, W]`: per image `dcols_n [K, P] = W^T x dy_rows[:, n]`, added back at once
/// (parallel over images; `dcols_n` stays in cache).
fn x_grad(g: &Geom, cout: usize, w: &[f32], dy_rows: &[f32]) -> Vec<f32> {
    let (k, p, np, plane) = (g.k(), g.p(), g.n * g.p(), g.cin * g.h * g.w);
    let mut dx = vec![0.0f32; g.n * plane];
    let a = View { data: w, rs: 1, cs: k };
    // `W^T` packed once for every image (the AVX-512 path; `None` elsewhere).
    let packed = gemm::PackedA::new(k, cout, a, np);
    dx.par_chunks_mut(plane).enumerate().for_each_init(
        || vec![0.0f32; k * p],
        |dcols, (n, d)| {
            gemm::matmul_into_pre(packed.as_ref(), 0, k, cout, a, &dy_rows[n * p..], np, dcols, p, 0, p);
            col2im_image(g, dcols, p, d);
        },
    );
    dx
}

/// `dy` `[N, Cout, P]` as `[Cout, N * P]` (the images side by side).
fn dy_rows(n: usize, cout: usize, p: usize, dy: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; cout * n * p];
    out.par_chunks_mut(n * p).enumerate().for_each(|(co, row)| {
        for i in 0..n {
            row[i * p..(i + 1) * p].copy_from_slice(&dy[(i * cout + co) * p..(i * cout + co + 1) * p]);
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
                let x_dims = Self::dims4(&x);
                let w_shape = Self::dims4(&weight);
                let g = Geom::new(x_dims, w_shape, &options);
                let y = Self::with_f32(&x, |xs| Self::with_f32(&weight, |w| forward_panels(&g, w_shape[0], w, xs)));
                if let Some(y) = y {
                    return Self::from_f32(y, &[g.n, w_shape[0], g.oh, g.ow]);
                }
                let cols = Self::dense_im2col(x, weight.clone(), options.clone());
                Self::dense_conv2d_cols(cols, weight, x_dims, options)
            }

            fn dense_im2col(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                let g = Geom::new(Self::dims4(&x), Self::dims4(&weight), &options);
                let cols = Self::with_f32(&x, |xs| im2col_rows(&g, xs));
                Self::from_f32(cols, &[g.k(), g.n * g.p()])
            }

            fn dense_conv2d_cols(
                cols: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                x_dims: [usize; 4],
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                let w_shape = Self::dims4(&weight);
                let g = Geom::new(x_dims, w_shape, &options);
                let y = Self::with_f32(&cols, |c| Self::with_f32(&weight, |w| forward_from_cols(&g, w_shape[0], w, c)));
                Self::from_f32(y, &[g.n, w_shape[0], g.oh, g.ow])
            }

            fn dense_dy_rows(grad: FloatTensor<Self>) -> FloatTensor<Self> {
                let [n, cout, oh, ow] = Self::dims4(&grad);
                let rows = Self::with_f32(&grad, |d| dy_rows(n, cout, oh * ow, d));
                Self::from_f32(rows, &[cout, n * oh * ow])
            }

            fn dense_conv2d_x_backward(
                dy_rows: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                x_dims: [usize; 4],
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let w_shape = Self::dims4(&weight);
                let g = Geom::new(x_dims, w_shape, &options);
                let dx = Self::with_f32(&dy_rows, |d| Self::with_f32(&weight, |w| x_grad(&g, w_shape[0], w, d)));
                Self::from_f32(dx, &x_dims)
            }

            fn dense_conv2d_weight_backward(
                cols: FloatTensor<Self>,
                dy_rows: FloatTensor<Self>,
                weight: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let w_shape = Self::dims4(&weight);
                let (cout, k) = (w_shape[0], w_shape[1] * w_shape[2] * w_shape[3]);
                let np = Self::dims(&dy_rows)[1];
                // dW [Cout, K] = dy [Cout, N*P] x cols^T: dot products over N*P.
                let dw =
                    Self::with_f32(&dy_rows, |d| Self::with_f32(&cols, |c| gemm::matmul_bt(cout, k, np, d, np, c, np)));
                Self::from_f32(dw, &w_shape)
            }
        }
    };
}

cpu_impl!(Flex, "flex");
cpu_impl!(NdArray, "ndarray");

/// Largest patch matrix (elements) kept from the forward pass for the weight gradient; larger
/// ones are rebuilt from the input in the backward pass (ResNet-scale inputs would otherwise hold
/// a patch matrix per convolution, several times the activations).
pub const KEEP_COLS_MAX: usize = 4 << 20;

#[derive(Debug)]
struct DenseConv;

/// What the backward pass needs of the input: the forward's patch matrix or the input itself.
#[derive(Clone, Debug)]
enum Saved<T> {
    Cols(T),
    Input(NodeId),
}

impl<B: Backend + DenseConvBackend> Backward<B, 2> for DenseConv {
    type State = (Saved<FloatTensor<B>>, NodeId, [usize; 4], ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (saved, weight_state, x_dims, options) = ops.state;
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        // [Cout, N*P] once for both gradients.
        let dy = B::dense_dy_rows(grad);
        if let Some(node) = node_x {
            let dx = B::dense_conv2d_x_backward(dy.clone(), weight.clone(), x_dims, options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let cols = match saved {
                Saved::Cols(cols) => cols,
                Saved::Input(x_state) => {
                    let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                    B::dense_im2col(x, weight.clone(), options)
                }
            };
            grads.register::<B>(node.id, B::dense_conv2d_weight_backward(cols, dy, weight));
        }
    }
}

impl<B: Backend + DenseConvBackend, C: CheckpointStrategy> DenseConvBackend for Autodiff<B, C> {
    fn dense_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        let x_dims: [usize; 4] = TensorMetadata::shape(&x).dims::<4>();
        match DenseConv.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let weight_state = prep.checkpoint(&weight);
                let x_state = prep.checkpoint(&x);
                let w = weight.into_primitive();
                let cols = B::dense_im2col(x.into_primitive(), w.clone(), options.clone());
                let keep = TensorMetadata::shape(&cols).num_elements() <= KEEP_COLS_MAX;
                let saved = if keep { Saved::Cols(cols.clone()) } else { Saved::Input(x_state) };
                let out = B::dense_conv2d_cols(cols, w, x_dims, options.clone());
                prep.finish((saved, weight_state, x_dims, options), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::dense_conv2d(x.into_primitive(), weight.into_primitive(), options))
            }
        }
    }

    fn dense_im2col(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        Self::from_inner(B::dense_im2col(x.into_primitive(), weight.into_primitive(), options))
    }

    fn dense_conv2d_cols(
        cols: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        x_dims: [usize; 4],
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::dense_conv2d_cols(cols.into_primitive(), weight.into_primitive(), x_dims, options))
    }

    fn dense_dy_rows(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::dense_dy_rows(grad.into_primitive()))
    }

    fn dense_conv2d_x_backward(
        dy_rows: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        x_dims: [usize; 4],
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::dense_conv2d_x_backward(dy_rows.into_primitive(), weight.into_primitive(), x_dims, options))
    }

    fn dense_conv2d_weight_backward(
        cols: FloatTensor<Self>,
        dy_rows: FloatTensor<Self>,
        weight: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::dense_conv2d_weight_backward(
            cols.into_primitive(),
            dy_rows.into_primitive(),
            weight.into_primitive(),
        ))
    }
}
