//! Whole-model inference benches.

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln_benches::cpu_devices;
use kiln_models::ModelOptions;

fn models(c: &mut Criterion) {
    let mut g = c.benchmark_group("models");
    g.sample_size(10);
    for (backend, device) in cpu_devices() {
        for name in ["mobilenet_v2", "mobilenet_v3_small"] {
            let m = kiln_models::build(name, &ModelOptions::default(), &device).unwrap();
            let x = Tensor::<4>::random([1, 3, 224, 224], Distribution::Default, &device);
            g.bench_function(format!("{name} fwd 1x3x224x224 [{backend}]"), |b| {
                b.iter(|| match m.forward(x.clone()) {
                    kiln_models::Output::Logits(t) => t.into_data(),
                    kiln_models::Output::Map(t) => t.into_data(),
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
