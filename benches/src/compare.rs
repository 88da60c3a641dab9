//! The timing loop: each workload is set up on both sides, warmed up, then timed run by run,
//! alternating kiln and PyTorch, so that both see the same machine state (the other processes,
//! the CPU's clock) over the same seconds.

use std::time::Instant;

use burn::tensor::Device;

use crate::report::{CompareReport, Machine, Row, Stats, TorchInfo};
use crate::torch::TorchServer;
use crate::{BenchError, Workload};

/// How to run a comparison.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// kiln's backend name, for the report.
    pub backend: String,
    /// kiln's device.
    pub device: Device,
    /// Untimed runs per side before timing.
    pub warmup: usize,
    /// Timed runs per side (heavy workloads: half, at least one).
    pub repeats: usize,
    /// Run PyTorch too.
    pub torch: bool,
    /// The Python interpreter.
    pub python: String,
    /// Also time kiln with its kernels off (Burn's ops): the "before" column.
    pub before_after: bool,
}

/// Runs `workloads` as `options` say; `progress` receives one line per finished workload (and the
/// reason PyTorch is skipped, if it is).
pub fn run_compare(
    workloads: &[Workload],
    options: &CompareOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CompareReport, BenchError> {
    let threads = kiln_kernels::num_threads();
    let kernels = kiln_kernels::enabled();
    let (mut server, torch_skipped) = if options.torch {
        match TorchServer::start(&options.python, threads) {
            Ok(s) => (Some(s), None),
            Err(why) => {
                progress(&format!("PyTorch comparison skipped: {why}"));
                (None, Some(why))
            }
        }
    } else {
        (None, None)
    };
    let torch = server.as_ref().map(|s| TorchInfo { version: s.version.clone(), threads: s.threads });
    let mut rows = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        if !w.runs_on(&options.backend, kernels) {
            progress(&format!("{}: skipped on {} (the backend lacks this op's backward)", w.name, options.backend));
            continue;
        }
        let mut kiln = w.prepare(&options.device)?;
        let mut torch_note = None;
        if let Some(s) = server.as_mut()
            && let Err(e) = s.setup(w)
        {
            torch_note = Some(e.to_string());
        }
        let torch_ok = server.is_some() && torch_note.is_none();
        let (warmup, repeats) = if w.heavy {
            (options.warmup.min(1), (options.repeats / 2).max(1))
        } else {
            (options.warmup, options.repeats)
        };
        let mut samples_kiln = Vec::new();
        let mut samples_before = Vec::new();
        let mut samples_torch = Vec::new();
        for round in 0..warmup + repeats {
            let timed = round >= warmup;
            if options.before_after && w.runs_on(&options.backend, false) {
                kiln_kernels::set_enabled(false);
                let t = time(&mut kiln);
                kiln_kernels::set_enabled(kernels);
                if timed {
                    samples_before.push(t);
                }
            }
            let t = time(&mut kiln);
            if timed {
                samples_kiln.push(t);
            }
            if torch_ok && let Some(s) = server.as_mut() {
                match s.run_once() {
                    Ok(t) if timed => samples_torch.push(t),
                    Ok(_) => {}
                    Err(e) => {
                        torch_note = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        let kiln_stats = Stats::from_seconds(&samples_kiln).expect("at least one timed run");
        let before = Stats::from_seconds(&samples_before);
        let torch_stats = if torch_note.is_none() { Stats::from_seconds(&samples_torch) } else { None };
        let ratio = torch_stats.as_ref().map(|t| kiln_stats.median_ms / t.median_ms);
        let ratio_best = torch_stats.as_ref().map(|t| kiln_stats.min_ms / t.min_ms);
        let ratio_before = match (&before, &torch_stats) {
            (Some(b), Some(t)) => Some(b.median_ms / t.median_ms),
            _ => None,
        };
        let mut line = format!("[{}/{}] {}: kiln {:.2} ms", i + 1, workloads.len(), w.name, kiln_stats.median_ms);
        if let Some(b) = &before {
            line += &format!(" (Burn ops {:.2} ms)", b.median_ms);
        }
        if let (Some(t), Some(r)) = (&torch_stats, ratio) {
            line += &format!(", PyTorch {:.2} ms, {r:.2}x", t.median_ms);
        }
        if let Some(n) = &torch_note {
            line += &format!(", PyTorch failed: {n}");
        }
        progress(&line);
        rows.push(Row {
            name: w.name.clone(),
            group: w.group.clone(),
            kiln: kiln_stats,
            kiln_without_kernels: before,
            torch: torch_stats,
            ratio,
            ratio_best,
            ratio_without_kernels: ratio_before,
            torch_note,
        });
    }
    Ok(CompareReport {
        machine: Machine::current(),
        backend: options.backend.clone(),
        threads,
        kernels,
        torch,
        torch_skipped,
        warmup: options.warmup,
        repeats: options.repeats,
        rows,
        gemm: None,
    })
}

fn time(run: &mut crate::workload::Runner) -> f64 {
    let t = Instant::now();
    run();
    t.elapsed().as_secs_f64()
}
