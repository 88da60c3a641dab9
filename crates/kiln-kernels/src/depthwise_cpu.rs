//! Direct depthwise-convolution loops on contiguous `f32` NCHW buffers: forward, input gradient,
//! weight gradient and bias gradient.
//!
//! Each `(n, c)` plane is independent, so the work is split over planes with rayon. Inside a
//! plane the loops run over output rows; for every kernel tap the valid output columns are computed
//! once, so the inner loop is a branch-free `axpy` / dot product over a contiguous row (stride 1)
//! that the compiler vectorises. On x86-64 the plane functions are compiled twice, once for the
//! baseline target and once with AVX2, and the AVX2 copy is picked at run time.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many times the whole-tensor kernels of this module ran in this process (tests use it to
/// prove that a call took the kernel path rather than Burn's fallback).
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// Geometry of a depthwise convolution (`groups == in_channels == out_channels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwGeom {
    /// Batch size `N`.
    pub batch: usize,
    /// Channels `C` (input = output = groups).
    pub channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Kernel height.
    pub k_h: usize,
    /// Kernel width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero padding above the input.
    pub pad_top: usize,
    /// Zero padding left of the input.
    pub pad_left: usize,
    /// Vertical dilation.
    pub dil_h: usize,
    /// Horizontal dilation.
    pub dil_w: usize,
}

impl DwGeom {
    /// The geometry of a depthwise convolution of an input `[N, C, H, W]` with a `[C, 1, kh, kw]`
    /// kernel. `padding` is `[(top, bottom), (left, right)]`. Returns `None` when the output
    /// would be empty or a stride / dilation is zero.
    pub fn new(
        x_shape: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
    ) -> Option<Self> {
        let [batch, channels, in_h, in_w] = x_shape;
        if stride.contains(&0) || dilation.contains(&0) || kernel.contains(&0) {
            return None;
        }
        let span_h = dilation[0] * (kernel[0] - 1) + 1;
        let span_w = dilation[1] * (kernel[1] - 1) + 1;
        let padded_h = in_h + padding[0].0 + padding[0].1;
        let padded_w = in_w + padding[1].0 + padding[1].1;
        if padded_h < span_h || padded_w < span_w {
            return None;
        }
        Some(Self {
            batch,
            channels,
            in_h,
            in_w,
            out_h: (padded_h - span_h) / stride[0] + 1,
            out_w: (padded_w - span_w) / stride[1] + 1,
            k_h: kernel[0],
            k_w: kernel[1],
            stride_h: stride[0],
            stride_w: stride[1],
            pad_top: padding[0].0,
            pad_left: padding[1].0,
            dil_h: dilation[0],
            dil_w: dilation[1],
        })
    }

    /// Elements of one input plane.
    pub fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    /// Elements of one output plane.
    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Kernel taps per channel.
    pub fn taps(&self) -> usize {
        self.k_h * self.k_w
    }

    /// Output shape `[N, C, OH, OW]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out_h, self.out_w]
    }

    /// For kernel column `kj`: the output columns `[lo, hi)` whose input column
    /// `ow * stride + off` lies inside the input, and `off`.
    fn cols(&self, kj: usize) -> Span {
        span(self.out_w, self.in_w, self.stride_w, kj * self.dil_w, self.pad_left)
    }

    /// For kernel row `ki`: the output rows `[lo, hi)` with a valid input row, and its offset.
    fn rows(&self, ki: usize) -> Span {
        span(self.out_h, self.in_h, self.stride_h, ki * self.dil_h, self.pad_top)
    }
}

/// Output indices `[lo, hi)` whose input index `o * stride + off` is in `[0, size_in)`.
#[derive(Clone, Copy, Debug)]
struct Span {
    lo: usize,
    hi: usize,
    off: isize,
}

fn span(size_out: usize, size_in: usize, stride: usize, tap: usize, pad: usize) -> Span {
    let off = tap as isize - pad as isize;
    let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(stride) };
    let last = size_in as isize - 1 - off;
    let hi = if last < 0 { 0 } else { (last as usize / stride + 1).min(size_out) };
    Span { lo, hi: hi.max(lo), off }
}

/// Planes per rayon task, so that a task has at least ~16k elements of work.
fn min_planes(plane: usize, taps: usize) -> usize {
    (16_384 / (plane * taps).max(1)).max(1)
}

// ---------------------------------------------------------------------------------------------
// Plane kernels. `#[inline(always)]` bodies, instantiated by the baseline and AVX2 wrappers.
// ---------------------------------------------------------------------------------------------

/// `out[j] += w[0] * x[s*j] + w[1] * x[s*j + 1] + w[2] * x[s*j + 2]` for stride `s` 1 or 2.
#[inline(always)]
fn row3(x: &[f32], out: &mut [f32], w: &[f32], stride: usize) {
    let (w0, w1, w2) = (w[0], w[1], w[2]);
    let n = out.len();
    if stride == 1 {
        let (a, b, c) = (&x[..n], &x[1..n + 1], &x[2..n + 2]);
        for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
            *o += w0 * a + w1 * b + w2 * c;
        }
    } else {
        let x = &x[..2 * n + 1];
        // Pairs (x[2j], x[2j + 1]) and the next pair's first element x[2j + 2].
        for ((o, p), &c) in out.iter_mut().zip(x.chunks_exact(2)).zip(x[2..].iter().step_by(2)) {
            *o += w0 * p[0] + w1 * p[1] + w2 * c;
        }
    }
}

#[inline(always)]
fn fwd_plane_body(g: &DwGeom, x: &[f32], w: &[f32], bias: f32, out: &mut [f32]) {
    out.fill(bias);
    let (sw, in_w, out_w) = (g.stride_w, g.in_w, g.out_w);
    for ki in 0..g.k_h {
        let rows = g.rows(ki);
        for oh in rows.lo..rows.hi {
            let ih = (oh * g.stride_h) as isize + rows.off;
            let xrow = &x[ih as usize * in_w..(ih as usize + 1) * in_w];
            let orow = &mut out[oh * out_w..(oh + 1) * out_w];
            // Three taps in one pass over the output row: the columns where all three are inside
            // the input, then the left-over edge columns tap by tap below.
            let (mut in_lo, mut in_hi) = (0, 0);
            if g.k_w == 3 && g.dil_w == 1 && (sw == 1 || sw == 2) {
                let (c0, c1, c2) = (g.cols(0), g.cols(1), g.cols(2));
                (in_lo, in_hi) = (c0.lo.max(c1.lo).max(c2.lo), c0.hi.min(c1.hi).min(c2.hi));
                if in_hi > in_lo {
                    let wk = &w[ki * 3..ki * 3 + 3];
                    let base = ((in_lo * sw) as isize + c0.off) as usize;
                    row3(&xrow[base..], &mut orow[in_lo..in_hi], wk, sw);
                } else {
                    (in_lo, in_hi) = (0, 0);
                }
            }
            for kj in 0..g.k_w {
                let wv = w[ki * g.k_w + kj];
                let c = g.cols(kj);
                if c.hi <= c.lo {
                    continue;
                }
                if in_hi > in_lo {
                    // Only the edge columns [c.lo, in_lo) and [in_hi, c.hi) are left.
                    for ow in (c.lo..in_lo.min(c.hi)).chain(in_hi.max(c.lo)..c.hi) {
                        orow[ow] += wv * xrow[((ow * sw) as isize + c.off) as usize];
                    }
                    continue;
                }
                let start = (c.lo * sw) as isize + c.off;
                if sw == 1 {
                    let xs = &xrow[start as usize..start as usize + (c.hi - c.lo)];
                    for (o, &xv) in orow[c.lo..c.hi].iter_mut().zip(xs) {
                        *o += wv * xv;
                    }
                } else {
                    let xs = xrow[start as usize..].iter().step_by(sw);
                    for (o, &xv) in orow[c.lo..c.hi].iter_mut().zip(xs) {
                        *o += wv * xv;
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn x_grad_plane_body(g: &DwGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    let (sw, in_w, out_w) = (g.stride_w, g.in_w, g.out_w);
    for ki in 0..g.k_h {
        let rows = g.rows(ki);
        for oh in rows.lo..rows.hi {
            let ih = ((oh * g.stride_h) as isize + rows.off) as usize;
            let dyrow = &dy[oh * out_w..(oh + 1) * out_w];
            let dxrow = &mut dx[ih * in_w..(ih + 1) * in_w];
            for kj in 0..g.k_w {
                let wv = w[ki * g.k_w + kj];
                let c = g.cols(kj);
                if c.hi <= c.lo {
                    continue;
                }
                let start = ((c.lo * sw) as isize + c.off) as usize;
                if sw == 1 {
                    let dxs = &mut dxrow[start..start + (c.hi - c.lo)];
                    for (d, &gv) in dxs.iter_mut().zip(&dyrow[c.lo..c.hi]) {
                        *d += wv * gv;
                    }
                } else {
                    let dxs = dxrow[start..].iter_mut().step_by(sw);
                    for (d, &gv) in dxs.zip(&dyrow[c.lo..c.hi]) {
                        *d += wv * gv;
                    }
                }
            }
        }
    }
}

/// Dot product with eight independent accumulators (vectorisable without fast-math).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += xa[l] * xb[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[inline(always)]
fn w_grad_plane_body(g: &DwGeom, x: &[f32], dy: &[f32], acc: &mut [f32]) {
    acc.fill(0.0);
    let (sw, in_w, out_w) = (g.stride_w, g.in_w, g.out_w);
    for ki in 0..g.k_h {
        let rows = g.rows(ki);
        for oh in rows.lo..rows.hi {
            let ih = ((oh * g.stride_h) as isize + rows.off) as usize;
            let xrow = &x[ih * in_w..(ih + 1) * in_w];
            let dyrow = &dy[oh * out_w..(oh + 1) * out_w];
            for kj in 0..g.k_w {
                let c = g.cols(kj);
                if c.hi <= c.lo {
                    continue;
                }
                let start = ((c.lo * sw) as isize + c.off) as usize;
                let s = if sw == 1 {
                    dot(&dyrow[c.lo..c.hi], &xrow[start..start + (c.hi - c.lo)])
                } else {
                    let mut s = 0.0f32;
                    for (&gv, &xv) in dyrow[c.lo..c.hi].iter().zip(xrow[start..].iter().step_by(sw)) {
                        s += gv * xv;
                    }
                    s
                };
                acc[ki * g.k_w + kj] += s;
            }
        }
    }
}

multiversion!(fwd_plane, fwd_plane_body, (g: &DwGeom, x: &[f32], w: &[f32], bias: f32, out: &mut [f32]));
multiversion!(x_grad_plane, x_grad_plane_body, (g: &DwGeom, dy: &[f32], w: &[f32], dx: &mut [f32]));
multiversion!(w_grad_plane, w_grad_plane_body, (g: &DwGeom, x: &[f32], dy: &[f32], acc: &mut [f32]));

// ---------------------------------------------------------------------------------------------
// Whole-tensor entry points.
// ---------------------------------------------------------------------------------------------

/// Forward: `x` `[N, C, H, W]`, `weight` `[C, 1, kh, kw]`, optional `bias` `[C]`; returns the
/// output `[N, C, OH, OW]` as a flat vector.
pub fn forward(g: &DwGeom, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    assert_eq!(x.len(), g.batch * g.channels * g.in_plane(), "depthwise forward: input size");
    assert_eq!(weight.len(), g.channels * g.taps(), "depthwise forward: weight size");
    let (ip, op, taps, ch) = (g.in_plane(), g.out_plane(), g.taps(), g.channels);
    let mut out = vec![0.0f32; g.batch * ch * op];
    if op == 0 {
        return out;
    }
    out.par_chunks_mut(op).with_min_len(min_planes(op, taps)).enumerate().for_each(|(p, o)| {
        let c = p % ch;
        let b = bias.map_or(0.0, |b| b[c]);
        fwd_plane(g, &x[p * ip..(p + 1) * ip], &weight[c * taps..(c + 1) * taps], b, o);
    });
    out
}

/// Input gradient: `dy` `[N, C, OH, OW]`, `weight` `[C, 1, kh, kw]`; returns `dx` `[N, C, H, W]`.
pub fn input_grad(g: &DwGeom, dy: &[f32], weight: &[f32]) -> Vec<f32> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    assert_eq!(dy.len(), g.batch * g.channels * g.out_plane(), "depthwise input grad: grad size");
    assert_eq!(weight.len(), g.channels * g.taps(), "depthwise input grad: weight size");
    let (ip, op, taps, ch) = (g.in_plane(), g.out_plane(), g.taps(), g.channels);
    let mut dx = vec![0.0f32; g.batch * ch * ip];
    if ip == 0 {
        return dx;
    }
    dx.par_chunks_mut(ip).with_min_len(min_planes(ip, taps)).enumerate().for_each(|(p, d)| {
        let c = p % ch;
        x_grad_plane(g, &dy[p * op..(p + 1) * op], &weight[c * taps..(c + 1) * taps], d);
    });
    dx
}

/// Weight gradient: `x` `[N, C, H, W]`, `dy` `[N, C, OH, OW]`; returns `dw` `[C, 1, kh, kw]`.
/// Each plane's partial sums are computed in parallel, then summed over the batch in order
/// (deterministic).
pub fn weight_grad(g: &DwGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    assert_eq!(x.len(), g.batch * g.channels * g.in_plane(), "depthwise weight grad: input size");
    assert_eq!(dy.len(), g.batch * g.channels * g.out_plane(), "depthwise weight grad: grad size");
    let (ip, op, taps, ch) = (g.in_plane(), g.out_plane(), g.taps(), g.channels);
    let mut partial = vec![0.0f32; g.batch * ch * taps];
    partial.par_chunks_mut(taps).with_min_len(min_planes(op, taps)).enumerate().for_each(|(p, acc)| {
        w_grad_plane(g, &x[p * ip..(p + 1) * ip], &dy[p * op..(p + 1) * op], acc);
    });
    let mut dw = vec![0.0f32; ch * taps];
    for n in 0..g.batch {
        let part = &partial[n * ch * taps..(n + 1) * ch * taps];
        for (d, &v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    dw
}

/// Bias gradient: the sum of `dy` `[N, C, OH, OW]` over `N`, `OH`, `OW`; returns `[C]`.
pub fn bias_grad(g: &DwGeom, dy: &[f32]) -> Vec<f32> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let (op, ch) = (g.out_plane(), g.channels);
    assert_eq!(dy.len(), g.batch * ch * op, "depthwise bias grad: grad size");
    let ones = vec![1.0f32; op];
    let sums: Vec<f32> = if op == 0 {
        vec![0.0; g.batch * ch]
    } else {
        dy.par_chunks(op).with_min_len(min_planes(op, 1)).map(|plane| dot(plane, &ones)).collect()
    };
    let mut db = vec![0.0f32; ch];
    for n in 0..g.batch {
        for (d, &v) in db.iter_mut().zip(&sums[n * ch..(n + 1) * ch]) {
            *d += v;
        }
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of a depthwise convolution, index by index.
    fn naive(g: &DwGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; g.batch * g.channels * g.out_plane()];
        for p in 0..g.batch * g.channels {
            let c = p % g.channels;
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let mut s = 0.0;
                    for ki in 0..g.k_h {
                        for kj in 0..g.k_w {
                            let ih = (oh * g.stride_h + ki * g.dil_h) as isize - g.pad_top as isize;
                            let iw = (ow * g.stride_w + kj * g.dil_w) as isize - g.pad_left as isize;
                            if ih >= 0 && iw >= 0 && (ih as usize) < g.in_h && (iw as usize) < g.in_w {
                                s += w[c * g.taps() + ki * g.k_w + kj]
                                    * x[p * g.in_plane() + ih as usize * g.in_w + iw as usize];
                            }
                        }
                    }
                    out[p * g.out_plane() + oh * g.out_w + ow] = s;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_and_adjoints_match_the_definition() {
        for &(stride, pad, dil, k, h, w) in &[
            (1, (1, 1), 1, 3, 7, 9),
            (2, (1, 1), 1, 3, 7, 9),
            (2, (0, 1), 1, 3, 8, 8),
            (1, (2, 2), 2, 3, 9, 7),
            (1, (0, 0), 1, 5, 11, 6),
            (3, (2, 0), 1, 5, 13, 10),
        ] {
            let g = DwGeom::new([2, 3, h, w], [k, k], [stride, stride], [pad, pad], [dil, dil]).unwrap();
            let x = values(2 * 3 * h * w, 1);
            let wt = values(3 * k * k, 2);
            let y = forward(&g, &x, &wt, None);
            let want = naive(&g, &x, &wt);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "forward {a} vs {b} for {g:?}");
            }
            // Adjoint identities: <dy, conv(x)> = <conv^T(dy), x> = <dW(x, dy), w>.
            let dy = values(y.len(), 3);
            let lhs: f64 = dy.iter().zip(&y).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let dx = input_grad(&g, &dy, &wt);
            let via_x: f64 = dx.iter().zip(&x).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let dw = weight_grad(&g, &x, &dy);
            let via_w: f64 = dw.iter().zip(&wt).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            assert!((lhs - via_x).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} vs {via_x} for {g:?}");
            assert!((lhs - via_w).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} vs {via_w} for {g:?}");
            let db = bias_grad(&g, &dy);
            let total: f32 = dy.iter().sum();
            assert!((db.iter().sum::<f32>() - total).abs() < 1e-3);
        }
    }
}
