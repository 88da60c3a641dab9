//! The "done when" items on a trained LeNet-5 (mnist-5k, flex CPU): 80 % unstructured
//! pruning, int8 PTQ, 50 % channel pruning, distillation. One LeNet-5 is trained per run of this
//! file (see `common`). Run with `--nocapture` to see the measured rows.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use common::*;
use kiln_compress::io::{load_compressed, save_compressed};
use kiln_compress::quantize::{Calibration, Granularity, QuantConfig, load_kq8, quantize};
use kiln_compress::report::{Measure, measure};
use kiln_compress::structured::{ChannelPruneConfig, Importance, prune_channels};
use kiln_compress::unstructured::{Scope, cubic_schedule, masked_params, prune_magnitude, weight_sparsity};
use kiln_compress::{Compressible, Distill, FinetuneConfig, accuracy, finetune};
use kiln_models::lenet::{LeNet5, LeNet5Config};

const INPUT: [usize; 4] = [1, 1, 28, 28];

fn measure_row(stage: &str, m: &LeNet5, bytes: u64) -> kiln_compress::StageRow {
    let device = Device::flex();
    let test = &data().1;
    let row = measure(stage, &m.valid(), bytes, &Measure { test, input: [1, 28, 28], runs: 200 }, &device).unwrap();
    eprintln!("{}", serde_json::to_string(&row).unwrap());
    row
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kiln-compress-{name}-{}", std::process::id()))
}

#[test]
fn unstructured_80_percent_with_finetune_keeps_accuracy_and_masks_persist() {
    let base = trained_lenet();
    let base_bytes = save_compressed(&base, &lenet_plan(), &dir("u-base")).unwrap();
    let before = measure_row("baseline", &base, base_bytes);
    assert!(before.accuracy > 0.95, "trained LeNet-5 accuracy {}", before.accuracy);

    // Iterative global magnitude pruning to 80 %: 3 steps, one fine-tuning epoch after each.
    let device = train_device();
    let mut model = base;
    let steps = cubic_schedule(0.8, 3);
    assert!((steps[2] - 0.8).abs() < 1e-12 && steps[0] < steps[1]);
    for (i, s) in steps.iter().enumerate() {
        model = prune_magnitude(model, &INPUT, *s, Scope::Global).unwrap();
        let cfg = FinetuneConfig { epochs: 1, batch: 64, lr: 5e-4, seed: 10 + i as u64 };
        model = finetune::<_, LeNet5>(model, &data().0, &cfg, None, &device).0;
        // Pruned weights stay zero through fine-tuning (the mask is a reparameterization).
        let sp = weight_sparsity(&model, &INPUT).unwrap();
        assert!((sp - s).abs() < 1e-3, "step {i}: sparsity {sp} vs target {s}");
    }
    assert_eq!(masked_params(&model).len(), 5, "conv1, conv2, fc1, fc2, fc3 carry masks");

    // Masks survive saving and loading: same outputs, still masked.
    let d = dir("u-masked");
    save_compressed(&model, &lenet_plan(), &d).unwrap();
    let reloaded = load_compressed(LeNet5Config::new().init(&device), &d).unwrap();
    assert_eq!(masked_params(&reloaded).len(), 5);
    let x = Tensor::<4>::random([8, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &Device::flex());
    let (a, b) = (model.valid().logits(x.clone()), reloaded.valid().logits(x.clone()));
    assert_eq!(max_abs_diff(a.clone(), b), 0.0);

    // Materialize: plain weights with the zeros baked in, same outputs.
    let dense = kiln_compress::unstructured::materialize(model.clone());
    assert!(masked_params(&dense).is_empty());
    assert!(max_abs_diff(a, dense.valid().logits(x)) < 1e-6);
    let dense_bytes = save_compressed(&dense, &lenet_plan(), &dir("u-dense")).unwrap();
    let after = measure_row("prune-unstructured-80", &dense, dense_bytes);

    assert!(before.accuracy - after.accuracy <= 0.01, "accuracy {} -> {}", before.accuracy, after.accuracy);
    // 80 % of the 61470 weights are zero; the 236 biases are not pruned (as torch's
    // global_unstructured on the weights): 12294 + 236 = 12530 nonzero.
    let weights = 61470;
    let biases = before.params - weights;
    assert_eq!(after.nonzero_params, (weights as f64 * 0.2).round() as u64 + biases, "nonzero params");
    assert_eq!(after.params, before.params);
}

#[test]
fn int8_ptq_per_channel_keeps_accuracy_and_file_is_4x_smaller() {
    let model = trained_lenet().valid();
    let device = Device::flex();
    let (train, test) = data();
    let base_acc = accuracy(&model, test, 250, &device);
    let base_bytes = save_compressed(&model, &lenet_plan(), &dir("q-base")).unwrap();
    let mut per_channel_db = 0.0;
    for cal in [Calibration::MinMax, Calibration::Percentile, Calibration::Mse] {
        let cfg = QuantConfig {
            granularity: Granularity::PerChannel,
            calibration: cal,
            activations: true,
            calibration_images: 256,
        };
        let q = quantize(&model, [1, 28, 28], train, &cfg, &device).unwrap();
        // The interpreter with no quantization reproduces the model.
        let acc = q.accuracy(test, &device).unwrap();
        let path = dir("q").with_extension(format!("{cal:?}.kq8"));
        let bytes = q.save(&path).unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        eprintln!(
            "int8 {cal:?}: accuracy {base_acc:.4} -> {acc:.4}, file {base_bytes} -> {bytes} ({:.2}x), SQNR {:?}",
            base_bytes as f64 / bytes as f64,
            q.sqnr
                .iter()
                .map(|s| (
                    s.layer.as_str(),
                    (s.weight_db * 10.0).round() / 10.0,
                    (s.activation_db * 10.0).round() / 10.0
                ))
                .collect::<Vec<_>>()
        );
        assert!(base_acc - acc <= 0.01, "{cal:?}: accuracy {base_acc} -> {acc}");
        assert!(base_bytes as f64 >= 3.5 * bytes as f64, "{cal:?}: file {base_bytes} -> {bytes}");
        assert_eq!(q.sqnr.len(), 5);
        assert!(q.sqnr.iter().all(|s| s.weight_db > 30.0 && s.activation_db > 20.0), "{:?}", q.sqnr);
        if cal == Calibration::MinMax {
            per_channel_db = q.sqnr.iter().map(|s| s.weight_db).sum::<f64>();
        }
        // The .kq8 file reloads to the same dequantized weights.
        let (re, acts) = load_kq8(LeNet5Config::new().init(&device), &path).unwrap();
        assert_eq!(acts.len(), 5);
        let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let direct = q.dequantized_model(model.clone()).logits(x.clone());
        assert!(max_abs_diff(direct, re.logits(x)) < 1e-5);
    }
    // Per-channel scales quantize weights at least as well as one scale per tensor.
    let cfg = QuantConfig {
        granularity: Granularity::PerTensor,
        calibration: Calibration::MinMax,
        activations: false,
        calibration_images: 0,
    };
    let q = quantize(&model, [1, 28, 28], train, &cfg, &device).unwrap();
    let per_tensor_db = q.sqnr.iter().map(|s| s.weight_db).sum::<f64>();
    assert!(per_channel_db >= per_tensor_db, "per-channel {per_channel_db} dB vs per-tensor {per_tensor_db} dB");
}

#[test]
fn channel_pruning_50_percent_lenet_is_smaller_faster_and_reloads() {
    let base = trained_lenet();
    let base_bytes = save_compressed(&base, &lenet_plan(), &dir("s-base")).unwrap();
    let before = measure_row("baseline", &base, base_bytes);
    let cfg = ChannelPruneConfig { ratio: 0.5, importance: Importance::L1, round_to: 1 };
    let (pruned, plan) = prune_channels(base, &INPUT, &cfg).unwrap();
    // conv1 6->3, conv2 16->8, fc1 120->60, fc2 84->42; the input and the 10 logits stay whole.
    let kept: Vec<(usize, usize)> = plan.groups.iter().map(|g| (g.before, g.after)).collect();
    assert_eq!(kept, vec![(6, 3), (16, 8), (120, 60), (84, 42)], "{plan:?}");
    assert_eq!(pruned.conv2.weight.dims(), [8, 3, 5, 5]);
    assert_eq!(pruned.fc1.weight.dims(), [200, 60]);
    let device = train_device();
    let ft = FinetuneConfig { epochs: 3, batch: 64, lr: 1e-3, seed: 7 };
    let (pruned, _) = finetune::<_, LeNet5>(pruned, &data().0, &ft, None, &device);
    let d = dir("s-pruned");
    let bytes = save_compressed(&pruned, &lenet_plan(), &d).unwrap();
    let after = measure_row("prune-channels-50", &pruned, bytes);
    assert!(before.accuracy - after.accuracy <= 0.01, "accuracy {} -> {}", before.accuracy, after.accuracy);
    assert!(before.macs as f64 >= 1.8 * after.macs as f64, "MACs {} -> {}", before.macs, after.macs);
    assert!(after.latency_ms < before.latency_ms, "latency {} -> {} ms", before.latency_ms, after.latency_ms);
    assert!(after.file_bytes < before.file_bytes);
    // Reload: a fresh LeNet-5 reshaped by the saved plan, then the weights: identical outputs.
    let reloaded = load_compressed(LeNet5Config::new().init(&device), &d).unwrap();
    let x = Tensor::<4>::random([8, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &Device::flex());
    assert_eq!(max_abs_diff(pruned.valid().logits(x.clone()), reloaded.valid().logits(x)), 0.0);
}

/// A half-width LeNet-5 (conv 3/8, fc 60/42) with fresh random weights: the student.
fn small_lenet(seed: u64, device: &Device) -> LeNet5 {
    device.seed(seed);
    let m = LeNet5Config::new().init(device);
    let cfg = ChannelPruneConfig { ratio: 0.5, importance: Importance::L1, round_to: 1 };
    prune_channels(m, &INPUT, &cfg).unwrap().0
}

/// Distillation trains the student from the teacher: with `alpha = 1` it is exactly training on
/// the labels, with `alpha = 0` (no labels at all) the student learns from the teacher's soft
/// targets alone to nearly the same accuracy. Whether the mix (`alpha = 0.5`, `T = 4`) beats
/// training alone is printed (mean over 3 seeds), not asserted: on mnist-5k with a half-width
/// LeNet-5 the two are within noise of each other.
#[test]
fn distillation_teaches_the_student_and_reports_kd_vs_alone() {
    let teacher = trained_lenet();
    let device = train_device();
    let test = &data().1;
    let flex = Device::flex();
    let teacher_acc = accuracy(&teacher.valid(), test, 250, &flex);
    let train = data().0.subset(&(0..1000).collect::<Vec<_>>()).unwrap();
    let distill = |alpha: f64| Distill { teacher: teacher.valid(), alpha, temperature: 4.0, hint_weight: 0.0 };
    let (mut alone, mut kd) = (vec![], vec![]);
    for seed in [1u64, 2, 3] {
        let cfg = FinetuneConfig { epochs: 8, batch: 32, lr: 2e-3, seed };
        let (s, _) = finetune::<_, LeNet5>(small_lenet(seed, &device), &train, &cfg, None, &device);
        alone.push(accuracy(&s.valid(), test, 250, &flex));
        let (s, _) = finetune(small_lenet(seed, &device), &train, &cfg, Some(&distill(0.5)), &device);
        kd.push(accuracy(&s.valid(), test, 250, &flex));
        if seed == 1 {
            let (s, _) = finetune(small_lenet(seed, &device), &train, &cfg, Some(&distill(1.0)), &device);
            let labels_only = accuracy(&s.valid(), test, 250, &flex);
            assert_eq!(labels_only, alone[0], "alpha = 1 is plain cross-entropy training");
            let (s, _) = finetune(small_lenet(seed, &device), &train, &cfg, Some(&distill(0.0)), &device);
            let teacher_only = accuracy(&s.valid(), test, 250, &flex);
            eprintln!("seed 1: labels only {labels_only:.4}, teacher only (alpha 0) {teacher_only:.4}");
            assert!(teacher_only > 0.8 && alone[0] - teacher_only < 0.03, "teacher-only student {teacher_only}");
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "teacher {teacher_acc:.4}; student alone {alone:?} mean {:.4}; distilled (alpha 0.5, T 4) {kd:?} mean {:.4}",
        mean(&alone),
        mean(&kd)
    );
    assert!(alone.iter().all(|a| *a > 0.8), "students alone {alone:?}");
    assert!(kd.iter().all(|a| *a > 0.8), "distilled students {kd:?}");
}

#[test]
fn distillation_loss_matches_pytorch() {
    let device = Device::flex();
    let s = Tensor::<2>::from_data([[1.0f32, 2.0, 0.5], [0.1, -1.0, 2.0]], &device);
    let t = Tensor::<2>::from_data([[2.0f32, 1.0, 0.0], [0.5, 0.2, 1.5]], &device);
    let y = Tensor::<1, burn::tensor::Int>::from_data([1i64, 2], &device);
    // torch: 0.3*F.cross_entropy(s,y) + 0.7*9*F.kl_div(F.log_softmax(s/3,1), F.softmax(t/3,1), reduction="batchmean")
    let v = kiln_compress::distillation_loss(s.clone(), t.clone(), y.clone(), 0.3, 3.0).into_scalar::<f32>();
    assert!((v - 0.322_471_7).abs() < 1e-5, "{v}");
    // alpha = 1 is plain cross-entropy (torch: 0.3230767).
    let ce = kiln_compress::distillation_loss(s, t, y, 1.0, 3.0).into_scalar::<f32>();
    assert!((ce - 0.323_076_7).abs() < 1e-5, "{ce}");
}
