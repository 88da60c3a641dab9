//! The `cargo xtask` binary itself: exit codes, one-line errors, output formats (cargo builds
//! the binary for these tests, so they never run against a stale one).

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().unwrap()
}

#[test]
fn xtask_binary_exit_codes_and_formats() {
    let out = run(&["analyze", "mobilenet", "--format", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["params"], 3_504_872);
    assert_eq!(v["total"]["macs"], 300_774_272);
    assert_eq!(v["model"], "mobilenet_v2");
    let out = run(&["analyze", "resnet9000"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = run(&["analyze", "mobilenet", "--input", "3xfoo"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["analyze", "mobilenet", "--bogus-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["analyze", "mobilenet", "--depth", "1"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("features") && table.contains("classifier") && table.contains("MACs:"), "{table}");
    assert!(!table.contains("features.3"), "depth 1 folds blocks");
    let out = run(&["analyze", "--list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("mobilenet_v3_small") && list.contains("3,504,872"), "{list}");
}

#[test]
fn xtask_analyzes_onnx_files_and_rejects_bad_ones_in_one_line() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/kiln-analyze/tests/data");
    let file = data.join("resnet18-dynamo.onnx");
    let out = run(&["analyze", file.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["macs"], 1_814_073_344u64);
    assert_eq!(v["total"]["receptive_field"], 435);
    let bogus = std::env::temp_dir().join(format!("kiln-not-onnx-{}.onnx", std::process::id()));
    std::fs::write(&bogus, "this is not a model").unwrap();
    let missing = data.join("missing.onnx");
    for (args, why) in [
        (vec!["analyze", bogus.to_str().unwrap()], "not a valid ONNX model"),
        (vec!["analyze", missing.to_str().unwrap()], "no such file"),
        (vec!["analyze", file.to_str().unwrap(), "--input", "1x3x99x99"], "fixed shape"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.lines().count() == 1 && err.contains(why), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    std::fs::remove_file(&bogus).unwrap();
}

#[test]
fn xtask_binary_prints_one_line_errors() {
    let out = run(&["cluster", "--dataset", "/no/such/dataset"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/no/such/dataset") && err.contains("not found"), "{err}");
}
