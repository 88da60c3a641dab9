//! The dense GEMM against the machine's measured limit: [`measure`] times the FMA throughput of
//! one core ([`kiln_kernels::peak`]) and kiln's GEMM ([`kiln_kernels::gemm::matmul_par`]) on the
//! products that ResNet-18's and MobileNetV2's dense convolutions run at 224 x 224, batch 1
//! (`C [Cout, P] = W [Cout, Cin*kh*kw] x cols [Cin*kh*kw, P]`), on one thread and on every
//! thread, and reports GFLOP/s per core as a share of that peak.

use std::time::{Duration, Instant};

use kiln_kernels::gemm::{self, Path, View};
use kiln_kernels::peak;
use serde::Serialize;

/// One GEMM shape's measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmRow {
    /// Which layer the product belongs to.
    pub layer: String,
    /// Rows of `C` (output channels).
    pub m: usize,
    /// Inner dimension (`Cin * kh * kw`).
    pub k: usize,
    /// Columns of `C` (output positions).
    pub n: usize,
    /// Best single-thread rate, GFLOP/s (`2 m n k` FLOPs per product), on packed operands as the
    /// convolution runs it (`A` = the weights packed once, `B` written as panels by im2col).
    pub gflops_1t: f64,
    /// `gflops_1t` / the measured single-core peak.
    pub share_of_peak: f64,
    /// Best rate on every thread, GFLOP/s, same product.
    pub gflops_all: f64,
    /// `gflops_all / gflops_1t`.
    pub scaling: f64,
    /// Best single-thread rate of the general product (`B` row-major, packed inside the call).
    pub gflops_1t_general: f64,
}

/// The GEMM section of a bench report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmReport {
    /// The micro-kernel path the GEMM ran on (`Avx512`, `Avx2`, `Portable`).
    pub path: String,
    /// Measured single-thread FMA peak on that path, GFLOP/s.
    pub peak_1t: f64,
    /// Measured peak with every thread running the FMA loop, GFLOP/s.
    pub peak_all: f64,
    /// Threads of the "all" columns.
    pub threads: usize,
    /// Per shape.
    pub rows: Vec<GemmRow>,
}

/// The products measured: ResNet-18's convolutions and MobileNetV2's stem and a few of its
/// pointwise ones, at 224 x 224, batch 1.
pub fn shapes() -> Vec<(&'static str, usize, usize, usize)> {
    vec![
        ("resnet18 conv1 7x7/2", 64, 147, 12544),
        ("resnet18 layer1 3x3", 64, 576, 3136),
        ("resnet18 layer2 3x3", 128, 1152, 784),
        ("resnet18 layer3 3x3", 256, 2304, 196),
        ("resnet18 layer4 3x3", 512, 4608, 49),
        ("mobilenet_v2 stem 3x3/2", 32, 27, 12544),
        ("mobilenet_v2 expand 1x1 24->144", 144, 24, 3136),
        ("mobilenet_v2 project 1x1 144->24", 24, 144, 3136),
        ("mobilenet_v2 expand 1x1 64->384", 384, 64, 196),
        ("mobilenet_v2 last 1x1 320->1280", 1280, 320, 49),
    ]
}

/// Measures the peak and every shape of [`shapes`] whose layer name contains `filter` (all when
/// `None`), each timed for about `budget` per thread count.
pub fn measure(budget: Duration, filter: Option<&str>) -> GemmReport {
    let path = Path::detect();
    let threads = rayon::current_num_threads().max(1);
    let peak_1t = peak::fma_peak_gflops(path, budget.max(Duration::from_millis(200)));
    let peak_all = peak::fma_peak_gflops_threads(path, threads, budget.max(Duration::from_millis(200)));
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    let mut rows = Vec::new();
    let mut list = shapes();
    if let Ok(extra) = std::env::var("KILN_GEMM_SHAPES") {
        // `MxKxN;MxKxN...`: measure these instead (for profiling one shape).
        list.clear();
        for t in extra.split(';') {
            let d: Vec<usize> = t.split('x').filter_map(|v| v.parse().ok()).collect();
            if d.len() == 3 {
                list.push(("extra", d[0], d[1], d[2]));
            }
        }
    }
    for (layer, m, k, n) in list {
        if filter.is_some_and(|f| !layer.contains(f)) {
            continue;
        }
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let view = View { data: &a, rs: k, cs: 1 };
        let mut general = || gemm::matmul_par(m, k, view, &b, n, &mut c, n, n);
        let gflops_1t_general = one.install(|| best_rate(&mut general, flops, budget));
        let (gflops_1t, gflops_all) = match gemm::PackedA::new(m, k, view, n.max(256)) {
            Some(packed) => {
                let panels = gemm::pack_b_panels(k, n, &b, n);
                let mut run = || gemm::matmul_panels_par(&packed, &panels, &mut c, n);
                (one.install(|| best_rate(&mut run, flops, budget)), best_rate(&mut run, flops, budget))
            }
            // No packed path on this CPU / shape: the general product is what the convolution runs.
            None => {
                let mut run = || gemm::matmul_par(m, k, view, &b, n, &mut c, n, n);
                (gflops_1t_general, best_rate(&mut run, flops, budget))
            }
        };
        rows.push(GemmRow {
            layer: layer.to_string(),
            m,
            k,
            n,
            gflops_1t,
            share_of_peak: gflops_1t / peak_1t,
            gflops_all,
            scaling: gflops_all / gflops_1t,
            gflops_1t_general,
        });
    }
    GemmReport { path: format!("{path:?}"), peak_1t, peak_all, threads, rows }
}

/// The best rate (GFLOP/s) of repeated runs over about `budget` (one warm-up run, at least three
/// timed ones).
fn best_rate(run: &mut dyn FnMut(), flops: f64, budget: Duration) -> f64 {
    run();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut n = 0;
    while n < 3 || start.elapsed() < budget {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    flops / best / 1e9
}

impl GemmReport {
    /// The section as Markdown: the peak, then one row per shape.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Dense GEMM ({} micro-kernel) against the measured FMA peak: {:.1} GFLOP/s on one core, {:.1} GFLOP/s on {} threads.\n",
            self.path, self.peak_1t, self.peak_all, self.threads
        );
        s.push_str(
            "Packed operands, as the convolution runs the product: the weights packed once, im2col writing B's \
             panels. The last column is the general product (row-major B, packed inside the call).\n\n",
        );
        let _ = writeln!(
            s,
            "| product (224x224, batch 1) | M x K x N | GFLOP/s, 1 thread | of 1-core peak | GFLOP/s, {} threads | scaling | general, 1 thread |",
            self.threads
        );
        s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} x {} x {} | {:.1} | {:.0} % | {:.1} | {:.2}x | {:.1} |",
                r.layer,
                r.m,
                r.k,
                r.n,
                r.gflops_1t,
                100.0 * r.share_of_peak,
                r.gflops_all,
                r.scaling,
                r.gflops_1t_general
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_measurement_has_consistent_ratios() {
        let r = measure(Duration::ZERO, Some("layer4"));
        assert_eq!(r.rows.len(), 1);
        let row = &r.rows[0];
        assert_eq!((row.m, row.k, row.n), (512, 4608, 49));
        assert!((row.share_of_peak - row.gflops_1t / r.peak_1t).abs() < 1e-12);
        assert!((row.scaling - row.gflops_all / row.gflops_1t).abs() < 1e-12);
        let md = r.to_markdown();
        assert!(md.contains("| resnet18 layer4 3x3 | 512 x 4608 x 49 |"), "{md}");
    }
}
