//! Integer matrix products for quantized convolutions and linear layers: `u8` activations x `i8`
//! weights with `i32` accumulation ([`qgemm`]), the requantization epilogue back to `u8`
//! ([`Requant`]), and the measured int8 dot-product peak of one core ([`int8_peak_gops`]).
//!
//! # Scheme
//!
//! Activations are affine per tensor (`real = sa * (q - za)`, `q: u8`), weights symmetric per
//! output channel (`real = sw[c] * q`, `q: i8`, zero point 0). A convolution as im2col is
//! `out[c, p] = sum_k W[c, k] * X[k, p]` with the weights as the `M` side (`c`: output channel)
//! and the activations as the `N` side (`p`: output pixel), so
//!
//! `sum_k sw[c] W[c,k] * sa (X[k,p] - za) = sa sw[c] (acc[c,p] - za * rowsum(W)[c])`,
//!
//! with `acc = W x X` the raw integer product [`qgemm`] computes and `rowsum(W)[c]` precomputed
//! once per output channel ([`PackedWeights::row_sums`]). The correction is exact integer
//! arithmetic and is folded, with the quantized bias, into one `i32` offset per channel
//! ([`Requant::offset`]). Padding of a convolution must be written as `za` (the real zero) by the
//! im2col, not as 0.
//!
//! # Packing
//!
//! `vpdpbusd` multiplies unsigned bytes of its first source by signed bytes of its second in
//! groups of 4 consecutive bytes and adds the 4 products to one `i32` lane. So the activations
//! (the `u8` operand) are packed in groups of 4 along `k` ([`PackedActs`]): panels of
//! [`PANEL`] = 16 columns, and within a panel, for each group `g` of 4 inner indices, 64 bytes
//! `[col 0: k 4g..4g+4, col 1: k 4g..4g+4, ..., col 15]` (one zmm, 16 `i32` lanes = 16 output
//! columns). The weights ([`PackedWeights`]) stay row-major with the row length rounded up to a
//! multiple of 4 (zero padded), and 4 consecutive bytes of a row are broadcast to every lane.
//! Padding bytes of the inner dimension are 0 in the weights, so whatever the activations hold
//! there adds nothing; columns past `n` are computed and not stored. One packing serves every path.
//!
//! # Paths ([`QPath`], chosen at run time)
//!
//! - [`QPath::Avx512Vnni`]: `vpdpbusd zmm`, a tile of 8 rows x 32 columns (16 accumulators).
//! - [`QPath::AvxVnni`]: `vpdpbusd ymm` (VEX encoding, `_mm256_dpbusd_avx_epi32`, stable in Rust
//!   1.95), 6 rows x 16 columns (12 of the 16 ymm registers).
//! - [`QPath::Avx2`]: no `vpmaddubsw`: it adds two `u8 x i8` products into a *saturating* `i16`
//!   (`255 * 127 * 2 = 64770 > 32767`), which would make the result depend on the weight range.
//!   Instead both operands are widened to `i16` (`vpmovzxbw` / `vpmovsxbw`) and multiplied by
//!   `vpmaddwd`, which adds two `i16 x i16` products into an `i32`: each product is at most
//!   `255 * 128 = 32640` in magnitude, so the pair sum always fits and the step is exact for every
//!   `i8` weight, `-128` included. 2 rows x 16 columns.
//! - [`QPath::Portable`]: plain loops, the reference.
//!
//! All paths add the same products with `i32` wrapping adds (the instructions above wrap, they do
//! not saturate: `vpdpbusd`, not `vpdpbusds`), and integer addition is associative modulo `2^32`,
//! so every path gives the portable path's output bit for bit, whatever the order. The sums are
//! also *exact* (no wrap) while `k * 255 * 128 < 2^31`, i.e. `k <= 65_793`; ResNet-50's largest
//! inner dimension is `512 * 9 = 4608`.
//!
//! # Requantization: f32 rescale
//!
//! `out = clamp(round_half_even((acc + offset[c]) as f32 * mult[c]) + zo, lo, hi)` with
//! `mult[c] = sa * sw[c] / so` in `f32` and ReLU / ReLU6 / clamp folded into `lo, hi`. f32 rather
//! than a fixed-point multiplier + shift, because: the scales are stored as `f32`, so the
//! multiplier is computed once per channel with no search for a shift; on x86 it is 5 vector
//! instructions per 16 values (convert, multiply, round, min/max, convert), while an exact
//! `i32 x i32 -> i64` fixed-point multiply (gemmlowp's `SQRDMULH` is an ARM instruction) needs two
//! `vpmuldq` on even / odd lanes, shifts and blends; and it is what PyTorch's x86 engine (fbgemm)
//! does, so kiln rounds like the models it is compared with. The cost is that `acc` is rounded to
//! 24 bits before the multiply when `|acc| > 2^24` (relative error `2^-24`, below the
//! representation error of the `f32` scale itself). The rescale is deterministic: the vector
//! paths use IEEE `f32` conversion / multiplication and round-half-to-even exactly as the scalar
//! code ([`f32::round_ties_even`]), and the clamp happens in `f32` on integral values, so every
//! path gives the same bytes (tested).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// Columns per packed activation panel (one zmm of `i32` lanes).
pub const PANEL: usize = 16;

/// Largest inner dimension whose `i32` sums cannot wrap (`k * 255 * 128 < 2^31`).
pub const MAX_EXACT_K: usize = (i32::MAX as usize) / (255 * 128);

/// The instruction-set paths of [`qgemm`], chosen once per call from the running CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QPath {
    /// AVX-512 VNNI (`vpdpbusd zmm`), with AVX-512BW / F.
    Avx512Vnni,
    /// AVX-VNNI (`vpdpbusd ymm`, VEX), with AVX2.
    AvxVnni,
    /// AVX2: widened to `i16` and `vpmaddwd` (exact, see the module docs).
    Avx2,
    /// Plain loops (any CPU).
    Portable,
}

impl QPath {
    /// The fastest path this CPU runs.
    pub fn detect() -> QPath {
        QPath::available().into_iter().next().unwrap_or(QPath::Portable)
    }

    /// Every path this CPU runs, fastest first (the portable path always last).
    pub fn available() -> Vec<QPath> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512vnni") && has!("avx512bw") && has!("avx512f") {
                paths.push(QPath::Avx512Vnni);
            }
            if has!("avxvnni") && has!("avx2") {
                paths.push(QPath::AvxVnni);
            }
            if has!("avx2") {
                paths.push(QPath::Avx2);
            }
        }
        paths.push(QPath::Portable);
        paths
    }
}

/// `i8` weights `[m, k]` packed for [`qgemm`]: row-major, rows padded with zeros to `kp`, a
/// multiple of 4, with each row's sum (for the activation zero point).
#[derive(Clone, Debug)]
pub struct PackedWeights {
    m: usize,
    k: usize,
    kp: usize,
    data: Vec<i8>,
    row_sums: Vec<i32>,
}

impl PackedWeights {
    /// Packs `w`, row-major `[m, k]`.
    ///
    /// # Panics
    /// When `w.len() != m * k`.
    pub fn new(m: usize, k: usize, w: &[i8]) -> PackedWeights {
        assert_eq!(w.len(), m * k, "PackedWeights: {} weights for a [{m}, {k}] matrix", w.len());
        let kp = k.div_ceil(4) * 4;
        let mut data = vec![0i8; m * kp];
        let mut row_sums = Vec::with_capacity(m);
        for i in 0..m {
            let row = &w[i * k..(i + 1) * k];
            data[i * kp..i * kp + k].copy_from_slice(row);
            row_sums.push(row.iter().map(|&v| v as i32).sum());
        }
        PackedWeights { m, k, kp, data, row_sums }
    }

    /// Rows (output channels).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Inner dimension.
    pub fn inner(&self) -> usize {
        self.k
    }

    /// `sum_k W[c, k]` for each row `c`.
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }
}

/// `u8` activations `[k, n]` packed for [`qgemm`] (layout: see the module docs).
#[derive(Clone, Debug)]
pub struct PackedActs {
    k: usize,
    n: usize,
    kg: usize,
    data: Vec<u8>,
}

impl PackedActs {
    /// Packs `x`: element `(kk, j)` at `x[kk * ldx + j]` for `kk < k`, `j < n`.
    ///
    /// # Panics
    /// When `x` is too short or `ldx < n`.
    pub fn new(k: usize, n: usize, x: &[u8], ldx: usize) -> PackedActs {
        let mut p = PackedActs { k, n, kg: 0, data: Vec::new() };
        p.repack(k, n, x, ldx);
        p
    }

    /// [`PackedActs::new`] into this value's buffer (reused across images).
    pub fn repack(&mut self, k: usize, n: usize, x: &[u8], ldx: usize) {
        assert!(ldx >= n, "PackedActs: row stride {ldx} < {n} columns");
        assert!(k == 0 || n == 0 || (k - 1) * ldx + n <= x.len(), "PackedActs: activations are too short");
        let kg = k.div_ceil(4);
        let np = n.div_ceil(PANEL);
        self.k = k;
        self.n = n;
        self.kg = kg;
        self.data.clear();
        self.data.resize(np * kg * 64, 0);
        for q in 0..np {
            let j0 = q * PANEL;
            let cols = (n - j0).min(PANEL);
            let panel = &mut self.data[q * kg * 64..(q + 1) * kg * 64];
            for kk in 0..k {
                let (g, t) = (kk / 4, kk % 4);
                let src = &x[kk * ldx + j0..kk * ldx + j0 + cols];
                let dst = &mut panel[g * 64..(g + 1) * 64];
                for (j, &v) in src.iter().enumerate() {
                    dst[4 * j + t] = v;
                }
            }
        }
    }

    /// Inner dimension.
    pub fn inner(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.n
    }
}

struct SendPtr(*mut i32);
// SAFETY: tasks write disjoint columns of the output (see `qgemm`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(&self) -> *mut i32 {
        self.0
    }
}

fn check(w: &PackedWeights, x: &PackedActs, c: &[i32], ldc: usize) {
    assert_eq!(w.k, x.k, "qgemm: weights have inner dimension {}, activations {}", w.k, x.k);
    assert!(ldc >= x.n, "qgemm: output row stride {ldc} < {} columns", x.n);
    assert!(w.m == 0 || x.n == 0 || (w.m - 1) * ldc + x.n <= c.len(), "qgemm: output is too short");
}

/// `C [m, n] = W [m, k] x X [k, n]` in `i32` (row stride `ldc`), on the fastest path, the
/// columns split across rayon's threads. The raw product: the zero-point correction and the
/// bias are [`Requant`]'s.
pub fn qgemm(w: &PackedWeights, x: &PackedActs, c: &mut [i32], ldc: usize) {
    check(w, x, c, ldc);
    let path = QPath::detect();
    let np = x.n.div_ceil(PANEL);
    let threads = rayon::current_num_threads().max(1);
    // Even panel counts per task (the AVX-512 tile is two panels wide), at least ~1 M MACs each.
    let min_panels = (1 << 20) / (w.m * w.kp * PANEL).max(1);
    let per = np.div_ceil(threads * 4).max(min_panels).max(2).div_ceil(2) * 2;
    let tasks = np.div_ceil(per);
    if tasks <= 1 {
        // SAFETY: shapes checked above; the path comes from `QPath::detect`.
        unsafe { cols_on(path, w, x, c.as_mut_ptr(), ldc, 0, np) };
        return;
    }
    let out = SendPtr(c.as_mut_ptr());
    (0..tasks).into_par_iter().for_each(|t| {
        let (q0, q1) = (t * per, ((t + 1) * per).min(np));
        // SAFETY: as above; each task writes only its columns [q0 * 16, q1 * 16) of C.
        unsafe { cols_on(path, w, x, out.get(), ldc, q0, q1) };
    });
}

/// [`qgemm`] on a given path, on the calling thread (tests run every path the CPU has).
///
/// # Panics
/// When `path` is not one this CPU runs, or the shapes do not match.
pub fn qgemm_on(path: QPath, w: &PackedWeights, x: &PackedActs, c: &mut [i32], ldc: usize) {
    assert!(QPath::available().contains(&path), "qgemm: path {path:?} is not supported by this CPU");
    check(w, x, c, ldc);
    // SAFETY: shapes checked above, the path is available.
    unsafe { cols_on(path, w, x, c.as_mut_ptr(), ldc, 0, x.n.div_ceil(PANEL)) };
}

/// Panels `[q0, q1)` of the product into `c`.
///
/// # Safety
/// `path` is available; `c` holds `m` rows of stride `ldc >= n`; shapes match.
unsafe fn cols_on(path: QPath, w: &PackedWeights, x: &PackedActs, c: *mut i32, ldc: usize, q0: usize, q1: usize) {
    if w.m == 0 || q1 <= q0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        match path {
            #[cfg(target_arch = "x86_64")]
            QPath::Avx512Vnni => x86::cols512(w, x, c, ldc, q0, q1),
            #[cfg(target_arch = "x86_64")]
            QPath::AvxVnni => x86::cols_vnni256(w, x, c, ldc, q0, q1),
            #[cfg(target_arch = "x86_64")]
            QPath::Avx2 => x86::cols_avx2(w, x, c, ldc, q0, q1),
            _ => portable_cols(w, x, c, ldc, q0, q1),
        }
    }
}

/// # Safety
/// As [`cols_on`].
unsafe fn portable_cols(w: &PackedWeights, x: &PackedActs, c: *mut i32, ldc: usize, q0: usize, q1: usize) {
    let kg = x.kg;
    for q in q0..q1 {
        let panel = &x.data[q * kg * 64..(q + 1) * kg * 64];
        let cols = (x.n - q * PANEL).min(PANEL);
        for i in 0..w.m {
            let wr = &w.data[i * w.kp..(i + 1) * w.kp];
            let mut acc = [0i32; PANEL];
            for g in 0..kg {
                let xg = &panel[g * 64..(g + 1) * 64];
                let wg = &wr[4 * g..4 * g + 4];
                for (j, a) in acc.iter_mut().enumerate() {
                    for t in 0..4 {
                        *a = a.wrapping_add(xg[4 * j + t] as i32 * wg[t] as i32);
                    }
                }
            }
            for (j, &a) in acc[..cols].iter().enumerate() {
                // SAFETY: row i < m, column q * 16 + j < n <= ldc (caller's contract).
                unsafe { *c.add(i * ldc + q * PANEL + j) = a };
            }
        }
    }
}

/// The activation folded into the requantization's clamp bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// No activation: the full `u8` range.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
    /// `clamp(x, lo, hi)` in real units (`lo <= hi`; infinities for open ends).
    Clamp(f32, f32),
}

/// The requantization of one layer's `i32` products to `u8`: for row (output channel) `c`,
/// `out = clamp(round_half_even((acc + offset[c]) as f32 * mult[c]) + zo, lo, hi)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    /// `sa * sw[c] / so` per output channel.
    pub mult: Vec<f32>,
    /// `bias_q[c] - za * rowsum(W)[c]` per output channel (wrapping `i32`).
    pub offset: Vec<i32>,
    /// Output zero point.
    pub zo: i32,
    /// Lowest output code (the activation's lower bound, quantized).
    pub lo: u8,
    /// Highest output code.
    pub hi: u8,
}

/// `clamp(zo + round_half_even(v / so), 0, 255)`, an infinite `v` to the end of the range.
fn quantize_bound(v: f32, so: f32, zo: u8) -> u8 {
    let q = (v / so).round_ties_even() as f64 + zo as f64; // `as f64`: exact; infinities stay infinite
    q.clamp(0.0, 255.0) as u8
}

impl Requant {
    /// The requantization of `W x X` (weights packed as `w`, per-channel scales `sw`, activation
    /// scale `sa` and zero point `za`) to an output of scale `so` and zero point `zo`, with the
    /// real-valued `bias` (quantized to `round_half_even(b / (sa * sw[c]))`, saturated to `i32`)
    /// and `act` folded in.
    ///
    /// # Panics
    /// When `sw` or `bias` do not have one entry per row of `w`, a scale is not finite and
    /// positive, a bias is not finite, or a clamp has `lo > hi`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &PackedWeights,
        sa: f32,
        za: u8,
        sw: &[f32],
        bias: Option<&[f32]>,
        so: f32,
        zo: u8,
        act: Act,
    ) -> Requant {
        let m = w.rows();
        assert_eq!(sw.len(), m, "Requant: {} weight scales for {m} output channels", sw.len());
        let ok = |s: f32| s.is_finite() && s > 0.0;
        assert!(ok(sa) && ok(so) && sw.iter().all(|&s| ok(s)), "Requant: scales must be finite and positive");
        if let Some(b) = bias {
            assert_eq!(b.len(), m, "Requant: {} biases for {m} output channels", b.len());
            assert!(b.iter().all(|v| v.is_finite()), "Requant: biases must be finite");
        }
        let mult = sw.iter().map(|&s| sa * s / so).collect();
        let offset = (0..m)
            .map(|c| {
                let bq = bias.map_or(0, |b| (b[c] / (sa * sw[c])).round_ties_even() as i32);
                bq.wrapping_sub((za as i32).wrapping_mul(w.row_sums()[c]))
            })
            .collect();
        let (lo, hi) = match act {
            Act::None => (f32::NEG_INFINITY, f32::INFINITY),
            Act::Relu => (0.0, f32::INFINITY),
            Act::Relu6 => (0.0, 6.0),
            Act::Clamp(lo, hi) => {
                assert!(lo <= hi, "Requant: clamp bounds {lo} > {hi}");
                (lo, hi)
            }
        };
        Requant { mult, offset, zo: zo as i32, lo: quantize_bound(lo, so, zo), hi: quantize_bound(hi, so, zo) }
    }

    /// Rows `[0, m)` of `acc` (row stride `lda`, `n` columns) requantized into `out` (row stride
    /// `ldo`), row `i` with channel `i`'s parameters, on the fastest path.
    pub fn apply(&self, acc: &[i32], lda: usize, n: usize, out: &mut [u8], ldo: usize) {
        self.apply_on(QPath::detect(), acc, lda, n, out, ldo)
    }

    /// [`Requant::apply`] on a given path (every path gives the same bytes).
    ///
    /// # Panics
    /// When `path` is not available or a buffer is too short.
    pub fn apply_on(&self, path: QPath, acc: &[i32], lda: usize, n: usize, out: &mut [u8], ldo: usize) {
        assert!(QPath::available().contains(&path), "requantize: path {path:?} is not supported by this CPU");
        let m = self.mult.len();
        if m == 0 || n == 0 {
            return;
        }
        assert!(lda >= n && ldo >= n, "requantize: row strides {lda} / {ldo} < {n} columns");
        assert!((m - 1) * lda + n <= acc.len(), "requantize: accumulators are too short");
        assert!((m - 1) * ldo + n <= out.len(), "requantize: output is too short");
        let (lo, hi) = ((self.lo as i32 - self.zo) as f32, (self.hi as i32 - self.zo) as f32);
        for i in 0..m {
            let (a, o) = (&acc[i * lda..i * lda + n], &mut out[i * ldo..i * ldo + n]);
            let (off, mult) = (self.offset[i], self.mult[i]);
            let done = match path {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F is present (the VNNI path needs it); lengths are n.
                QPath::Avx512Vnni => unsafe { x86::requant512(a, o, off, mult, self.zo, lo, hi) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 is present (both paths need it); lengths are n.
                QPath::AvxVnni | QPath::Avx2 => unsafe { x86::requant256(a, o, off, mult, self.zo, lo, hi) },
                _ => 0,
            };
            for (d, &v) in o[done..].iter_mut().zip(&a[done..]) {
                *d = requant1(v, off, mult, self.zo, lo, hi);
            }
        }
    }
}

/// One value: `lo` / `hi` are the bounds minus `zo`, as `f32` (small integers, exact).
#[inline(always)]
fn requant1(acc: i32, off: i32, mult: f32, zo: i32, lo: f32, hi: f32) -> u8 {
    let v = (acc.wrapping_add(off) as f32 * mult).round_ties_even();
    (v.max(lo).min(hi) as i32 + zo) as u8
}

/// Single-thread int8 dot-product throughput on `path`, in GOP/s (a multiply-add counts 2 ops):
/// the best of several timed bursts within about `budget` (at least one burst).
///
/// The loops keep more independent accumulators than latency x ports (5 cycles x 2 ports on
/// current cores): AVX-512 VNNI 24 `vpdpbusd zmm` (64 multiply-adds, 128 ops each), AVX-VNNI 12
/// `vpdpbusd ymm` (32), AVX2 12 `vpmaddwd ymm` + `vpaddd` (16 multiply-adds: the exact
/// widening scheme of [`qgemm`]'s AVX2 path), portable 32 scalar `i32` multiply-add chains.
///
/// # Panics
/// When `path` is not one this CPU runs.
pub fn int8_peak_gops(path: QPath, budget: Duration) -> f64 {
    assert!(QPath::available().contains(&path), "int8_peak_gops: path {path:?} is not supported by this CPU");
    let iters = 1u64 << 18;
    let burst = || -> f64 {
        let t = Instant::now();
        let ops = match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the path's extensions are present (checked above).
            QPath::Avx512Vnni => unsafe { x86::peak512(iters) },
            #[cfg(target_arch = "x86_64")]
            QPath::AvxVnni => unsafe { x86::peak_vnni256(iters) },
            #[cfg(target_arch = "x86_64")]
            QPath::Avx2 => unsafe { x86::peak_avx2(iters) },
            _ => peak_portable(iters),
        };
        ops / t.elapsed().as_secs_f64() / 1e9
    };
    let start = Instant::now();
    let mut best = burst();
    while start.elapsed() < budget {
        best = best.max(burst());
    }
    best
}

fn peak_portable(iters: u64) -> f64 {
    let mut acc = [0i32; 32];
    let (a, b) = (black_box(3i32), black_box(-5i32));
    for _ in 0..iters / 4 {
        for x in acc.iter_mut() {
            *x = x.wrapping_mul(a).wrapping_add(b);
        }
    }
    black_box(acc);
    (iters / 4) as f64 * 32.0 * 2.0
}

/// [`qgemm`]'s speed on an `m x k x n` product on the calling thread and `path`, in GOP/s (best
/// of `reps` runs, packing excluded; `2 m k n` ops per run).
pub fn qgemm_gops(path: QPath, m: usize, k: usize, n: usize, reps: usize) -> f64 {
    let w: Vec<i8> = (0..m * k).map(|i| (i * 7 % 251) as i8).collect();
    let x: Vec<u8> = (0..k * n).map(|i| (i * 13 % 256) as u8).collect();
    let (pw, px) = (PackedWeights::new(m, k, &w), PackedActs::new(k, n, &x, n));
    let mut c = vec![0i32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        qgemm_on(path, &pw, &px, &mut c, n);
        best = best.min(t.elapsed().as_secs_f64());
    }
    black_box(&c);
    2.0 * (m * k * n) as f64 / best / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PANEL, PackedActs, PackedWeights};
    use std::arch::x86_64::*;

    /// 4 bytes of weight row `r` at group `g` as one `i32`.
    #[inline(always)]
    unsafe fn w4(w: *const i8, kp: usize, r: usize, g: usize) -> i32 {
        // SAFETY: r < m and 4 g + 4 <= kp (callers).
        unsafe { w.add(r * kp + 4 * g).cast::<i32>().read_unaligned() }
    }

    /// Rows `[i0, i0 + MR)` x panels `[q, q + NP)`: `ncols` valid columns.
    #[inline]
    #[target_feature(enable = "avx512vnni,avx512bw,avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile512<const MR: usize, const NP: usize>(
        w: *const i8,
        kp: usize,
        x: *const u8,
        pstride: usize,
        kg: usize,
        c: *mut i32,
        ldc: usize,
        ncols: usize,
    ) {
        let mut acc = [[_mm512_setzero_si512(); NP]; MR];
        for g in 0..kg {
            let mut xv = [_mm512_setzero_si512(); NP];
            for (p, v) in xv.iter_mut().enumerate() {
                // SAFETY: panel p of the tile exists and holds kg groups of 64 bytes.
                *v = unsafe { _mm512_loadu_si512(x.add(p * pstride + g * 64).cast()) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: see `w4`.
                let wv = _mm512_set1_epi32(unsafe { w4(w, kp, r, g) });
                for (a, &v) in row.iter_mut().zip(&xv) {
                    *a = _mm512_dpbusd_epi32(*a, v, wv);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (p, &a) in row.iter().enumerate() {
                let cols = ncols.saturating_sub(p * PANEL).min(PANEL);
                // SAFETY: row r of the tile, columns [p * 16, p * 16 + cols) are inside C.
                let dst = unsafe { c.add(r * ldc + p * PANEL) };
                if cols == PANEL {
                    unsafe { _mm512_storeu_si512(dst.cast(), a) };
                } else if cols > 0 {
                    unsafe { _mm512_mask_storeu_epi32(dst, ((1u32 << cols) - 1) as __mmask16, a) };
                }
            }
        }
    }

    macro_rules! rows {
        ($mr:expr, $f:ident, $np:literal, $args:tt, [$($n:literal),*]) => {
            match $mr {
                $($n => $f::<$n, $np> $args,)*
                _ => unreachable!(),
            }
        };
    }

    /// # Safety
    /// AVX-512 VNNI / BW / F present; as `super::cols_on`.
    #[target_feature(enable = "avx512vnni,avx512bw,avx512f")]
    pub(super) unsafe fn cols512(w: &PackedWeights, x: &PackedActs, c: *mut i32, ldc: usize, q0: usize, q1: usize) {
        const MR: usize = 8;
        let (kg, kp) = (x.kg, w.kp);
        let pstride = kg * 64;
        let mut q = q0;
        while q < q1 {
            let np = (q1 - q).min(2);
            let ncols = (x.n - q * PANEL).min(np * PANEL);
            let xp = unsafe { x.data.as_ptr().add(q * pstride) };
            let mut i = 0;
            while i < w.m {
                let mr = (w.m - i).min(MR);
                let wp = unsafe { w.data.as_ptr().add(i * kp) };
                let cp = unsafe { c.add(i * ldc + q * PANEL) };
                // SAFETY: the tile lies inside W, X and C (caller's contract).
                unsafe {
                    if np == 2 {
                        rows!(mr, tile512, 2, (wp, kp, xp, pstride, kg, cp, ldc, ncols), [1, 2, 3, 4, 5, 6, 7, 8])
                    } else {
                        rows!(mr, tile512, 1, (wp, kp, xp, pstride, kg, cp, ldc, ncols), [1, 2, 3, 4, 5, 6, 7, 8])
                    }
                }
                i += mr;
            }
            q += np;
        }
    }

    /// Stores 8 `i32` lanes, the first `cols` of them.
    #[inline(always)]
    unsafe fn store8(dst: *mut i32, v: __m256i, cols: usize) {
        if cols >= 8 {
            unsafe { _mm256_storeu_si256(dst.cast(), v) };
        } else if cols > 0 {
            let mut tmp = [0i32; 8];
            unsafe { _mm256_storeu_si256(tmp.as_mut_ptr().cast(), v) };
            for (j, &t) in tmp[..cols].iter().enumerate() {
                unsafe { *dst.add(j) = t };
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avxvnni,avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_vnni256<const MR: usize, const NP: usize>(
        w: *const i8,
        kp: usize,
        x: *const u8,
        _pstride: usize,
        kg: usize,
        c: *mut i32,
        ldc: usize,
        ncols: usize,
    ) {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        for g in 0..kg {
            // SAFETY: the panel holds kg groups of 64 bytes.
            let xv =
                unsafe { [_mm256_loadu_si256(x.add(g * 64).cast()), _mm256_loadu_si256(x.add(g * 64 + 32).cast())] };
            for (r, row) in acc.iter_mut().enumerate() {
                let wv = _mm256_set1_epi32(unsafe { w4(w, kp, r, g) });
                for (a, &v) in row.iter_mut().zip(&xv) {
                    *a = _mm256_dpbusd_avx_epi32(*a, v, wv);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (h, &a) in row.iter().enumerate() {
                unsafe { store8(c.add(r * ldc + 8 * h), a, ncols.saturating_sub(8 * h)) };
            }
        }
    }

    /// # Safety
    /// AVX-VNNI and AVX2 present; as `super::cols_on`.
    #[target_feature(enable = "avxvnni,avx2")]
    pub(super) unsafe fn cols_vnni256(
        w: &PackedWeights,
        x: &PackedActs,
        c: *mut i32,
        ldc: usize,
        q0: usize,
        q1: usize,
    ) {
        const MR: usize = 6;
        let (kg, kp) = (x.kg, w.kp);
        for q in q0..q1 {
            let ncols = (x.n - q * PANEL).min(PANEL);
            let xp = unsafe { x.data.as_ptr().add(q * kg * 64) };
            let mut i = 0;
            while i < w.m {
                let mr = (w.m - i).min(MR);
                let wp = unsafe { w.data.as_ptr().add(i * kp) };
                let cp = unsafe { c.add(i * ldc + q * PANEL) };
                // SAFETY: the tile lies inside W, X and C.
                unsafe { rows!(mr, tile_vnni256, 1, (wp, kp, xp, 0, kg, cp, ldc, ncols), [1, 2, 3, 4, 5, 6]) }
                i += mr;
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx2<const MR: usize, const NP: usize>(
        w: *const i8,
        kp: usize,
        x: *const u8,
        _pstride: usize,
        kg: usize,
        c: *mut i32,
        ldc: usize,
        ncols: usize,
    ) {
        // acc[r][q]: columns 4q..4q+4, two partial sums per column (k pairs 0-1 and 2-3).
        let mut acc = [[_mm256_setzero_si256(); 4]; MR];
        for g in 0..kg {
            let mut xv = [_mm256_setzero_si256(); 4];
            for (q, v) in xv.iter_mut().enumerate() {
                // SAFETY: the panel holds kg groups of 64 bytes.
                *v = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(x.add(g * 64 + 16 * q).cast()) });
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let wv = _mm256_cvtepi8_epi16(_mm_set1_epi32(unsafe { w4(w, kp, r, g) }));
                for (a, &v) in row.iter_mut().zip(&xv) {
                    // |u8 * i8| <= 32640: the i16 pair sum fits an i32 exactly.
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(v, wv));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for h in 0..2 {
                // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7] -> 64-bit lanes (0, 2, 1, 3).
                let s = _mm256_hadd_epi32(row[2 * h], row[2 * h + 1]);
                let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(s);
                unsafe { store8(c.add(r * ldc + 8 * h), s, ncols.saturating_sub(8 * h)) };
            }
        }
    }

    /// # Safety
    /// AVX2 present; as `super::cols_on`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn cols_avx2(w: &PackedWeights, x: &PackedActs, c: *mut i32, ldc: usize, q0: usize, q1: usize) {
        const MR: usize = 2;
        let (kg, kp) = (x.kg, w.kp);
        for q in q0..q1 {
            let ncols = (x.n - q * PANEL).min(PANEL);
            let xp = unsafe { x.data.as_ptr().add(q * kg * 64) };
            let mut i = 0;
            while i < w.m {
                let mr = (w.m - i).min(MR);
                let wp = unsafe { w.data.as_ptr().add(i * kp) };
                let cp = unsafe { c.add(i * ldc + q * PANEL) };
                // SAFETY: the tile lies inside W, X and C.
                unsafe { rows!(mr, tile_avx2, 1, (wp, kp, xp, 0, kg, cp, ldc, ncols), [1, 2]) }
                i += mr;
            }
        }
    }

    /// [`super::requant1`] over 16 lanes at a time; returns how many values were done.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn requant512(a: &[i32], o: &mut [u8], off: i32, mult: f32, zo: i32, lo: f32, hi: f32) -> usize {
        let n = a.len().min(o.len()) / 16 * 16;
        let (voff, vm, vzo) = (_mm512_set1_epi32(off), _mm512_set1_ps(mult), _mm512_set1_epi32(zo));
        let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        for j in (0..n).step_by(16) {
            // SAFETY: j + 16 <= n <= both lengths.
            let v = unsafe { _mm512_loadu_si512(a.as_ptr().add(j).cast()) };
            let f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v, voff)), vm);
            let f = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(f);
            let f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
            let q = _mm512_add_epi32(_mm512_cvttps_epi32(f), vzo);
            unsafe { _mm_storeu_si128(o.as_mut_ptr().add(j).cast(), _mm512_cvtepi32_epi8(q)) };
        }
        n
    }

    /// [`super::requant1`] over 8 lanes at a time; returns how many values were done.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requant256(a: &[i32], o: &mut [u8], off: i32, mult: f32, zo: i32, lo: f32, hi: f32) -> usize {
        let n = a.len().min(o.len()) / 8 * 8;
        let (voff, vm, vzo) = (_mm256_set1_epi32(off), _mm256_set1_ps(mult), _mm256_set1_epi32(zo));
        let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
        for j in (0..n).step_by(8) {
            // SAFETY: j + 8 <= n <= both lengths.
            let v = unsafe { _mm256_loadu_si256(a.as_ptr().add(j).cast()) };
            let f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(v, voff)), vm);
            let f = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(f);
            let f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
            let q = _mm256_add_epi32(_mm256_cvttps_epi32(f), vzo);
            // Values in [0, 255]: the saturating packs keep them; bytes 0..4 of each 128-bit half.
            let b = _mm256_packus_epi16(_mm256_packs_epi32(q, q), _mm256_setzero_si256());
            let b = _mm256_permutevar8x32_epi32(b, gather);
            unsafe { _mm_storel_epi64(o.as_mut_ptr().add(j).cast(), _mm256_castsi256_si128(b)) };
        }
        n
    }

    /// `iters` rounds of 24 independent `vpdpbusd zmm`; returns the ops done.
    #[target_feature(enable = "avx512vnni,avx512bw,avx512f")]
    pub(super) unsafe fn peak512(iters: u64) -> f64 {
        let a = _mm512_set1_epi32(std::hint::black_box(0x0102_0304));
        let b = _mm512_set1_epi32(std::hint::black_box(-0x0102_0304));
        let mut acc = [_mm512_setzero_si512(); 24];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_si512();
        for x in acc {
            s = _mm512_add_epi32(s, x);
        }
        std::hint::black_box(_mm512_reduce_add_epi32(s));
        iters as f64 * 24.0 * 64.0 * 2.0
    }

    /// `iters` rounds of 12 independent `vpdpbusd ymm`; returns the ops done.
    #[target_feature(enable = "avxvnni,avx2")]
    pub(super) unsafe fn peak_vnni256(iters: u64) -> f64 {
        let a = _mm256_set1_epi32(std::hint::black_box(0x0102_0304));
        let b = _mm256_set1_epi32(std::hint::black_box(-0x0102_0304));
        let mut acc = [_mm256_setzero_si256(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_dpbusd_avx_epi32(*x, a, b);
            }
        }
        let mut s = _mm256_setzero_si256();
        for x in acc {
            s = _mm256_add_epi32(s, x);
        }
        std::hint::black_box(_mm256_extract_epi32::<0>(s));
        iters as f64 * 12.0 * 32.0 * 2.0
    }

    /// `iters` rounds of 12 independent `vpmaddwd ymm` + `vpaddd`; returns the ops done.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn peak_avx2(iters: u64) -> f64 {
        let b = _mm256_set1_epi16(std::hint::black_box(-77));
        let mut acc = [_mm256_set1_epi16(std::hint::black_box(201)); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                // Each multiply reads its accumulator (as i16 pairs), so none is loop-invariant.
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*x, b));
            }
        }
        let mut s = _mm256_setzero_si256();
        for x in acc {
            s = _mm256_add_epi32(s, x);
        }
        std::hint::black_box(_mm256_extract_epi32::<0>(s));
        iters as f64 * 12.0 * 16.0 * 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic xorshift stream.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random `u8` / `i8` with the extremes (0, 255, -128, 127) over-represented.
    fn data(rng: &mut Rng, m: usize, k: usize, n: usize) -> (Vec<i8>, Vec<u8>) {
        let w = (0..m * k)
            .map(|_| match rng.next() % 8 {
                0 => -128,
                1 => 127,
                _ => rng.next() as i8,
            })
            .collect();
        let x = (0..k * n)
            .map(|_| match rng.next() % 8 {
                0 => 0,
                1 => 255,
                _ => rng.next() as u8,
            })
            .collect();
        (w, x)
    }

    /// The definition, in `i64`.
    fn naive(m: usize, k: usize, n: usize, w: &[i8], x: &[u8]) -> Vec<i64> {
        let mut c = vec![0i64; m * n];
        for i in 0..m {
            for kk in 0..k {
                let a = w[i * k + kk] as i64;
                for j in 0..n {
                    c[i * n + j] += a * x[kk * n + j] as i64;
                }
            }
        }
        c
    }

    const SIZES: [usize; 9] = [1, 3, 4, 5, 17, 31, 64, 65, 129];

    #[test]
    fn portable_matches_the_definition() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for &m in &[1, 5, 17, 65] {
            for &k in &[1, 3, 5, 64, 129] {
                for &n in &[1, 4, 17, 31, 65] {
                    let (w, x) = data(&mut rng, m, k, n);
                    let (pw, px) = (PackedWeights::new(m, k, &w), PackedActs::new(k, n, &x, n));
                    let mut c = vec![0i32; m * n];
                    qgemm_on(QPath::Portable, &pw, &px, &mut c, n);
                    let want = naive(m, k, n, &w, &x);
                    assert!(c.iter().zip(&want).all(|(&a, &b)| a as i64 == b), "m {m} k {k} n {n}");
                    let sums: Vec<i32> =
                        (0..m).map(|i| w[i * k..(i + 1) * k].iter().map(|&v| v as i32).sum()).collect();
                    assert_eq!(pw.row_sums(), &sums[..]);
                }
            }
        }
    }

    #[test]
    fn every_path_matches_portable_bit_for_bit() {
        let paths = QPath::available();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for &m in &SIZES {
            for &k in &SIZES {
                for &n in &SIZES {
                    let (w, x) = data(&mut rng, m, k, n);
                    // A row stride wider than n (the sentinel must survive).
                    let ldc = n + 3;
                    let (pw, px) = (PackedWeights::new(m, k, &w), PackedActs::new(k, n, &x, n));
                    let mut want = vec![i32::MIN; m * ldc];
                    qgemm_on(QPath::Portable, &pw, &px, &mut want, ldc);
                    for &path in &paths {
                        let mut c = vec![i32::MIN; m * ldc];
                        qgemm_on(path, &pw, &px, &mut c, ldc);
                        assert!(c == want, "{path:?} differs from portable at m {m} k {k} n {n}");
                    }
                    let mut c = vec![i32::MIN; m * ldc];
                    qgemm(&pw, &px, &mut c, ldc);
                    assert!(c == want, "qgemm differs from portable at m {m} k {k} n {n}");
                }
            }
        }
    }

    #[test]
    fn extreme_values_do_not_saturate() {
        // 255 * -128 over k = 4097: -133_726_080 (vpmaddubsw's i16 pairs would saturate at -32768).
        let (m, k, n) = (3, 4097, 33);
        let w = vec![-128i8; m * k];
        let x = vec![255u8; k * n];
        let (pw, px) = (PackedWeights::new(m, k, &w), PackedActs::new(k, n, &x, n));
        for path in QPath::available() {
            let mut c = vec![0i32; m * n];
            qgemm_on(path, &pw, &px, &mut c, n);
            assert!(c.iter().all(|&v| v == -133_726_080), "{path:?}: {:?}", &c[..4]);
        }
        // And the positive extreme, 255 * 127 * 4097 = 132_681_345.
        let pw = PackedWeights::new(m, k, &vec![127i8; m * k]);
        for path in QPath::available() {
            let mut c = vec![0i32; m * n];
            qgemm_on(path, &pw, &px, &mut c, n);
            assert!(c.iter().all(|&v| v == 132_681_345), "{path:?}: {:?}", &c[..4]);
        }
    }

    #[test]
    fn strided_activations_pack_like_contiguous_ones() {
        let mut rng = Rng(7);
        let (m, k, n, ldx) = (5, 19, 21, 40);
        let (w, xs) = data(&mut rng, m, k, ldx);
        let x: Vec<u8> = (0..k).flat_map(|kk| xs[kk * ldx..kk * ldx + n].to_vec()).collect();
        let pw = PackedWeights::new(m, k, &w);
        let (mut a, mut b) = (vec![0i32; m * n], vec![0i32; m * n]);
        qgemm(&pw, &PackedActs::new(k, n, &xs, ldx), &mut a, n);
        qgemm(&pw, &PackedActs::new(k, n, &x, n), &mut b, n);
        assert_eq!(a, b);
        let want = naive(m, k, n, &w, &x);
        assert!(a.iter().zip(&want).all(|(&p, &q)| p as i64 == q));
    }

    /// The requantization written out independently: integer clamp of the saturated cast.
    fn reference(acc: i32, c: usize, rq: &Requant) -> u8 {
        let v = (acc.wrapping_add(rq.offset[c]) as f32 * rq.mult[c]).round_ties_even() as i32;
        (v as i64 + rq.zo as i64).clamp(rq.lo as i64, rq.hi as i64) as u8
    }

    #[test]
    fn requant_paths_match_the_reference() {
        let mut rng = Rng(99);
        let (m, k) = (7, 37);
        let (w, _) = data(&mut rng, m, k, 1);
        let pw = PackedWeights::new(m, k, &w);
        let sw: Vec<f32> = (0..m).map(|c| 0.003 + 0.0007 * c as f32).collect();
        let bias: Vec<f32> = (0..m).map(|c| c as f32 * 0.37 - 1.1).collect();
        for act in [Act::None, Act::Relu, Act::Relu6, Act::Clamp(-1.0, 2.5)] {
            for &n in &[1, 3, 8, 15, 16, 17, 31, 64, 65, 129] {
                let rq = Requant::new(&pw, 0.02, 117, &sw, Some(&bias), 0.05, 31, act);
                let lda = n + 2;
                // Accumulators over a wide range, including the i32 extremes.
                let acc: Vec<i32> = (0..m * lda)
                    .map(|i| match i % 11 {
                        0 => i32::MAX,
                        1 => i32::MIN,
                        _ => (rng.next() as i32) >> (rng.next() % 24),
                    })
                    .collect();
                let want: Vec<u8> = (0..m * n).map(|i| reference(acc[(i / n) * lda + i % n], i / n, &rq)).collect();
                for path in QPath::available() {
                    let mut out = vec![0u8; m * n];
                    rq.apply_on(path, &acc, lda, n, &mut out, n);
                    assert!(out == want, "{path:?} {act:?} n {n}");
                }
            }
        }
    }

    #[test]
    fn requant_parameters_and_ties() {
        // One channel, weights summing to 10, za 3: offset = round(0.5 / (0.5 * 0.25)) - 30 = -26.
        let pw = PackedWeights::new(1, 4, &[1, 2, 3, 4]);
        let rq = Requant::new(&pw, 0.5, 3, &[0.25], Some(&[0.5]), 0.25, 10, Act::None);
        assert_eq!((rq.mult[0], rq.offset[0], rq.lo, rq.hi), (0.5, -26, 0, 255));
        // ReLU: lo is the zero point; ReLU6 at so 0.25: hi = 10 + 24.
        let relu6 = Requant::new(&pw, 0.5, 3, &[0.25], None, 0.25, 10, Act::Relu6);
        assert_eq!((relu6.offset[0], relu6.lo, relu6.hi), (-30, 10, 34));
        assert_eq!(Requant::new(&pw, 0.5, 3, &[0.25], None, 0.25, 10, Act::Relu).lo, 10);
        // Ties to even: (acc - 26) * 0.5 for acc - 26 in {1, 3, 5, -1, -3} -> 0, 2, 2, -0, -2.
        let acc: Vec<i32> = [1, 3, 5, -1, -3, 1000, -1000, 63, 0].iter().map(|v| v + 26).collect();
        for path in QPath::available() {
            let mut out = vec![0u8; acc.len()];
            rq.apply_on(path, &acc, acc.len(), acc.len(), &mut out, acc.len());
            assert_eq!(out, vec![10, 12, 12, 10, 8, 255, 0, 42, 10], "{path:?}");
            relu6.apply_on(path, &acc, acc.len(), acc.len(), &mut out, acc.len());
            // relu6's offset is -30: (acc + 26 - 30) * 0.5 rounded, + 10, clamped to [10, 34].
            assert_eq!(out, vec![10, 10, 10, 10, 10, 34, 10, 34, 10], "{path:?}");
        }
    }

    #[test]
    fn requantized_product_matches_the_real_valued_layer() {
        // The integer pipeline against f64 arithmetic on dequantized values: within one code.
        let mut rng = Rng(5);
        let (m, k, n) = (6, 45, 23);
        let (w, x) = data(&mut rng, m, k, n);
        let (sa, za, so, zo) = (0.04f32, 128u8, 0.3f32, 60u8);
        let sw: Vec<f32> = (0..m).map(|c| 0.01 + 0.002 * c as f32).collect();
        let bias: Vec<f32> = (0..m).map(|c| 0.5 * c as f32 - 1.0).collect();
        let pw = PackedWeights::new(m, k, &w);
        let mut acc = vec![0i32; m * n];
        qgemm(&pw, &PackedActs::new(k, n, &x, n), &mut acc, n);
        let rq = Requant::new(&pw, sa, za, &sw, Some(&bias), so, zo, Act::Relu);
        let mut out = vec![0u8; m * n];
        rq.apply(&acc, n, n, &mut out, n);
        for c in 0..m {
            for j in 0..n {
                let real: f64 = (0..k)
                    .map(|kk| sw[c] as f64 * w[c * k + kk] as f64 * sa as f64 * (x[kk * n + j] as f64 - za as f64))
                    .sum::<f64>()
                    + bias[c] as f64;
                let q = (real.max(0.0) / so as f64 + zo as f64).round().clamp(0.0, 255.0);
                assert!((out[c * n + j] as f64 - q).abs() <= 1.0, "c {c} j {j}: {} vs {q}", out[c * n + j]);
            }
        }
    }

    #[test]
    fn every_path_reports_a_positive_finite_peak() {
        for path in QPath::available() {
            let g = int8_peak_gops(path, Duration::ZERO);
            assert!(g.is_finite() && g > 0.0, "{path:?}: {g}");
        }
    }

    /// ResNet-18's 3x3 convolutions as `cout x K x P` products at 224: one thread, every path.
    /// `cargo test -p kiln-kernels --lib qgemm::tests::resnet18_shapes -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn resnet18_shapes() {
        for path in QPath::available() {
            println!("{path:?}: peak {:.1} GOP/s", int8_peak_gops(path, Duration::from_millis(300)));
            for (m, k, n) in [(64, 576, 3136), (128, 1152, 784), (256, 2304, 196), (512, 4608, 49)] {
                println!("  {m}x{k}x{n}: {:.1} GOP/s", qgemm_gops(path, m, k, n, 5));
            }
        }
    }
}
