//! The plugin is analyzed by kiln's own command path, with exact numbers.

use burn::tensor::{Device, Distribution, Tensor};
use kiln_example_custom_op::{BlurPool2d, registry};
use kiln_models::ModelOptions;

#[test]
fn blur_pool_blurs_and_downsamples() {
    let device = Device::flex();
    // A constant image stays constant away from the zero-padded border.
    let y = BlurPool2d::new(1).forward(Tensor::ones([1, 1, 6, 6], &device));
    assert_eq!(y.dims(), [1, 1, 3, 3]);
    let v = y.into_data().try_to_vec::<f32>().unwrap();
    assert!((v[4] - 1.0).abs() < 1e-6); // interior
    assert!((v[0] - 9.0 / 16.0).abs() < 1e-6); // corner: only the 2x2 lower-right of the kernel
}

#[test]
fn plugin_model_is_analyzed_through_the_cli_path() {
    let device = Device::flex();
    let reg = registry();
    let report = kiln_cli::analyze_model(
        &reg,
        "blurnet",
        &ModelOptions { num_classes: 10, ..Default::default() },
        None,
        1,
        &device,
    )
    .unwrap();
    // convs: 3*16*9 + 16*32*9 + 32*64*9 (no bias) + BN 2*(16+32+64); fc 64*10+10.
    assert_eq!(report.total.params, 432 + 4608 + 18432 + 224 + 650);
    assert_eq!(report.total.buffers, 224);
    // MACs: convs at 32x32, 16x16, 8x8; blur-pools 16x16x16x9 and 32x8x8x9; fc 640.
    let convs = 32 * 32 * 16 * 27 + 16 * 16 * 32 * 144 + 8 * 8 * 64 * 288;
    let blurs = 16 * 16 * 16 * 9 + 32 * 8 * 8 * 9;
    assert_eq!(report.total.macs, (convs + blurs + 640) as u64);
    let blur = report.layers.iter().find(|l| l.name == "pools.0").expect("pools.0 row");
    assert_eq!(blur.op, "BlurPool2d");
    assert_eq!(blur.output_shape, vec![1, 16, 16, 16]);
    // RF: conv3 (3) -> blur3 s2 (5, j2) -> conv3 (9) -> blur (13, j4) -> conv3 (21).
    assert_eq!(report.total.receptive_field, kiln_analyze::Rf::Pixels(21));
    assert_eq!(report.total.effective_stride, 4);
    assert_eq!(report.total.status, kiln_analyze::Status::Complete);

    // The analyzer's predicted output shape equals a real forward pass.
    let model = reg.build("blurnet", &ModelOptions { num_classes: 10, ..Default::default() }, &device).unwrap();
    let out = model.forward(Tensor::random([1, 3, 32, 32], Distribution::Default, &device));
    assert_eq!(out.dims(), report.total.output_shape);
    assert_eq!(model.num_params() as u64, report.total.params + report.total.buffers);

    // The op alone, by its registered name.
    let op = kiln_cli::analyze_model(&reg, "op:blur_pool", &ModelOptions::default(), None, 1, &device).unwrap();
    assert_eq!(op.total.macs, 16 * 16 * 16 * 9);
}

#[test]
fn plugin_binary_runs_the_same_analyze_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-custom-op"))
        .args(["analyze", "blurnet", "--format", "json", "--num-classes", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "blurnet");
    assert_eq!(v["total"]["receptive_field"], 21);
    assert!(v["layers"].as_array().unwrap().iter().any(|l| l["op"] == "BlurPool2d"));
    // Built-in models are still there, and unknown names fail with exit code 2.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln-custom-op")).args(["analyze", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown model 'nope'") && err.contains("blurnet") && err.contains("mobilenet_v2"), "{err}");
}
