//! BN folding and structured pruning on the zoo's residual / depthwise nets: ResNet-18 and
//! MobileNetV2 at 224 (random weights), and a small MobileNetV2 trained on mnist-5k.

mod common;

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use common::*;
use kiln_compress::graph::{Graph, param_values, replace_params};
use kiln_compress::io::{SavedPlan, load_compressed, save_compressed};
use kiln_compress::report::{Measure, measure};
use kiln_compress::structured::{ChannelPruneConfig, Importance, prune_channels};
use kiln_compress::{Compressible, FinetuneConfig, finetune, latency_ms};
use kiln_models::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use kiln_models::resnet::{ResNet, ResNetConfig};

// Burn keeps one random generator per process: every test of this binary runs under kiln's
// seeding lock (`kiln_layers::seeded_with`), so the seeded MNIST run gets the weights its seed
// gives whatever runs beside it.

/// Random BN statistics and affine parameters, so that folding has something to fold.
fn randomize_bn<M: Compressible>(m: M, input: &[usize]) -> M {
    let g = Graph::of(&m, input).unwrap();
    let vals = param_values(&m);
    let mut rng = kiln_data::Rng::new(5);
    let mut new = HashMap::new();
    for op in g.ops.iter().filter(|o| o.op == "BatchNorm") {
        for (suffix, id) in &op.tensors {
            let p = &vals[id];
            let v = p
                .values
                .iter()
                .map(|_| match suffix.as_str() {
                    "weight" => rng.uniform(0.5, 1.5) as f32,
                    "running_var" => rng.uniform(0.5, 2.0) as f32,
                    _ => rng.uniform(-0.5, 0.5) as f32,
                })
                .collect();
            new.insert(*id, (p.shape.clone(), v));
        }
    }
    replace_params(m, &new)
}

fn rel_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    let scale = a.clone().abs().max().into_scalar::<f32>().max(1.0);
    (a - b).abs().max().into_scalar::<f32>() / scale
}

#[test]
fn bn_folding_keeps_outputs_resnet18_and_mobilenet_v2() {
    kiln_layers::seeded_with(&Device::flex(), 0, || {
        let device = Device::flex();
        let input = [2, 3, 64, 64];
        let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device);

        let r = randomize_bn(ResNetConfig::resnet18().with_num_classes(10).init(&device), &input);
        let before = r.logits(x.clone());
        let mut folded = r.clone();
        assert_eq!(folded.fold_bn(), 20, "ResNet-18 has 20 batch norms");
        let after = folded.logits(x.clone());
        let d = rel_diff(before, after.clone());
        assert!(d <= 1e-5, "resnet18 relative difference {d}");
        // The graph interpreter (used for activation quantization) reproduces the folded model.
        let g = Graph::of(&folded, &input).unwrap();
        let params = param_values(&folded);
        kiln_compress::interpret::check(&g, &params).unwrap();
        let y = kiln_compress::interpret::run(&g, &params, x.clone(), &mut |_, t| t, &mut |_, t| t).unwrap();
        assert!(rel_diff(after, y) <= 1e-5);
        // Unfolded batch norms are refused by the interpreter with a message, not run wrongly.
        let g = Graph::of(&r, &input).unwrap();
        let err = kiln_compress::interpret::check(&g, &param_values(&r)).unwrap_err().to_string();
        assert!(err.contains("BatchNorm"), "{err}");

        let m = randomize_bn(MobileNetV2Config::new().with_num_classes(10).init(&device), &input);
        let before = m.logits(x.clone());
        let mut folded = m.clone();
        assert_eq!(folded.fold_bn(), 52, "MobileNetV2 has 52 batch norms");
        let after = folded.logits(x.clone());
        let d = rel_diff(before, after.clone());
        assert!(d <= 1e-5, "mobilenet_v2 relative difference {d}");
        // The norms are gone from the structure: fewer ops, and the analyzer counts no BN params.
        let g = Graph::of(&folded, &input).unwrap();
        assert_eq!(g.ops.iter().filter(|o| o.op == "BatchNorm").count(), 0);
        let y =
            kiln_compress::interpret::run(&g, &param_values(&folded), x.clone(), &mut |_, t| t, &mut |_, t| t).unwrap();
        assert!(rel_diff(after.clone(), y) <= 1e-5);
        // A folded model saves and reloads (the fresh model is folded before loading).
        let dir = std::env::temp_dir().join(format!("kiln-compress-fold-{}", std::process::id()));
        let plan = SavedPlan { bn_folded: true, ..SavedPlan::new("mobilenet_v2", vec![3, 64, 64], 10, 1.0) };
        save_compressed(&folded, &plan, &dir).unwrap();
        let re = load_compressed(MobileNetV2Config::new().with_num_classes(10).init(&device), &dir).unwrap();
        assert_eq!((re.logits(x) - after).abs().max().into_scalar::<f32>(), 0.0);
    });
}

fn prune_at_224<M: Compressible>(name: &str, m: M) {
    let input = [1, 3, 224, 224];
    let device = Device::flex();
    let before = kiln_analyze::analyze(&m, name, &input).unwrap().total;
    let t0 = latency_ms(&m, input, 1, 5, &device);
    let cfg = ChannelPruneConfig { ratio: 0.5, importance: Importance::L2, round_to: 8 };
    let (p, plan) = prune_channels(m, &input, &cfg).unwrap();
    let after = kiln_analyze::analyze(&p, name, &input).unwrap().total;
    let t1 = latency_ms(&p, input, 1, 5, &device);
    let y = p.logits(Tensor::random(input, Distribution::Normal(0.0, 1.0), &device));
    assert_eq!(y.dims(), [1, 1000]);
    eprintln!(
        "{name}@224 50 %: {} groups pruned, {} left whole; params {} -> {}, MACs {} -> {} ({:.2}x); latency {t0:.1} -> {t1:.1} ms",
        plan.groups.len(),
        plan.skipped,
        before.params,
        after.params,
        before.macs,
        after.macs,
        before.macs as f64 / after.macs as f64
    );
    assert!(plan.groups.iter().all(|g| g.after % 8 == 0 && g.after * 2 >= g.before), "{plan:?}");
    assert!(before.macs as f64 >= 2.5 * after.macs as f64, "{name}: MACs {} -> {}", before.macs, after.macs);
    assert!(before.params as f64 >= 2.5 * after.params as f64, "{name}: params {} -> {}", before.params, after.params);
}

#[test]
fn structured_pruning_resnet18_at_224_runs_and_cuts_macs() {
    kiln_layers::seeded_with(&Device::flex(), 0, || {
        prune_at_224("resnet18", ResNetConfig::resnet18().init(&Device::flex()));
    });
}

#[test]
fn structured_pruning_mobilenet_v2_at_224_prunes_through_depthwise_convs() {
    kiln_layers::seeded_with(&Device::flex(), 0, || {
        let m = MobileNetV2Config::new().init(&Device::flex());
        let input = [1, 3, 224, 224];
        let (p, _) = prune_channels(m.clone(), &input, &ChannelPruneConfig::default()).unwrap();
        // Expanded channels of block 2 (16 -> 96) are halved, and its depthwise conv follows.
        assert_eq!(p.blocks[1].dw.conv.weight.dims(), [48, 1, 3, 3]);
        assert_eq!(p.blocks[1].dw.conv.groups, 48);
        prune_at_224("mobilenet_v2", m);
    });
}

#[test]
fn channel_pruning_small_mobilenet_v2_on_mnist_with_finetune() {
    kiln_layers::seeded_with(&train_device(), 3, || {
        let (train, test) = data();
        let device = train_device();
        let cfg = MobileNetV2Config::new().with_num_classes(10).with_in_channels(1).with_width_mult(0.5);
        let m = cfg.init(&device);
        let ft = FinetuneConfig { epochs: 3, batch: 64, lr: 2e-3, seed: 3 };
        let (m, _) = finetune::<_, MobileNetV2>(m, train, &ft, None, &device);
        let plan = SavedPlan::new("mobilenet_v2", vec![1, 28, 28], 10, 0.5);
        let dir = std::env::temp_dir().join(format!("kiln-compress-mnv2-{}", std::process::id()));
        let base_bytes = save_compressed(&m, &plan, &dir.join("base")).unwrap();
        let meas = Measure { test, input: [1, 28, 28], runs: 50 };
        let before = measure("baseline", &m.valid(), base_bytes, &meas, &Device::flex()).unwrap();
        let (p, _) = prune_channels(
            m,
            &[1, 1, 28, 28],
            &ChannelPruneConfig { ratio: 0.5, importance: Importance::BnScale, round_to: 1 },
        )
        .unwrap();
        // The pruned net starts below the base; it gets a longer fine-tune than the base's training.
        let ft = FinetuneConfig { epochs: 5, batch: 64, lr: 2e-3, seed: 4 };
        let (p, _) = finetune::<_, MobileNetV2>(p, train, &ft, None, &device);
        let bytes = save_compressed(&p, &plan, &dir.join("pruned")).unwrap();
        let after = measure("prune-channels-50", &p.valid(), bytes, &meas, &Device::flex()).unwrap();
        eprintln!("{}\n{}", serde_json::to_string(&before).unwrap(), serde_json::to_string(&after).unwrap());
        assert!(before.accuracy - after.accuracy <= 0.01, "accuracy {} -> {}", before.accuracy, after.accuracy);
        assert!(before.macs as f64 >= 1.8 * after.macs as f64, "MACs {} -> {}", before.macs, after.macs);
        assert_latency_measured(&before, &after);
        let re = load_compressed(cfg.init(&device), &dir.join("pruned")).unwrap();
        let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &Device::flex());
        assert_eq!((p.valid().logits(x.clone()) - re.valid().logits(x)).abs().max().into_scalar::<f32>(), 0.0);
        let _: Option<ResNet> = None;
    });
}
