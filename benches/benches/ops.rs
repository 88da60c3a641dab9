//! Op benches: forward and forward+backward of the ops CNNs spend their time in.

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln_benches::cpu_devices;
use kiln_layers::*;

fn ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("ops");
    g.sample_size(10);
    for (name, device) in cpu_devices() {
        // The depthwise + pointwise pair of an inverted residual (8x144x56x56).
        let dw = ConvBnActConfig::depthwise(144, 3, 1).with_norm(false).with_act(ActKind::Identity).init(&device);
        let pw = ConvBnActConfig::pointwise(144, 24).with_norm(false).with_act(ActKind::Identity).init(&device);
        let x = Tensor::<4>::random([8, 144, 56, 56], Distribution::Default, &device);
        g.bench_function(format!("depthwise3x3+pointwise fwd 8x144x56x56 [{name}]"), |b| {
            b.iter(|| pw.forward(dw.forward(x.clone())).into_data())
        });
        let ad = device.clone().autodiff();
        let dw_ad = ConvBnActConfig::depthwise(144, 3, 1).with_norm(false).with_act(ActKind::Identity).init(&ad);
        let pw_ad = ConvBnActConfig::pointwise(144, 24).with_norm(false).with_act(ActKind::Identity).init(&ad);
        let xa = Tensor::<4>::random([8, 144, 56, 56], Distribution::Default, &ad);
        g.bench_function(format!("depthwise3x3+pointwise fwd+bwd 8x144x56x56 [{name}]"), |b| {
            b.iter(|| pw_ad.forward(dw_ad.forward(xa.clone())).sum().backward())
        });
        let shuffle = ChannelShuffleConfig::new(2).init();
        let y = Tensor::<4>::random([8, 116, 28, 28], Distribution::Default, &device);
        g.bench_function(format!("channel_shuffle 8x116x28x28 [{name}]"), |b| {
            b.iter(|| shuffle.forward(y.clone()).into_data())
        });
        let pool = MaxPoolWithIndicesConfig::new([2, 2], [2, 2]).init();
        let unpool = MaxUnpool2dConfig::new([2, 2], [2, 2]).init();
        let z = Tensor::<4>::random([8, 64, 56, 56], Distribution::Default, &device);
        g.bench_function(format!("maxpool+unpool 8x64x56x56 [{name}]"), |b| {
            b.iter(|| {
                let (p, i) = pool.forward(z.clone());
                unpool.forward(p, i, None).into_data()
            })
        });
        let up = UpsampleConfig::new(UpsampleMode::Bilinear).with_scale_factor(Some(2.0)).init();
        g.bench_function(format!("upsample bilinear x2 8x64x56x56 [{name}]"), |b| {
            b.iter(|| up.forward(z.clone()).into_data())
        });
    }
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
