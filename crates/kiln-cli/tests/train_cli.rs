//! `cargo xtask train` / `run --weights DIR` / `analyze --from DIR` through the CLI entry point.

use std::process::ExitCode;

use kiln_models::Registry;

fn cli(args: &[&str]) -> ExitCode {
    let mut all = vec!["kiln"];
    all.extend_from_slice(args);
    kiln_cli::main_with(Registry::builtin(), all)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn bad_inputs_are_one_line_usage_errors() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    for args in [
        vec!["train", "lenet5", "--dataset", "/no/such/dataset", "--out", o],
        vec!["train", "lenet5", "--optimizer", "lbfgs", "--out", o],
        vec!["train", "lenet5", "--init", "ones", "--out", o],
        vec!["train", "no_such_model", "--out", o],
        vec!["train", "lenet5", "--epochs", "0", "--out", o],
        vec!["train", "lenet5", "--augment", "spin:3", "--out", o],
        vec!["train", "resnet18", "--dropout", "0.3", "--out", o],
        vec!["train", "lenet5", "--resume", "--out", o],
    ] {
        assert_eq!(cli(&args), ExitCode::from(2), "{args:?}");
    }
    assert!(!out.join("model.bpk").exists(), "no model written on errors");
}

#[test]
fn trained_model_runs_and_analyzes() {
    let out = tmp("ok");
    let o = out.to_str().unwrap();
    let code = cli(&[
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--train-limit",
        "600",
        "--out",
        o,
        "--progress",
        "quiet",
        "--dropout",
        "0.1",
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    for f in ["metrics.json", "curves.svg", "report.md", "model.json", "model.bpk"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // run: raw images in [0, 1] of the training data's shape.
    let input = out.join("in.npy");
    let data = kiln_data::Dataset::mnist_5k().unwrap();
    let test = data.test.unwrap();
    let mut pixels = vec![];
    for i in 0..3 {
        pixels.extend(test.get(i).unwrap().0);
    }
    kiln_models::npy::write(&input, &kiln_models::npy::NpyArray { shape: vec![3, 1, 28, 28], data: pixels }).unwrap();
    let output = out.join("out.npy");
    let code = cli(&[
        "run",
        "lenet5",
        "--weights",
        o,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(kiln_models::npy::read(&output).unwrap().shape, vec![3, 10]);
    // The wrong model name or input shape is refused, and nothing is written.
    let other = out.join("other.npy");
    assert_eq!(
        cli(&[
            "run",
            "resnet18",
            "--weights",
            o,
            "--input",
            input.to_str().unwrap(),
            "--output",
            other.to_str().unwrap()
        ]),
        ExitCode::from(2)
    );
    assert!(!other.exists());
    // NaN / Inf in the input is refused by name (exit 2), nothing written.
    let mut bad = kiln_models::npy::read(&input).unwrap();
    bad.data[5] = f32::NAN;
    bad.data[9] = f32::INFINITY;
    let bad_in = out.join("nan.npy");
    kiln_models::npy::write(&bad_in, &bad).unwrap();
    let args =
        ["run", "lenet5", "--weights", o, "--input", bad_in.to_str().unwrap(), "--output", other.to_str().unwrap()];
    assert_eq!(cli(&args), ExitCode::from(2));
    assert!(!other.exists());
    // analyze --from uses the trained model's own input size.
    assert_eq!(cli(&["analyze", "--from", o, "--format", "json"]), ExitCode::SUCCESS);
    let _ = std::fs::remove_dir_all(&out);
}
