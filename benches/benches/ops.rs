//! Op benches: forward and forward+backward of the ops CNNs spend their time in (depthwise /
//! pointwise / dilated / transposed convolution, max unpool, upsample, channel shuffle), on every
//! bench device. The workloads are `kiln_benches::workload::standard`, the same ones
//! `cargo xtask bench --compare-torch` times against PyTorch.

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_benches::{bench_devices, workload};

fn ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("ops");
    g.sample_size(10);
    for (backend, device) in bench_devices() {
        for w in workload::standard(None)
            .into_iter()
            .filter(|w| w.group == "op" && w.runs_on(backend, kiln_kernels::enabled()))
        {
            let mut run = w.prepare(&device).expect("standard op workloads build");
            g.bench_function(format!("{} [{backend}]", w.name), |b| b.iter(&mut run));
        }
    }
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
