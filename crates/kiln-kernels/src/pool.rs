//! 2-D max pooling as a Burn backend extension. Burn's flex backend pools through its 3-D
//! routine, which recomputes the valid kernel range of every output element (three range
//! computations with divisions per output, then a serial scan of the window): a 2x2 pool of
//! LeNet-5's 32x6x28x28 map took ~1.9 ms on one thread, more than the convolution before it.
//! Here each `(n, c)` plane is one parallel task, the valid output range of every kernel tap is
//! computed once per call, and each tap is a loop over an output row without a dependency
//! between iterations. The backward pass finds each window's winner again from the input and
//! the pooled output instead of storing indices.
//!
//! Semantics are Burn's (and PyTorch's): the first maximum of a window in row-major order wins,
//! a NaN always wins (so NaNs propagate), padding never wins.

// burn-ndarray is deprecated in Burn 0.22; kiln keeps supporting it (and registers the kernel for it).
#![allow(deprecated)]

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension, tensor::FloatTensor};
use rayon::prelude::*;

#[cfg(feature = "flex")]
use burn::backend::Flex;
#[cfg(feature = "ndarray")]
use burn::backend::NdArray;

use crate::extension::CpuF32;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many times the max-pool kernels of this module ran in this process (tests use it to
/// prove that a call took the kernel path).
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// The geometry of a 2-D max pool: kernel, stride, `(before, after)` padding per axis, dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [(usize, usize); 2],
    pub dilation: [usize; 2],
    /// Round the output size up (PyTorch's `ceil_mode`; a last window must start inside the
    /// input or its leading padding).
    pub ceil_mode: bool,
}

impl PoolGeom {
    /// The output size along `axis` for an input of `size`, or `None` when the dilated kernel
    /// does not fit the padded input.
    pub fn out(&self, axis: usize, size: usize) -> Option<usize> {
        let (s, before) = (self.stride[axis], self.padding[axis].0);
        let span = self.dilation[axis] * (self.kernel[axis].max(1) - 1) + 1;
        let padded = size + before + self.padding[axis].1;
        if s == 0 || padded < span {
            return None;
        }
        if !self.ceil_mode {
            return Some((padded - span) / s + 1);
        }
        let out = (padded - span).div_ceil(s) + 1;
        Some(if (out - 1) * s >= size + before { out - 1 } else { out })
    }
}

/// Max pooling on backends with a direct kernel. `x` is `[N, C, H, W]` `f32` (the public wrapper
/// checks it and that the output is not empty).
#[allow(deprecated)]
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait MaxPoolBackend: Backend {
    /// The pooled map `[N, C, OH, OW]`.
    fn kiln_max_pool2d(x: FloatTensor<Self>, geom: PoolGeom) -> FloatTensor<Self>;

    /// The gradient with respect to `x` from the forward input `x` and output `y`: each output
    /// gradient goes to its window's maximum.
    fn kiln_max_pool2d_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        geom: PoolGeom,
    ) -> FloatTensor<Self>;

    /// PyTorch's / Burn's pooling indices of the forward input `x`: for each output, the flat
    /// index `ih * W + iw` in its input plane of the element the forward keeps, as `f32` values
    /// (exact below 2^24 elements per plane; the public wrapper checks and casts them to
    /// integers). Not differentiable.
    fn kiln_max_pool2d_argmax(x: FloatTensor<Self>, geom: PoolGeom) -> FloatTensor<Self>;
}

/// For kernel tap `t` along one axis: the output indices `[lo, hi)` whose input index
/// `o * stride - pad + t * dil` is inside `[0, size)`, and the input index of output 0 (may be
/// negative).
fn tap_range(size: usize, out: usize, stride: usize, pad: usize, dil: usize, t: usize) -> (usize, usize, isize) {
    let off = (t * dil) as isize - pad as isize;
    let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(stride) };
    let last = size as isize - 1 - off;
    let hi = if last < 0 { 0 } else { (last as usize / stride + 1).min(out) };
    (lo.min(hi), hi, off)
}

/// The geometry of one call: input / output plane sizes and the valid range of every tap.
struct Plan {
    w: usize,
    oh: usize,
    ow: usize,
    sh: usize,
    sw: usize,
    rows: Vec<(usize, usize, isize)>,
    cols: Vec<(usize, usize, isize)>,
}

impl Plan {
    /// A 2x2 window with stride 2, no padding or dilation, every window inside the input (the
    /// classic "halve the map" pool, which gets a branch-light path).
    fn is_2x2(&self, geom: &PoolGeom, h: usize, w: usize) -> bool {
        geom.kernel == [2, 2]
            && geom.stride == [2, 2]
            && geom.dilation == [1, 1]
            && geom.padding == [(0, 0), (0, 0)]
            && 2 * self.oh <= h
            && 2 * self.ow <= w
    }

    fn new(geom: &PoolGeom, h: usize, w: usize) -> Self {
        let (oh, ow) = (geom.out(0, h).unwrap_or(0), geom.out(1, w).unwrap_or(0));
        let axis = |a: usize, size: usize, out: usize| -> Vec<_> {
            (0..geom.kernel[a])
                .map(|t| tap_range(size, out, geom.stride[a], geom.padding[a].0, geom.dilation[a], t))
                .collect()
        };
        Self { w, oh, ow, sh: geom.stride[0], sw: geom.stride[1], rows: axis(0, h, oh), cols: axis(1, w, ow) }
    }
}

/// The maximum of a window in row-major order with the forward's rule: a later value wins only
/// when it is larger or NaN (so the first NaN or the first maximum is kept).
#[inline(always)]
fn max4(v: [f32; 4]) -> f32 {
    let mut best = v[0];
    for &x in &v[1..] {
        if x > best || x.is_nan() {
            best = x;
        }
    }
    best
}

/// Calls `f(tap_row_input_offset, tap column range (lo, hi, off))` for every kernel tap `(r, c)`
/// in row-major order that is valid for output row `o`; `tap_row_input_offset` is the start of
/// the input row.
#[inline(always)]
fn for_taps(p: &Plan, o: usize, mut f: impl FnMut(usize, (usize, usize, isize))) {
    for &(rlo, rhi, roff) in &p.rows {
        if o < rlo || o >= rhi {
            continue;
        }
        let row = (o as isize * p.sh as isize + roff) as usize * p.w;
        for &col in &p.cols {
            f(row, col);
        }
    }
}

/// Forward: per output row, the running maximum over the kernel taps (row-major), each tap a
/// loop over the output columns that has no dependency between iterations. A NaN wins and stays.
fn forward(dims: [usize; 4], geom: &PoolGeom, x: &[f32]) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, w] = dims;
    let p = Plan::new(geom, h, w);
    let (oh, ow, sw) = (p.oh, p.ow, p.sw);
    let mut out = vec![f32::NEG_INFINITY; n * c * oh * ow];
    if oh * ow > 0 && p.is_2x2(geom, h, w) {
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, o)| {
            let xs = &x[plane * h * w..(plane + 1) * h * w];
            for (r, orow) in o.chunks_exact_mut(ow).enumerate() {
                let (a, b) = (&xs[2 * r * w..2 * r * w + 2 * ow], &xs[(2 * r + 1) * w..(2 * r + 1) * w + 2 * ow]);
                for ((best, a), b) in orow.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
                    *best = max4([a[0], a[1], b[0], b[1]]);
                }
            }
        });
    } else if oh * ow > 0 {
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, o)| {
            let xs = &x[plane * h * w..(plane + 1) * h * w];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present (checked just above).
                unsafe { forward_plane_avx512(&p, xs, o) };
                return;
            }
            forward_plane(&p, xs, o);
        });
    }
    let _ = sw;
    (out, [n, c, oh, ow])
}

/// [`forward_plane`] compiled for AVX-512: the compare-and-select over a strided row becomes
/// masked vector code (ResNet's 3x3 / 2 pool was a scalar loop, 7 % of ResNet-18's time at b8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_plane_avx512(p: &Plan, xs: &[f32], o: &mut [f32]) {
    forward_plane(p, xs, o)
}

/// One `(n, c)` plane of the general forward: the running maximum over the taps, row by row.
#[inline(always)]
fn forward_plane(p: &Plan, xs: &[f32], o: &mut [f32]) {
    let (w, ow, sw) = (p.w, p.ow, p.sw);
    for (r, orow) in o.chunks_exact_mut(ow).enumerate() {
        for_taps(p, r, |row, (lo, hi, off)| {
            if lo >= hi {
                return;
            }
            let xrow = &xs[row..row + w];
            let start = ((lo * sw) as isize + off) as usize;
            for (best, &v) in orow[lo..hi].iter_mut().zip(xrow[start..].iter().step_by(sw)) {
                *best = if v > *best || v.is_nan() { v } else { *best };
            }
        });
    }
}

/// Backward: each output gradient goes to the first element of its window (row-major) equal to
/// the pooled value (NaN: the first NaN), which is the element the forward pass kept.
fn backward(dims: [usize; 4], geom: &PoolGeom, x: &[f32], y: &[f32], grad: &[f32]) -> Vec<f32> {
    let [n, c, h, w] = dims;
    let p = Plan::new(geom, h, w);
    let (oh, ow, sw) = (p.oh, p.ow, p.sw);
    let mut dx = vec![0.0f32; n * c * h * w];
    if oh * ow > 0 && p.is_2x2(geom, h, w) {
        dx.par_chunks_mut(h * w).enumerate().for_each(|(plane, d)| {
            let xs = &x[plane * h * w..(plane + 1) * h * w];
            let ys = &y[plane * oh * ow..(plane + 1) * oh * ow];
            let gs = &grad[plane * oh * ow..(plane + 1) * oh * ow];
            for r in 0..oh {
                let (top, bottom) = (2 * r * w, (2 * r + 1) * w);
                for j in 0..ow {
                    let (m, g) = (ys[r * ow + j], gs[r * ow + j]);
                    let taps = [top + 2 * j, top + 2 * j + 1, bottom + 2 * j, bottom + 2 * j + 1];
                    // The window's first maximum in row-major order (the one the forward kept).
                    if let Some(&i) = taps.iter().find(|&&i| xs[i] == m || (m.is_nan() && xs[i].is_nan())) {
                        d[i] = g;
                    }
                }
            }
        });
    } else if oh * ow > 0 {
        dx.par_chunks_mut(h * w).enumerate().for_each(|(plane, d)| {
            let xs = &x[plane * h * w..(plane + 1) * h * w];
            let ys = &y[plane * oh * ow..(plane + 1) * oh * ow];
            let gs = &grad[plane * oh * ow..(plane + 1) * oh * ow];
            let mut done = vec![false; ow];
            for r in 0..oh {
                let (yrow, grow) = (&ys[r * ow..(r + 1) * ow], &gs[r * ow..(r + 1) * ow]);
                done.fill(false);
                for_taps(&p, r, |row, (lo, hi, off)| {
                    for j in lo..hi {
                        let i = row + ((j * sw) as isize + off) as usize;
                        let (v, m) = (xs[i], yrow[j]);
                        if !done[j] && (v == m || (v.is_nan() && m.is_nan())) {
                            d[i] += grow[j];
                            done[j] = true;
                        }
                    }
                });
            }
        });
    }
    dx
}

/// Whether `v` replaces `best` as its window's winner: larger, or the window's first NaN (the
/// forward's rule, with a NaN that is already winning kept).
#[inline(always)]
fn takes(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// The indices of the elements the forward pass keeps: per output, the first maximum of its
/// window in row-major order (the first NaN when there is one), as a flat index into the input
/// plane. The 2x2 / 2 path is branch-free (the winner's position in random data is unpredictable:
/// a compare-and-select loop compiled to branches and spent most of its time mispredicting).
fn argmax(dims: [usize; 4], geom: &PoolGeom, x: &[f32]) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, w] = dims;
    let p = Plan::new(geom, h, w);
    let (oh, ow, sw) = (p.oh, p.ow, p.sw);
    let mut idx = vec![0.0f32; n * c * oh * ow];
    if oh * ow == 0 {
        return (idx, [n, c, oh, ow]);
    }
    let two = p.is_2x2(geom, h, w);
    idx.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, out)| {
        let xs = &x[plane * h * w..(plane + 1) * h * w];
        let (mut best, mut seen) = (vec![f32::NEG_INFINITY; ow], vec![false; ow]);
        for (r, orow) in out.chunks_exact_mut(ow).enumerate() {
            if two {
                let (top, bottom) = (2 * r * w, (2 * r + 1) * w);
                let (a, b) = (&xs[top..top + 2 * ow], &xs[bottom..bottom + 2 * ow]);
                for (j, ((o, a), b)) in orow.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)).enumerate() {
                    // Branch-free: the window's maximum as the forward computes it, then the
                    // first tap equal to it (or the first NaN: when the maximum is NaN no tap
                    // equals it, and otherwise the window has no NaN).
                    let v = [a[0], a[1], b[0], b[1]];
                    let m = max4(v);
                    let hits = v.iter().enumerate().fold(0u32, |e, (q, &x)| e | (((x == m) | x.is_nan()) as u32) << q);
                    let k = hits.trailing_zeros().min(3) as usize;
                    *o = ((2 * r + (k >> 1)) * w + 2 * j + (k & 1)) as u32 as f32;
                }
                continue;
            }
            best.fill(f32::NEG_INFINITY);
            seen.fill(false);
            for_taps(&p, r, |row, (lo, hi, off)| {
                for j in lo..hi {
                    let i = row + ((j * sw) as isize + off) as usize;
                    let v = xs[i];
                    let take = !seen[j] || takes(v, best[j]);
                    best[j] = if take { v } else { best[j] };
                    orow[j] = if take { i as f32 } else { orow[j] };
                    seen[j] = true;
                }
            });
        }
    });
    (idx, [n, c, oh, ow])
}

macro_rules! cpu_impl {
    ($backend:ty, $feature:literal) => {
        #[cfg(feature = $feature)]
        #[allow(deprecated)]
        impl MaxPoolBackend for $backend {
            fn kiln_max_pool2d(x: FloatTensor<Self>, geom: PoolGeom) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let dims = Self::dims4(&x);
                let (out, shape) = Self::with_f32(&x, |xs| forward(dims, &geom, xs));
                Self::from_f32(out, &shape)
            }

            fn kiln_max_pool2d_backward(
                x: FloatTensor<Self>,
                y: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                geom: PoolGeom,
            ) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let dims = Self::dims4(&x);
                let dx = Self::with_f32(&x, |xs| {
                    Self::with_f32(&y, |ys| Self::with_f32(&grad, |gs| backward(dims, &geom, xs, ys, gs)))
                });
                Self::from_f32(dx, &dims)
            }

            fn kiln_max_pool2d_argmax(x: FloatTensor<Self>, geom: PoolGeom) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let dims = Self::dims4(&x);
                let (idx, shape) = Self::with_f32(&x, |xs| argmax(dims, &geom, xs));
                Self::from_f32(idx, &shape)
            }
        }
    };
}

cpu_impl!(Flex, "flex");
cpu_impl!(NdArray, "ndarray");

#[derive(Debug)]
struct MaxPool;

impl<B: Backend + MaxPoolBackend> Backward<B, 1> for MaxPool {
    // x (checkpointed), the pooled output, the geometry.
    type State = (NodeId, FloatTensor<B>, PoolGeom);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, y, geom) = ops.state;
        if let Some(node) = node_x {
            let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
            grads.register::<B>(node.id, B::kiln_max_pool2d_backward(x, y, grad, geom));
        }
    }
}

impl<B: Backend + MaxPoolBackend, C: CheckpointStrategy> MaxPoolBackend for Autodiff<B, C> {
    fn kiln_max_pool2d(x: FloatTensor<Self>, geom: PoolGeom) -> FloatTensor<Self> {
        match MaxPool.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let out = B::kiln_max_pool2d(x.into_primitive(), geom);
                prep.finish((x_state, out.clone(), geom), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::kiln_max_pool2d(x.into_primitive(), geom)),
        }
    }

    fn kiln_max_pool2d_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        geom: PoolGeom,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::kiln_max_pool2d_backward(
            x.into_primitive(),
            y.into_primitive(),
            grad.into_primitive(),
            geom,
        ))
    }

    fn kiln_max_pool2d_argmax(x: FloatTensor<Self>, geom: PoolGeom) -> FloatTensor<Self> {
        Self::from_inner(B::kiln_max_pool2d_argmax(x.into_primitive(), geom))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: every window's maximum over its taps inside the input (`-inf` if none),
    /// a NaN winning, row-major.
    fn naive(dims: [usize; 4], g: &PoolGeom, x: &[f32]) -> Vec<f32> {
        let [n, c, h, w] = dims;
        let (oh, ow) = (g.out(0, h).unwrap(), g.out(1, w).unwrap());
        let mut out = vec![f32::NEG_INFINITY; n * c * oh * ow];
        for pl in 0..n * c {
            for (o, best) in out[pl * oh * ow..(pl + 1) * oh * ow].iter_mut().enumerate() {
                let (r, q) = (o / ow, o % ow);
                for ki in 0..g.kernel[0] {
                    for kj in 0..g.kernel[1] {
                        let iy = (r * g.stride[0] + ki * g.dilation[0]) as isize - g.padding[0].0 as isize;
                        let ix = (q * g.stride[1] + kj * g.dilation[1]) as isize - g.padding[1].0 as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let v = x[pl * h * w + iy as usize * w + ix as usize];
                            if v > *best || v.is_nan() {
                                *best = v;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn taps_past_the_input_on_every_output_are_skipped() {
        // Kernel column 1 lands at input column 3 (dilation 5, padding 2) on a 2-wide map: its
        // offset is past the row's end for every output, so its range is empty.
        let g =
            PoolGeom { kernel: [1, 2], stride: [1, 1], padding: [(0, 0), (2, 2)], dilation: [1, 5], ceil_mode: false };
        let dims = [1, 2, 3, 2];
        let x: Vec<f32> = (0..12).map(|i| (i * 7 % 5) as f32 - 2.0).collect();
        let (got, out) = forward(dims, &g, &x);
        assert_eq!(out, [1, 2, 3, 1]);
        assert_eq!(got, naive(dims, &g, &x));
    }
}
