//! The plugin's `blurnet` goes through the same commands as a built-in model — train, compress
//! (distill, prune, fold, quantize), run, analyze — driven through the example's own binary,
//! which is kiln's CLI over the built-in registry plus this crate's `register`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln-custom-op")).args(args).output().unwrap()
}

fn ok(args: &[&str]) {
    let out = kiln(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-custom-op-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn plugin_model_trains_compresses_and_runs_through_the_cli() {
    // Train: MNIST digits (1 channel, 28x28) on blurnet, its first convolution built for 1 channel.
    let trained = tmp("trained");
    // Two epochs on 4,096 digits: ~73 % test accuracy (one epoch on 1,024 stays near chance, and
    // the compressed stages below must be measurably better than chance).
    ok(&["train", "blurnet", "--epochs", "2", "--train-limit", "4096", "--progress", "quiet", "--out", s(&trained)]);
    for f in ["metrics.json", "model.json", "model.bpk"] {
        assert!(trained.join(f).is_file(), "{f}");
    }
    // --dropout is refused: blurnet has no dropout layer (its hooks say so).
    let refused = tmp("refused");
    let out = kiln(&["train", "blurnet", "--dropout", "0.2", "--out", s(&refused)]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!refused.join("model.bpk").exists());

    // Compress: distillation from the trained model (with a FitNets hint on its feature map),
    // channel pruning, BN folding, int8 weights. (int8 activations run kiln's graph interpreter,
    // which has rules for the built-in ops only, not for `BlurPool2d`.)
    let compressed = tmp("compressed");
    ok(&[
        "compress",
        "blurnet",
        "--from",
        s(&trained),
        "--distill-from",
        s(&trained),
        "--hint",
        "0.5",
        "--prune-channels",
        "0.5",
        "--fold-bn",
        "--quantize",
        "int8",
        "--weights-only",
        "--finetune-epochs",
        "1",
        "--batch-size",
        "128",
        "--latency-runs",
        "2",
        "--out",
        s(&compressed),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(compressed.join("report.json")).unwrap()).unwrap();
    let stages = report["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["baseline", "distill", "prune-channels", "fold-bn", "quantize-int8"]);
    let macs = |i: usize| stages[i]["macs"].as_f64().unwrap() as u64;
    // At 1x28x28: convs 28*28*16*9 + 14*14*32*144 + 7*7*64*288, blur-pools 14*14*16*9 and
    // 7*7*32*9, fc 64*10.
    let blurs = 14 * 14 * 16 * 9 + 7 * 7 * 32 * 9;
    assert_eq!(macs(0), 28 * 28 * 16 * 9 + 14 * 14 * 32 * 144 + 7 * 7 * 64 * 288 + blurs + 640);
    // Pruning halves the last convolution (64 -> 32 filters) and the classifier's inputs; the
    // blur-pools are ops the pruner cannot follow channel by channel, so the first two
    // convolutions keep their filters.
    assert_eq!(macs(2), 28 * 28 * 16 * 9 + 14 * 14 * 32 * 144 + 7 * 7 * 32 * 288 + blurs + 320);
    assert_eq!(macs(3), macs(2), "folding the norms changes no MACs");
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "fold-bn: 3 batch norms folded into their convolutions")
    );
    for s in stages {
        let acc = s["accuracy"].as_f64().unwrap();
        assert!(acc > 0.2 && acc <= 1.0, "{s}");
    }
    assert!(compressed.join("model").join("model.kq8").is_file());

    // Run the trained model on raw images of the training data's shape, and analyze it.
    let input = trained.join("in.npy");
    let pixels: Vec<f32> = (0..2 * 28 * 28).map(|i| (i % 256) as f32 / 255.0).collect();
    kiln_models::npy::write(&input, &kiln_models::npy::NpyArray { shape: vec![2, 1, 28, 28], data: pixels }).unwrap();
    let output = trained.join("out.npy");
    ok(&["run", "blurnet", "--weights", s(&trained), "--input", s(&input), "--output", s(&output)]);
    assert_eq!(kiln_models::npy::read(&output).unwrap().shape, vec![2, 10]);
    let out = kiln(&["analyze", "--from", s(&trained), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["macs"].as_u64().unwrap(), macs(0));
    for d in [trained, refused, compressed] {
        let _ = std::fs::remove_dir_all(d);
    }
}
