//! Batch norm and clamp activations (ReLU6) as single passes over contiguous `f32` buffers.
//!
//! Burn's default `batch_norm_train` / `batch_norm_train_backward` are built from generic tensor
//! ops (swap dims + copies, several reductions and broadcasts: about ten passes over the
//! activation), its inference batch norm is four broadcast passes, and its `clamp` (ReLU6) and
//! clamp backward run single-threaded. Here:
//!
//! - statistics: one parallel pass per channel (mean, then the centred variance, on data that stays
//!   in cache), then one parallel pass over `(n, c)` planes that writes `x * scale + shift`,
//!   optionally clamped (a fused activation);
//! - backward: one pass per channel for `sum(g)` and `sum(g * (x - mean))`, then one pass that
//!   writes `dx = a * g + b * x + d` with per-channel `a`, `b`, `d`;
//! - clamp: one parallel pass forward, one backward (the mask comes from the output).
//!
//! Layout: `[N, C, rest...]` row-major, `plane` = the product of `rest`.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many times the whole-tensor kernels of this module ran in this process (tests use it to
/// prove that a call took the kernel path).
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

fn count() {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Elements per parallel task: below this, splitting costs more than it saves.
const GRAIN: usize = 16 * 1024;

/// `(a, b)` with 8 independent lanes, so the loop vectorises without reassociating floats.
fn dot2_body(x: &[f32], g: &[f32], mean: f32) -> (f64, f64) {
    let mut sg = [0.0f32; 8];
    let mut sgx = [0.0f32; 8];
    let xc = x.chunks_exact(8);
    let gc = g.chunks_exact(8);
    let (xr, gr) = (xc.remainder(), gc.remainder());
    for (xa, ga) in xc.zip(gc) {
        for l in 0..8 {
            sg[l] += ga[l];
            sgx[l] += ga[l] * (xa[l] - mean);
        }
    }
    let mut a: f64 = sg.iter().map(|&v| v as f64).sum();
    let mut b: f64 = sgx.iter().map(|&v| v as f64).sum();
    for (&xv, &gv) in xr.iter().zip(gr) {
        a += gv as f64;
        b += (gv * (xv - mean)) as f64;
    }
    (a, b)
}

/// `sum(x)` and `sum((x - shift)^2)`.
fn sums_body(x: &[f32], shift: f32) -> (f64, f64) {
    let mut s = [0.0f32; 8];
    let mut s2 = [0.0f32; 8];
    let c = x.chunks_exact(8);
    let r = c.remainder();
    for xa in c {
        for l in 0..8 {
            let d = xa[l] - shift;
            s[l] += d;
            s2[l] += d * d;
        }
    }
    let mut a: f64 = s.iter().map(|&v| v as f64).sum();
    let mut b: f64 = s2.iter().map(|&v| v as f64).sum();
    for &v in r {
        let d = v - shift;
        a += d as f64;
        b += (d * d) as f64;
    }
    (a + shift as f64 * x.len() as f64, b)
}

fn affine_clamp_body(x: &[f32], out: &mut [f32], scale: f32, shift: f32, lo: f32, hi: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v * scale + shift).max(lo).min(hi);
    }
}

fn affine2_body(x: &[f32], g: &[f32], out: &mut [f32], a: f32, b: f32, d: f32) {
    for ((o, &xv), &gv) in out.iter_mut().zip(x).zip(g) {
        *o = a * gv + b * xv + d;
    }
}

fn clamp_body(x: &[f32], out: &mut [f32], lo: f32, hi: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v.max(lo).min(hi);
    }
}

fn clamp_grad_body(y: &[f32], g: &[f32], out: &mut [f32], lo: f32, hi: f32) {
    for ((o, &yv), &gv) in out.iter_mut().zip(y).zip(g) {
        *o = if yv > lo && yv < hi { gv } else { 0.0 };
    }
}

multiversion!(dot2, dot2_body, (x: &[f32], g: &[f32], mean: f32) -> (f64, f64));
multiversion!(sums, sums_body, (x: &[f32], shift: f32) -> (f64, f64));
multiversion!(affine_clamp, affine_clamp_body, (x: &[f32], out: &mut [f32], scale: f32, shift: f32, lo: f32, hi: f32));
multiversion!(affine2, affine2_body, (x: &[f32], g: &[f32], out: &mut [f32], a: f32, b: f32, d: f32));
multiversion!(clamp_rows, clamp_body, (x: &[f32], out: &mut [f32], lo: f32, hi: f32));
multiversion!(clamp_grad_rows, clamp_grad_body, (y: &[f32], g: &[f32], out: &mut [f32], lo: f32, hi: f32));

/// The shape of a `[N, C, rest...]` tensor as `(n, c, plane)`.
pub fn ncp(shape: &[usize]) -> (usize, usize, usize) {
    assert!(shape.len() >= 2, "batch norm: expected a tensor [N, C, ...], got {shape:?}");
    (shape[0], shape[1], shape[2..].iter().product())
}

/// Runs `f(c)` for every channel, in parallel when the tensor is large enough.
fn per_channel<T: Send>(n: usize, c: usize, plane: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    let per = (n * plane).max(1);
    if c * per <= GRAIN {
        // Not worth waking the thread pool (a parallel call from outside it costs a hand-off).
        return (0..c).map(f).collect();
    }
    (0..c).into_par_iter().with_min_len(GRAIN.div_ceil(per).max(1)).map(f).collect()
}

/// Runs `f(c, in_plane_range, out_plane)` for every `(n, c)` plane of `out`, in parallel.
fn per_plane(
    out: &mut [f32],
    c: usize,
    plane: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    if out.len() <= GRAIN {
        for (i, o) in out.chunks_mut(plane).enumerate() {
            f(i % c, i * plane..(i + 1) * plane, o);
        }
        return;
    }
    out.par_chunks_mut(plane).with_min_len(GRAIN.div_ceil(plane).max(1)).enumerate().for_each(|(i, o)| {
        f(i % c, i * plane..(i + 1) * plane, o);
    });
}

/// Per-channel mean and biased variance of `x` `[N, C, plane]`.
pub fn bn_stats(x: &[f32], n: usize, c: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (n * plane) as f64;
    let stats = per_channel(n, c, plane, |ch| {
        let mut s = 0.0f64;
        for i in 0..n {
            let p = &x[(i * c + ch) * plane..(i * c + ch + 1) * plane];
            s += sums(p, 0.0).0;
        }
        let mean = (s / count) as f32;
        let mut v = 0.0f64;
        for i in 0..n {
            let p = &x[(i * c + ch) * plane..(i * c + ch + 1) * plane];
            v += sums(p, mean).1;
        }
        (mean, (v / count) as f32)
    });
    stats.into_iter().unzip()
}

/// Per-channel `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`.
pub fn bn_scale_shift(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    (0..gamma.len())
        .map(|ch| {
            let inv_std = 1.0 / (var[ch] as f64 + eps).sqrt();
            let scale = gamma[ch] as f64 * inv_std;
            (scale as f32, (beta[ch] as f64 - mean[ch] as f64 * scale) as f32)
        })
        .unzip()
}

/// `clamp(x * scale[c] + shift[c], lo, hi)` over `[N, C, plane]` (`lo = -inf, hi = inf`: no
/// activation).
pub fn bn_apply(x: &[f32], c: usize, plane: usize, scale: &[f32], shift: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    count();
    let mut out = vec![0.0f32; x.len()];
    per_plane(&mut out, c, plane, |ch, r, o| affine_clamp(&x[r], o, scale[ch], shift[ch], lo, hi));
    out
}

/// Batch norm with batch statistics: `(output, mean, biased variance)`, output clamped to
/// `[lo, hi]`.
#[allow(clippy::too_many_arguments)]
pub fn bn_train_forward(
    x: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var) = bn_stats(x, n, c, plane);
    let (scale, shift) = bn_scale_shift(gamma, beta, &mean, &var, eps);
    let out = bn_apply(x, c, plane, &scale, &shift, f32::NEG_INFINITY, f32::INFINITY);
    (out, mean, var)
}

/// Gradients of [`bn_train_forward`]: `(dx, dgamma, dbeta)` given the output gradient `g`.
#[allow(clippy::too_many_arguments)]
pub fn bn_train_backward(
    x: &[f32],
    g: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    count();
    let m = (n * plane) as f64;
    // Per channel: sum(g) and sum(g * (x - mean)).
    let sums = per_channel(n, c, plane, |ch| {
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for i in 0..n {
            let r = (i * c + ch) * plane..(i * c + ch + 1) * plane;
            let (a, b) = dot2(&x[r.clone()], &g[r], mean[ch]);
            sg += a;
            sgx += b;
        }
        (sg, sgx)
    });
    let mut dgamma = Vec::with_capacity(c);
    let mut dbeta = Vec::with_capacity(c);
    // dx = gamma * inv_std * (g - mean(g) - xhat * mean(g * xhat)) = a * g + b * x + d.
    let mut coef = Vec::with_capacity(c);
    for (ch, &(sg, sgx)) in sums.iter().enumerate() {
        let inv_std = 1.0 / (var[ch] as f64 + eps).sqrt();
        let gamma_grad = sgx * inv_std;
        dgamma.push(gamma_grad as f32);
        dbeta.push(sg as f32);
        let a = gamma[ch] as f64 * inv_std;
        let b = -a * inv_std * gamma_grad / m;
        let d = -a * sg / m - b * mean[ch] as f64;
        coef.push((a as f32, b as f32, d as f32));
    }
    let mut dx = vec![0.0f32; x.len()];
    per_plane(&mut dx, c, plane, |ch, r, o| {
        let (a, b, d) = coef[ch];
        affine2(&x[r.clone()], &g[r], o, a, b, d)
    });
    (dx, dgamma, dbeta)
}

/// `clamp(x, lo, hi)`, in parallel.
pub fn clamp(x: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    count();
    let mut out = vec![0.0f32; x.len()];
    if x.len() <= GRAIN {
        clamp_rows(x, &mut out, lo, hi);
        return out;
    }
    out.par_chunks_mut(GRAIN).zip(x.par_chunks(GRAIN)).for_each(|(o, xs)| clamp_rows(xs, o, lo, hi));
    out
}

/// The gradient of `y = clamp(x, lo, hi)` from its output: `g` where `lo < y < hi`, else 0.
pub fn clamp_backward(y: &[f32], g: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    count();
    let mut out = vec![0.0f32; y.len()];
    if y.len() <= GRAIN {
        clamp_grad_rows(y, g, &mut out, lo, hi);
        return out;
    }
    out.par_chunks_mut(GRAIN)
        .zip(y.par_chunks(GRAIN).zip(g.par_chunks(GRAIN)))
        .for_each(|(o, (ys, gs))| clamp_grad_rows(ys, gs, o, lo, hi));
    out
}
