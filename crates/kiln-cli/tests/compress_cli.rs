//! `cargo xtask compress` through the CLI entry point: flag errors and a small real run.

use std::process::ExitCode;

use kiln_models::Registry;

fn cli(args: &[&str]) -> ExitCode {
    let mut all = vec!["kiln"];
    all.extend_from_slice(args);
    kiln_cli::main_with(Registry::builtin(), all)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-compress-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn compress_prunes_and_quantizes_a_trained_lenet_and_rejects_bad_flags() {
    let trained = tmp("trained");
    let t = trained.to_str().unwrap();
    let code = cli(&[
        "train",
        "lenet5",
        "--epochs",
        "2",
        "--optimizer",
        "momentum",
        "--lr",
        "0.05",
        "--out",
        t,
        "--progress",
        "quiet",
    ]);
    assert_eq!(code, ExitCode::SUCCESS);

    let out = tmp("out");
    let o = out.to_str().unwrap();
    for args in [
        vec!["compress", "lenet5", "--from", "/no/such/folder", "--prune-channels", "0.5", "--out", o],
        vec!["compress", "lenet5", "--from", t, "--prune-channels", "1.5", "--out", o],
        vec!["compress", "lenet5", "--from", t, "--quantize", "int4", "--out", o],
        vec!["compress", "lenet5", "--from", t, "--quantize", "int8", "--calibration", "kl", "--out", o],
        vec!["compress", "lenet5", "--from", t, "--prune-channels", "0.5", "--importance", "random", "--out", o],
        vec!["compress", "resnet18", "--from", t, "--out", o],
        vec!["compress", "lenet5", "--from", t, "--qat-epochs", "1", "--out", o],
        vec!["compress", "lenet5", "--from", t, "--quantize", "int8", "--weight-bits", "9", "--out", o],
    ] {
        assert_eq!(cli(&args), ExitCode::from(2), "{args:?}");
    }
    assert!(!out.join("report.json").exists(), "no report written on errors");

    let code = cli(&[
        "compress",
        "lenet5",
        "--from",
        t,
        "--prune-channels",
        "0.5",
        "--finetune-epochs",
        "1",
        "--quantize",
        "int8",
        "--qat-epochs",
        "1",
        "--latency-runs",
        "5",
        "--out",
        o,
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.join("report.md").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let stages = report["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["baseline", "prune-channels", "quantize-int8", "quantize-int8-qat"]);
    let n = |i: usize, k: &str| stages[i][k].as_f64().unwrap();
    // LeNet-5 at half width: conv 3/8 and fc 60/42 channels, 416520 -> 133740 MACs.
    assert_eq!((n(0, "macs"), n(1, "macs")), (416520.0, 133740.0));
    assert!(n(1, "params") < n(0, "params") / 3.0);
    assert!(n(2, "file_bytes") * 3.0 < n(1, "file_bytes"), "{stages:?}");
    // QAT exports the same int8 file format as PTQ: the same size (up to the printed scales).
    assert!((n(3, "file_bytes") - n(2, "file_bytes")).abs() < 0.02 * n(2, "file_bytes"), "{stages:?}");
    for s in stages {
        let acc = s["accuracy"].as_f64().unwrap();
        assert!(acc > 0.5 && acc <= 1.0, "{s}");
    }
    assert!(out.join("model").join("model.kq8").is_file());
}
