//! The CLI's parsing and error paths, through the library entry points the xtask uses.

use burn::tensor::Device;
use kiln_cli::{analyze_model, parse_shape};
use kiln_models::{ModelOptions, Registry};

#[test]
fn shapes_parse_or_fail_clearly() {
    assert_eq!(parse_shape("3x224x224").unwrap(), vec![3, 224, 224]);
    assert_eq!(parse_shape("1,28,28").unwrap(), vec![1, 28, 28]);
    for bad in ["", "3x", "3xx4", "0x4x4", "threex4", "-1x2"] {
        let e = parse_shape(bad).unwrap_err().to_string();
        assert!(e.contains("bad shape") && e.contains("3x224x224"), "{bad}: {e}");
    }
}

#[test]
fn analyze_model_reports_unknown_names_and_bad_inputs() {
    let reg = Registry::builtin();
    let device = Device::flex();
    let o = ModelOptions::default();
    let e = analyze_model(&reg, "mobilenet_v7", &o, None, 1, &device).unwrap_err().to_string();
    assert!(e.starts_with("unknown model 'mobilenet_v7'") && e.contains("mobilenet (= mobilenet_v2)"), "{e}");
    let e = analyze_model(&reg, "mobilenet", &o, Some(vec![1, 224, 224]), 1, &device).unwrap_err().to_string();
    assert!(e.contains("expects 3 input channels"), "{e}");
    let e = analyze_model(&reg, "mobilenet", &o, Some(vec![3, 16, 16]), 1, &device);
    assert!(e.is_ok(), "16x16 still fits mobilenet_v2 (padding keeps sizes >= 1)");
    let e = analyze_model(&reg, "op:nope", &o, None, 1, &device).unwrap_err().to_string();
    assert!(e.contains("unknown model 'op:nope'") && e.contains("op:focus"), "{e}");
    let r = analyze_model(&reg, "mobilenet", &o, Some(vec![3, 160, 160]), 8, &device).unwrap();
    assert_eq!(r.input, vec![8, 3, 160, 160]);
    assert_eq!(r.total.output_shape, vec![8, 1000]);
    // MACs scale with the batch and the pixel count (the classifier only with the batch).
    let one = analyze_model(&reg, "mobilenet", &o, Some(vec![3, 160, 160]), 1, &device).unwrap();
    assert_eq!(r.total.macs, 8 * one.total.macs);
}

#[test]
fn xtask_binary_exit_codes_and_formats() {
    // The xtask binary is built by `cargo test --workspace`; locate it next to this test binary.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let xtask = dir.join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    if !xtask.is_file() {
        eprintln!("xtask binary not built at {} (run `cargo build -p xtask`); skipping", xtask.display());
        return;
    }
    let run = |args: &[&str]| std::process::Command::new(&xtask).args(args).output().unwrap();
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

/// The zoo's own twins exported from torchvision (`scripts/export-onnx.py`, graph only, both
/// exporters) analyze to the zoo's MACs and receptive field; the ONNX files' params are their
/// float initializers (BatchNorm is folded into the convolutions by both exporters).
#[test]
fn onnx_exports_of_zoo_models_match_the_zoo() {
    let reg = Registry::builtin();
    let device = Device::flex();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-analyze/tests/data");
    for model in ["resnet18", "mobilenet_v2"] {
        let zoo = analyze_model(&reg, model, &ModelOptions::default(), None, 1, &device).unwrap();
        for exporter in ["dynamo", "torchscript"] {
            let file = data.join(format!("{model}-{exporter}.onnx"));
            let r = kiln_analyze::onnx::analyze_file(&file, None, 1).unwrap();
            assert_eq!(r.total.macs, zoo.total.macs, "{model} {exporter}");
            assert_eq!(r.total.receptive_field, zoo.total.receptive_field, "{model} {exporter}");
            assert_eq!(r.total.effective_stride, zoo.total.effective_stride, "{model} {exporter}");
            assert_eq!(r.total.effective_padding, zoo.total.effective_padding, "{model} {exporter}");
            assert_eq!(r.total.output_shape, zoo.total.output_shape, "{model} {exporter}");
            // Every convolution's receptive field, stride and MACs agree too (as a multiset: the
            // exporters may order a block's shortcut before its branch).
            let rfs = |r: &kiln_analyze::Report| {
                let mut v: Vec<String> = r
                    .layers
                    .iter()
                    .filter(|l| l.op.starts_with("Conv"))
                    .map(|l| format!("{} {} {:?}", l.receptive_field, l.effective_stride, l.macs))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(rfs(&r), rfs(&zoo), "{model} {exporter}");
        }
    }
}

#[test]
fn xtask_analyzes_onnx_files_and_rejects_bad_ones_in_one_line() {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let xtask = dir.join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    if !xtask.is_file() {
        eprintln!("xtask binary not built at {} (run `cargo build -p xtask`); skipping", xtask.display());
        return;
    }
    let run = |args: &[&str]| std::process::Command::new(&xtask).args(args).output().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-analyze/tests/data");
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
