//! # kiln-benches
//!
//! kiln's benchmarks, as a library so that the criterion benches (`cargo bench -p kiln-benches`)
//! and `cargo xtask bench` time exactly the same workloads:
//!
//! - [`workload`]: the workloads (ops forward / forward+backward, model inference, training steps
//!   and a training epoch), described as serde data and runnable on any Burn device;
//! - [`torch`]: the PyTorch side, a Python process (`benches/torch/compare_torch.py`) that runs the
//!   same workloads on request;
//! - [`compare`]: the interleaved kiln / PyTorch timing loop;
//! - [`report`]: the result as JSON, a Markdown table and an SVG bar chart.

use burn::tensor::Device;

pub mod compare;
pub mod error;
pub mod report;
pub mod roofline;
pub mod torch;
pub mod workload;

pub use compare::{CompareOptions, run_compare};
pub use error::BenchError;
pub use report::{CompareReport, Row, Stats};
pub use workload::{OpKind, Spec, Workload};

/// The CPU backends every bench runs on, by name.
#[allow(deprecated)]
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    vec![("flex", Device::flex()), ("ndarray", Device::ndarray())]
}

/// The devices the criterion benches run on: the CPU backends, plus wgpu when `KILN_BENCH_WGPU=1`
/// (a machine with a GPU).
pub fn bench_devices() -> Vec<(&'static str, Device)> {
    let mut v = cpu_devices();
    if std::env::var("KILN_BENCH_WGPU").is_ok_and(|v| v == "1") {
        v.push(("wgpu", Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)));
    }
    v
}
