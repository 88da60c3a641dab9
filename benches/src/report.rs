//! [`CompareReport`]: the result of a comparison run, as serde data, written as JSON, a Markdown
//! table and an SVG bar chart (drawn from the same data, no plotting dependency).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::BenchError;

/// Timings of one side of one workload, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Median of the samples.
    pub median_ms: f64,
    /// Fastest sample.
    pub min_ms: f64,
    /// Every timed run, in order.
    pub samples_ms: Vec<f64>,
}

impl Stats {
    /// Statistics of `samples` (seconds). `None` when empty.
    pub fn from_seconds(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let ms: Vec<f64> = samples.iter().map(|s| s * 1e3).collect();
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) };
        Some(Stats { median_ms: median, min_ms: sorted[0], samples_ms: ms })
    }
}

/// One workload's row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Workload name.
    pub name: String,
    /// `op`, `model` or `train`.
    pub group: String,
    /// kiln (with its kernels, unless the run turned them off).
    pub kiln: Stats,
    /// kiln with the kernels turned off (Burn's own ops), when measured (`--before-after`).
    pub kiln_without_kernels: Option<Stats>,
    /// PyTorch, when it ran.
    pub torch: Option<Stats>,
    /// kiln median / PyTorch median.
    pub ratio: Option<f64>,
    /// kiln fastest / PyTorch fastest: less sensitive to other processes on a shared machine.
    pub ratio_best: Option<f64>,
    /// kiln-without-kernels median / PyTorch median.
    pub ratio_without_kernels: Option<f64>,
    /// Why PyTorch has no number for this row, if it has none.
    pub torch_note: Option<String>,
}

/// The machine a report was measured on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Operating system.
    pub os: String,
    /// The CPU's vector extensions kiln's kernels can use ([`kiln_kernels::peak::cpu_extensions`]).
    pub extensions: Vec<String>,
}

impl Machine {
    /// Reads the current machine (Linux `/proc`; fields fall back to `unknown`).
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| std::env::consts::ARCH.to_string(), |s| s.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / (1024.0 * 1024.0));
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("PRETTY_NAME="))
                    .map(|l| l.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let extensions = kiln_kernels::peak::cpu_extensions().into_iter().map(String::from).collect();
        Machine { cpu, cores, memory_gib, os, extensions }
    }
}

/// PyTorch's side of a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TorchInfo {
    /// `torch.__version__`.
    pub version: String,
    /// Threads it ran with.
    pub threads: usize,
}

/// A comparison run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompareReport {
    /// Where it ran.
    pub machine: Machine,
    /// kiln's backend (`flex`, `ndarray`, `wgpu`).
    pub backend: String,
    /// Threads kiln ran with (rayon's pool).
    pub threads: usize,
    /// Whether kiln's kernels were on for the `kiln` column.
    pub kernels: bool,
    /// PyTorch, when it ran.
    pub torch: Option<TorchInfo>,
    /// Why PyTorch did not run, when it did not.
    pub torch_skipped: Option<String>,
    /// Untimed runs per side before the timed ones.
    pub warmup: usize,
    /// Timed runs per side (heavy workloads: half, at least 1).
    pub repeats: usize,
    /// Per workload.
    pub rows: Vec<Row>,
    /// The dense GEMM against the measured FMA peak, when measured.
    pub gemm: Option<crate::roofline::GemmReport>,
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_string(), |r| format!("{r:.2}x"))
}

impl CompareReport {
    /// The report as a Markdown section: the setup, then one table row per workload.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "Machine: {} ({} cores, {:.0} GiB, {}; {}). kiln backend: **{}**, {} threads, kiln kernels {}.",
            m.cpu,
            m.cores,
            m.memory_gib,
            m.os,
            if m.extensions.is_empty() { "no SIMD extensions detected".to_string() } else { m.extensions.join(" ") },
            self.backend,
            self.threads,
            if self.kernels { "on" } else { "off" }
        );
        match (&self.torch, &self.torch_skipped) {
            (Some(t), _) => {
                let _ = writeln!(
                    s,
                    "PyTorch {} with {} threads, run interleaved with kiln (one kiln run, one PyTorch run, repeated). \
                     Medians of {} timed runs after {} warm-up run(s) (heavy workloads: {}).",
                    t.version,
                    t.threads,
                    self.repeats,
                    self.warmup,
                    (self.repeats / 2).max(1)
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "PyTorch: not run ({why}).");
            }
            (None, None) => {
                let _ = writeln!(s, "PyTorch: not requested (--compare-torch).");
            }
        }
        s.push('\n');
        let before = self.rows.iter().any(|r| r.kiln_without_kernels.is_some());
        if before {
            s.push_str(
                "| workload | kiln, Burn ops (ms) | kiln (ms) | PyTorch (ms) | before / PyTorch | kiln / PyTorch | best / best |\n",
            );
            s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        } else {
            s.push_str("| workload | kiln (ms) | PyTorch (ms) | kiln / PyTorch | best / best |\n");
            s.push_str("|---|---:|---:|---:|---:|\n");
        }
        for r in &self.rows {
            let torch = r.torch.as_ref().map_or_else(|| "–".to_string(), |t| ms(t.median_ms));
            if before {
                let b = r.kiln_without_kernels.as_ref().map_or_else(|| "–".to_string(), |t| ms(t.median_ms));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    b,
                    ms(r.kiln.median_ms),
                    torch,
                    ratio(r.ratio_without_kernels),
                    ratio(r.ratio),
                    ratio(r.ratio_best)
                );
            } else {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    r.name,
                    ms(r.kiln.median_ms),
                    torch,
                    ratio(r.ratio),
                    ratio(r.ratio_best)
                );
            }
        }
        let notes: Vec<_> = self.rows.iter().filter_map(|r| r.torch_note.as_ref().map(|n| (&r.name, n))).collect();
        if !notes.is_empty() {
            s.push('\n');
            for (name, n) in notes {
                let _ = writeln!(s, "- {name}: PyTorch not run ({n})");
            }
        }
        if let Some(g) = &self.gemm {
            s.push('\n');
            s.push_str(&g.to_markdown());
        }
        s
    }

    /// A horizontal bar chart as SVG text: kiln / PyTorch per workload on a log scale with a line
    /// at 1x (and the before-kernels ratio as a grey bar when measured); kiln's milliseconds on a
    /// log scale when PyTorch did not run.
    pub fn to_svg(&self) -> String {
        let with_ratio = self.rows.iter().any(|r| r.ratio.is_some());
        let values: Vec<(Option<f64>, Option<f64>)> = self
            .rows
            .iter()
            .map(|r| {
                if with_ratio {
                    (r.ratio, r.ratio_without_kernels)
                } else {
                    (Some(r.kiln.median_ms), r.kiln_without_kernels.as_ref().map(|s| s.median_ms))
                }
            })
            .collect();
        let all: Vec<f64> = values.iter().flat_map(|(a, b)| [*a, *b]).flatten().filter(|v| *v > 0.0).collect();
        let (mut lo, mut hi) = if with_ratio { (0.5f64, 2.0f64) } else { (1.0f64, 10.0f64) };
        for v in &all {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        let (l2lo, l2hi) = (lo.log2().floor(), hi.log2().ceil());
        let label_w = 330.0;
        let plot_w = 520.0;
        let row_h = 22.0;
        let top = 60.0;
        let height = top + row_h * self.rows.len() as f64 + 50.0;
        let width = label_w + plot_w + 90.0;
        let x_of = |v: f64| label_w + (v.max(1e-9).log2() - l2lo) / (l2hi - l2lo).max(1.0) * plot_w;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let title = if with_ratio {
            format!(
                "kiln ({}) / PyTorch {}, median time ratio (lower is better; log scale)",
                self.backend,
                self.torch.as_ref().map_or("", |t| t.version.as_str())
            )
        } else {
            format!("kiln ({}) median time, ms (log scale)", self.backend)
        };
        let _ = writeln!(s, r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#, esc(&title));
        let _ = writeln!(
            s,
            r##"<text x="10" y="38" fill="#555">{}, {} threads</text>"##,
            esc(&self.machine.cpu),
            self.threads
        );
        // Grid lines at powers of two.
        let mut e = l2lo;
        while e <= l2hi + 1e-9 {
            let v = 2f64.powf(e);
            let x = x_of(v);
            let stroke = if with_ratio && e == 0.0 { "#c00" } else { "#ddd" };
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{stroke}"/>"#,
                top - 6.0,
                top + row_h * self.rows.len() as f64
            );
            let label = if with_ratio { format!("{}x", trim(v)) } else { trim(v) };
            let _ = writeln!(
                s,
                r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{label}</text>"##,
                top + row_h * self.rows.len() as f64 + 16.0
            );
            e += 1.0;
        }
        for (i, (r, (v, before))) in self.rows.iter().zip(&values).enumerate() {
            let y = top + row_h * i as f64;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                label_w - 8.0,
                y + 14.0,
                esc(&r.name)
            );
            let x0 = x_of(2f64.powf(l2lo));
            if let Some(b) = before {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="16" fill="#ccc"/>"##,
                    y + 2.0,
                    (x_of(*b) - x0).max(1.0)
                );
            }
            if let Some(v) = v {
                let color = if !with_ratio || *v <= 1.5 {
                    "#3a7"
                } else if *v <= 3.0 {
                    "#e90"
                } else {
                    "#c33"
                };
                let _ = writeln!(
                    s,
                    r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="10" fill="{color}"/>"#,
                    y + 5.0,
                    (x_of(*v) - x0).max(1.0)
                );
                let text = if with_ratio { format!("{v:.2}x") } else { format!("{} ms", ms(*v)) };
                let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{text}</text>"#, x_of(*v) + 4.0, y + 14.0);
            }
        }
        if values.iter().any(|(_, b)| b.is_some()) {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="12" height="10" fill="#ccc"/><text x="{:.1}" y="{:.1}">before kiln kernels (Burn ops)</text>"##,
                label_w,
                height - 20.0,
                label_w + 16.0,
                height - 11.0
            );
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes `compare.json`, `compare.md` and `compare.svg` into `dir` (created if missing), each
    /// through a temporary file renamed into place. Returns the three paths.
    pub fn write(&self, dir: &Path) -> Result<[PathBuf; 3], BenchError> {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io { path: dir.to_path_buf(), source })?;
        let json = serde_json::to_string_pretty(self).expect("the report serialises");
        let files = [
            (dir.join("compare.json"), json + "\n"),
            (dir.join("compare.md"), self.to_markdown()),
            (dir.join("compare.svg"), self.to_svg()),
        ];
        for (path, text) in &files {
            write_atomic(path, text)?;
        }
        Ok(files.map(|(p, _)| p))
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), BenchError> {
    kiln_data::write_atomic(path, text.as_bytes()).map_err(|source| BenchError::Io { path: path.to_path_buf(), source })
}

fn trim(v: f64) -> String {
    if v >= 1.0 { format!("{v:.0}") } else { format!("{v}") }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(torch: bool) -> CompareReport {
        let row = |name: &str, k: f64, t: f64| Row {
            name: name.into(),
            group: "op".into(),
            kiln: Stats::from_seconds(&[k, k * 1.1, k * 0.9]).unwrap(),
            kiln_without_kernels: None,
            torch: torch.then(|| Stats::from_seconds(&[t]).unwrap()),
            ratio: torch.then_some(k / t),
            ratio_best: torch.then_some(0.9 * k / t),
            ratio_without_kernels: None,
            torch_note: None,
        };
        CompareReport {
            machine: Machine {
                cpu: "cpu".into(),
                cores: 2,
                memory_gib: 24.0,
                os: "linux".into(),
                extensions: vec!["avx2".into(), "fma".into()],
            },
            backend: "flex".into(),
            threads: 2,
            kernels: true,
            torch: torch.then(|| TorchInfo { version: "2.15".into(), threads: 2 }),
            torch_skipped: (!torch).then(|| "no torch".into()),
            warmup: 1,
            repeats: 3,
            rows: vec![row("a->b", 0.02, 0.01), row("c", 0.003, 0.004)],
            gemm: None,
        }
    }

    #[test]
    fn stats_median_and_min() {
        let s = Stats::from_seconds(&[0.003, 0.001, 0.002, 0.010]).unwrap();
        assert!((s.median_ms - 2.5).abs() < 1e-9);
        assert!((s.min_ms - 1.0).abs() < 1e-9);
        assert!(Stats::from_seconds(&[]).is_none());
    }

    #[test]
    fn markdown_and_svg_carry_the_numbers() {
        let r = report(true);
        let md = r.to_markdown();
        assert!(md.contains("| a->b | 20.0 | 10.0 | 2.00x | 1.80x |"), "{md}");
        assert!(md.contains("| c | 3.00 | 4.00 | 0.75x |"), "{md}");
        assert!(md.contains("Machine: cpu (2 cores, 24 GiB, linux; avx2 fma)."), "{md}");
        let svg = r.to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a-&gt;b") && svg.contains("2.00x") && svg.contains("0.75x"));
        let md = report(false).to_markdown();
        assert!(md.contains("PyTorch: not run (no torch)") && md.contains("| a->b | 20.0 | – | – | – |"), "{md}");
        assert!(report(false).to_svg().contains("20.0 ms"));
    }
}
