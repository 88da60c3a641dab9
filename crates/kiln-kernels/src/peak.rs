//! The machine's measured limits, for reports that put a kernel's speed next to what the core can
//! do: [`fma_peak_gflops`] times a loop of independent fused multiply-adds on one thread (the
//! measured peak, not a datasheet number) and [`cpu_extensions`] names the vector extensions the
//! running CPU reports.
//!
//! The loop keeps 24 (AVX-512, 16 lanes) or 12 (AVX2, 8 lanes) accumulators live, more than
//! latency x ports on any current core (4 cycles x 2 FMA ports = 8), so it runs at the FMA units'
//! throughput; every FMA counts 2 FLOPs per lane. The portable path times plain `f32` `mul_add`
//! chains the compiler may or may not vectorize: it is the reference for CPUs with neither.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::gemm::Path;

/// The vector extensions of the running CPU that kiln's kernels care about, in a fixed order.
pub fn cpu_extensions() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    v.push($f);
                }
            )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avxvnni",
            "avx512bf16",
            "avx512fp16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon");
        }
    }
    v
}

/// Single-thread `f32` FMA throughput on `path`, in GFLOP/s: the best of several timed bursts
/// within about `budget` (at least one burst).
///
/// # Panics
/// When `path` is not one this CPU runs (see [`Path::available`]).
pub fn fma_peak_gflops(path: Path, budget: Duration) -> f64 {
    assert!(Path::available().contains(&path), "fma_peak_gflops: path {path:?} is not supported by this CPU");
    let iters = 1u64 << 20;
    let burst = || -> f64 {
        let t = Instant::now();
        let flops = match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is present (checked above).
            Path::Avx512 => unsafe { x86::fma512(iters) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA are present (checked above).
            Path::Avx2 => unsafe { x86::fma256(iters) },
            _ => portable(iters),
        };
        flops / t.elapsed().as_secs_f64() / 1e9
    };
    let start = Instant::now();
    let mut best = burst();
    while start.elapsed() < budget {
        best = best.max(burst());
    }
    best
}

/// [`fma_peak_gflops`] on `threads` threads at once: the sum of their rates (each thread runs its
/// own loop; with `threads` equal to the core count this is the machine's peak).
pub fn fma_peak_gflops_threads(path: Path, threads: usize, budget: Duration) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(move || fma_peak_gflops(path, budget))).collect();
        handles.into_iter().map(|h| h.join().expect("peak thread")).sum()
    })
}

fn portable(iters: u64) -> f64 {
    let mut acc = [0.0f32; 32];
    let (a, b) = (black_box(0.999_999f32), black_box(1e-7f32));
    for _ in 0..iters / 4 {
        for x in acc.iter_mut() {
            *x = x.mul_add(a, b);
        }
    }
    black_box(acc);
    (iters / 4) as f64 * 32.0 * 2.0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// `iters` rounds of 24 independent 16-lane FMAs; returns the FLOPs done.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma512(iters: u64) -> f64 {
        let a = _mm512_set1_ps(black_box(0.999_999));
        let b = _mm512_set1_ps(black_box(1e-7));
        let mut acc = [_mm512_setzero_ps(); 24];
        for _ in 0..iters {
            // The fixed-size array is kept in registers (24 of the 32 zmm).
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for x in acc {
            s = _mm512_add_ps(s, x);
        }
        black_box(_mm512_reduce_add_ps(s));
        iters as f64 * 24.0 * 16.0 * 2.0
    }

    /// `iters` rounds of 12 independent 8-lane FMAs; returns the FLOPs done.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256(iters: u64) -> f64 {
        let a = _mm256_set1_ps(black_box(0.999_999));
        let b = _mm256_set1_ps(black_box(1e-7));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for x in acc {
            s = _mm256_add_ps(s, x);
        }
        let mut out = [0.0f32; 8];
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        black_box(out);
        iters as f64 * 12.0 * 8.0 * 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_reports_a_positive_finite_rate() {
        for path in Path::available() {
            let g = fma_peak_gflops(path, Duration::ZERO);
            assert!(g.is_finite() && g > 0.0, "{path:?}: {g}");
        }
    }

    #[test]
    fn extensions_agree_with_the_paths() {
        let ext = cpu_extensions();
        assert_eq!(Path::available().contains(&Path::Avx512), ext.contains(&"avx512f"));
        assert_eq!(Path::available().contains(&Path::Avx2), ext.contains(&"avx2") && ext.contains(&"fma"));
    }
}
