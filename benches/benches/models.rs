//! Whole-model benches: inference of mobilenet_v2, resnet18 and shufflenet_v2_x1_0 at batch 1
//! and 8 @224, and training steps (lenet5 and mobilenet_v2 width 0.5 at batch 32), on every bench
//! device. Same workloads as `cargo xtask bench`.

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_benches::{bench_devices, workload};

fn models(c: &mut Criterion) {
    let mut g = c.benchmark_group("models");
    g.sample_size(10);
    for (backend, device) in bench_devices() {
        for w in workload::standard(None).into_iter().filter(|w| w.group != "op") {
            let mut run = w.prepare(&device).expect("standard model workloads build");
            g.bench_function(format!("{} [{backend}]", w.name), |b| b.iter(&mut run));
        }
    }
    g.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
