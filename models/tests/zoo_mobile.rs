//! The lightweight classification twins (ShuffleNetV2, GhostNet, EfficientNet-B0) against their
//! PyTorch references: exact params, buffers and MACs, torch module paths for the layers, and the
//! analyzer's self-checks (predicted output shape == a real forward pass on flex; params +
//! buffers == Burn's `num_params()`).
//!
//! Reference numbers: torchvision 0.29.2 / timm 1.0.31, 1x3x224x224, eval mode; MACs counted with
//! forward hooks on every Conv2d / Linear call (output elements x in/groups x kh x kw; batch x in
//! x out). GhostNet's count includes each GhostModule's `cheap_operation` on its full output,
//! as it runs, before the slice to `out_chs` (a no-op at these widths).

use burn::tensor::{Device, Distribution, Tensor};
use kiln_analyze::{Report, Rf, Status, analyze};
use kiln_models::{ModelOptions, Registry};

struct Ref {
    name: &'static str,
    width: f64,
    params: u64,
    buffers: u64,
    macs: u64,
    /// Conv2d + Linear calls in the PyTorch forward.
    conv_linear: usize,
}

const REFS: &[Ref] = &[
    Ref {
        name: "shufflenet_v2_x0_5",
        width: 1.0,
        params: 1_366_792,
        buffers: 7_952,
        macs: 40_476_448,
        conv_linear: 57,
    },
    Ref {
        name: "shufflenet_v2_x1_0",
        width: 1.0,
        params: 2_278_604,
        buffers: 16_180,
        macs: 144_907_992,
        conv_linear: 57,
    },
    Ref {
        name: "shufflenet_v2_x1_5",
        width: 1.0,
        params: 3_503_624,
        buffers: 23_440,
        macs: 295_759_392,
        conv_linear: 57,
    },
    Ref {
        name: "shufflenet_v2_x2_0",
        width: 1.0,
        params: 7_393_996,
        buffers: 33_716,
        macs: 583_253_464,
        conv_linear: 57,
    },
    // timm ghostnet_100 / ghostnet_050 / ghostnet_130 (timm's `width`).
    Ref { name: "ghostnet", width: 1.0, params: 5_182_508, buffers: 21_968, macs: 141_150_512, conv_linear: 96 },
    Ref { name: "ghostnet", width: 0.5, params: 2_587_292, buffers: 10_984, macs: 42_328_152, conv_linear: 96 },
    Ref { name: "ghostnet", width: 1.3, params: 7_358_820, buffers: 28_536, macs: 227_003_256, conv_linear: 96 },
    Ref { name: "efficientnet_b0", width: 1.0, params: 5_288_548, buffers: 42_016, macs: 385_814_752, conv_linear: 82 },
];

fn report(name: &str, opts: &ModelOptions, input: &[usize]) -> Report {
    let model = Registry::builtin().build(name, opts, &Device::flex()).unwrap();
    analyze(model.as_ref(), name, input).unwrap()
}

fn row<'a>(rep: &'a Report, name: &str) -> &'a kiln_analyze::Layer {
    rep.layers.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("{}: no row {name}", rep.model))
}

#[test]
fn params_buffers_and_macs_equal_pytorch() {
    for r in REFS {
        let rep = report(r.name, &ModelOptions { width_mult: r.width, ..Default::default() }, &[1, 3, 224, 224]);
        let t = &rep.total;
        assert_eq!(t.params, r.params, "{} x{} params", r.name, r.width);
        assert_eq!(t.buffers, r.buffers, "{} x{} buffers", r.name, r.width);
        // Conv + linear MACs are counted exactly as the hooks count them.
        assert_eq!(t.macs, r.macs, "{} x{} macs", r.name, r.width);
        assert_eq!(t.status, Status::Complete, "{}", r.name);
        assert_eq!(t.output_shape, vec![1, 1000], "{}", r.name);
        let calls = rep.layers.iter().filter(|l| l.op.starts_with("Conv2d") || l.op == "Linear").count();
        assert_eq!(calls, r.conv_linear, "{} conv/linear rows", r.name);
    }
}

#[test]
fn aliases_options_and_class_count() {
    let reg = Registry::builtin();
    assert_eq!(reg.get("shufflenet").unwrap().name, "shufflenet_v2_x1_0");
    assert_eq!(reg.get("ghostnet_100").unwrap().name, "ghostnet");
    let device = Device::flex();
    // Fixed-width twins reject a width multiplier instead of silently ignoring it.
    for name in ["shufflenet_v2_x0_5", "shufflenet", "efficientnet_b0"] {
        let err = reg.build(name, &ModelOptions { width_mult: 0.75, ..Default::default() }, &device).err().unwrap();
        assert!(err.to_string().contains("width"), "{name}: {err}");
    }
    // timm ghostnet_100(num_classes=10): 3,914,318 params, 139,883,312 MACs.
    let rep = report("ghostnet", &ModelOptions { num_classes: 10, ..Default::default() }, &[1, 3, 224, 224]);
    assert_eq!((rep.total.params, rep.total.macs), (3_914_318, 139_883_312));
}

#[test]
fn layer_names_are_the_torch_module_paths() {
    let opts = ModelOptions::default();
    let input = [1, 3, 224, 224];

    let rep = report("shufflenet_v2_x1_0", &opts, &input);
    for (name, shape, macs) in [
        ("conv1.0", vec![1, 24, 112, 112], 8_128_512u64),
        ("stage2.0.branch1.0", vec![1, 24, 28, 28], 169_344),
        ("stage2.0.branch1.2", vec![1, 58, 28, 28], 1_091_328),
        ("stage2.0.branch2.0", vec![1, 58, 56, 56], 4_365_312),
        ("stage2.0.branch2.3", vec![1, 58, 28, 28], 409_248),
        ("stage2.1.branch2.0", vec![1, 58, 28, 28], 2_637_376),
        ("stage4.3.branch2.5", vec![1, 232, 7, 7], 2_637_376),
        ("conv5.0", vec![1, 1024, 7, 7], 23_281_664),
        ("fc", vec![1, 1000], 1_024_000),
    ] {
        assert_eq!(row(&rep, name).output_shape, shape, "{name}");
        assert_eq!(row(&rep, name).macs, Some(macs), "{name}");
    }
    assert_eq!(row(&rep, "stage2.0.branch1.1").op, "BatchNorm");
    assert_eq!(row(&rep, "stage3.7.branch2.6").op, "BatchNorm");
    assert_eq!(row(&rep, "maxpool").output_shape, vec![1, 24, 56, 56]);

    let rep = report("ghostnet", &opts, &input);
    for (name, shape, macs) in [
        ("conv_stem", vec![1, 16, 112, 112], 5_419_008u64),
        ("blocks.0.0.ghost1.primary_conv.0", vec![1, 8, 112, 112], 1_605_632),
        ("blocks.0.0.ghost1.cheap_operation.0", vec![1, 8, 112, 112], 903_168),
        ("blocks.3.0.conv_dw", vec![1, 72, 28, 28], 1_411_200),
        ("blocks.3.0.se.conv_reduce", vec![1, 20, 1, 1], 1_440),
        ("blocks.3.0.se.conv_expand", vec![1, 72, 1, 1], 1_440),
        ("blocks.3.0.shortcut.0", vec![1, 24, 28, 28], 470_400),
        ("blocks.3.0.shortcut.2", vec![1, 40, 28, 28], 752_640),
        ("blocks.9.0.conv", vec![1, 960, 7, 7], 7_526_400),
        ("conv_head", vec![1, 1280, 1, 1], 1_228_800),
        ("classifier", vec![1, 1000], 1_280_000),
    ] {
        assert_eq!(row(&rep, name).output_shape, shape, "{name}");
        assert_eq!(row(&rep, name).macs, Some(macs), "{name}");
    }
    for bn in
        ["bn1", "blocks.3.0.bn_dw", "blocks.3.0.shortcut.1", "blocks.6.3.ghost2.cheap_operation.1", "blocks.9.0.bn1"]
    {
        assert_eq!(row(&rep, bn).op, "BatchNorm", "{bn}");
    }
    assert_eq!(row(&rep, "blocks.3.0.se.gate").op, "Hardsigmoid");
    assert_eq!(row(&rep, "blocks.9.0.bn1.act").op, "ReLU");

    let rep = report("efficientnet_b0", &opts, &input);
    for (name, shape, macs) in [
        ("features.0.0", vec![1, 32, 112, 112], 10_838_016u64),
        ("features.1.0.block.0.0", vec![1, 32, 112, 112], 3_612_672),
        ("features.1.0.block.1.fc1", vec![1, 8, 1, 1], 256),
        ("features.1.0.block.2.0", vec![1, 16, 112, 112], 6_422_528),
        ("features.2.0.block.0.0", vec![1, 96, 112, 112], 19_267_584),
        ("features.2.0.block.2.fc1", vec![1, 4, 1, 1], 384),
        ("features.6.3.block.3.0", vec![1, 192, 7, 7], 10_838_016),
        ("features.8.0", vec![1, 1280, 7, 7], 20_070_400),
        ("classifier.1", vec![1, 1000], 1_280_000),
    ] {
        assert_eq!(row(&rep, name).output_shape, shape, "{name}");
        assert_eq!(row(&rep, name).macs, Some(macs), "{name}");
    }
    assert_eq!(row(&rep, "features.1.0.block.0.2").op, "SiLU");
    assert_eq!(row(&rep, "features.2.0.block.2.scale_activation").op, "Sigmoid");
    assert_eq!(row(&rep, "features.2.1.stochastic_depth").op, "StochasticDepth");
    assert_eq!(row(&rep, "features.7.0.block.3.1").op, "BatchNorm");
}

#[test]
fn shufflenet_trace_has_channel_shuffle_and_split_and_a_finite_rf() {
    let rep = report("shufflenet", &ModelOptions::default(), &[1, 3, 224, 224]);
    // 16 units, each ending in a 2-group shuffle; the 13 stride-1 units chunk their input in two.
    let shuffles: Vec<_> = rep.layers.iter().filter(|l| l.op == "ChannelShuffle").collect();
    assert_eq!(shuffles.len(), 16);
    assert_eq!(shuffles[0].name, "stage2.0.channel_shuffle");
    assert_eq!(shuffles[0].output_shape, vec![1, 116, 28, 28]);
    let splits: Vec<_> = rep.layers.iter().filter(|l| l.op == "Split").collect();
    assert_eq!(splits.len(), 2 * 13);
    assert_eq!(splits[0].name, "stage2.1.chunk.0");
    assert_eq!(splits[0].output_shape, vec![1, 58, 28, 28]);
    assert_eq!(row(&rep, "stage2.1.chunk.1").output_shape, vec![1, 58, 28, 28]);
    assert_eq!(row(&rep, "stage2.1.cat").output_shape, vec![1, 116, 28, 28]);
    // No SE: the receptive field of conv5 (the global mean's input) is finite. By hand: conv1
    // 3, maxpool 7, each stage's stride-2 unit adds 2 x its input jump and each stride-1 unit's
    // depthwise 3x3 adds 2 x the stage jump: 7 + 8 + 3*16 + 16 + 7*32 + 32 + 3*64 = 527.
    assert_eq!(rep.total.receptive_field, Rf::Pixels(527));
    assert_eq!(rep.total.effective_stride, 32);
    assert_eq!(rep.total.receptive_field_node, "conv5.2");
    // GhostNet and EfficientNet gate channels with SE: global.
    for name in ["ghostnet", "efficientnet_b0"] {
        assert_eq!(
            report(name, &ModelOptions::default(), &[1, 3, 224, 224]).total.receptive_field,
            Rf::Global,
            "{name}"
        );
    }
}

#[test]
fn analyzer_shapes_and_params_equal_a_real_forward_pass() {
    let device = Device::flex();
    let reg = Registry::builtin();
    let cases: &[(&str, f64, [usize; 4], usize)] = &[
        ("shufflenet_v2_x1_0", 1.0, [1, 3, 224, 224], 1000),
        ("shufflenet_v2_x0_5", 1.0, [2, 3, 96, 128], 10),
        ("shufflenet_v2_x1_5", 1.0, [1, 3, 64, 64], 10),
        ("shufflenet_v2_x2_0", 1.0, [1, 3, 64, 64], 10),
        ("ghostnet", 1.0, [1, 3, 224, 224], 1000),
        ("ghostnet", 0.5, [2, 3, 96, 128], 10),
        ("efficientnet_b0", 1.0, [1, 3, 224, 224], 1000),
        ("efficientnet_b0", 1.0, [2, 3, 96, 128], 10),
    ];
    for &(name, width, shape, classes) in cases {
        let opts = ModelOptions { num_classes: classes, width_mult: width, ..Default::default() };
        let model = reg.build(name, &opts, &device).unwrap();
        let rep = analyze(model.as_ref(), name, &shape).unwrap();
        let out = model.forward(Tensor::random(shape, Distribution::Default, &device));
        assert_eq!(out.dims(), rep.total.output_shape, "{name} x{width} at {shape:?}");
        assert_eq!(out.dims(), vec![shape[0], classes]);
        assert_eq!(model.num_params() as u64, rep.total.params + rep.total.buffers, "{name} x{width}");
    }
}

/// Numerical parity with PyTorch, when fixtures are available: `KILN_MOBILE_FIXTURES` (default
/// `../shared/fixtures/torchvision` next to the repository) holding `input_2x3x224x224.npy` and,
/// per model, `<name>.pth` (the torchvision / timm `state_dict`, BN statistics and biases set to
/// random values) and `<name>.out.npy` (its eval-mode logits). Models without fixtures are
/// skipped with a message.
#[test]
fn logits_match_pytorch_when_fixtures_exist() {
    use kiln_models::npy;
    let dir = std::env::var_os("KILN_MOBILE_FIXTURES").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/torchvision")
    });
    let Ok(input) = npy::read(&dir.join("input_2x3x224x224.npy")) else {
        eprintln!("no fixtures at {}: parity not checked", dir.display());
        return;
    };
    let reg = Registry::builtin();
    for name in ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "ghostnet", "efficientnet_b0"] {
        let (weights, out) = (dir.join(format!("{name}.pth")), dir.join(format!("{name}.out.npy")));
        if !weights.is_file() || !out.is_file() {
            eprintln!("{name}: no fixture in {}, skipped", dir.display());
            continue;
        }
        let expect = npy::read(&out).unwrap();
        let got = kiln_models::weights::run_pretrained(
            &reg,
            name,
            &ModelOptions::default(),
            &weights,
            &input,
            &Device::flex(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.shape, expect.shape, "{name}");
        let diff = got.data.iter().zip(&expect.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let tol = 1e-4 * expect.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(diff <= tol, "{name}: max |kiln - torch| = {diff:e} > {tol:e}");
        eprintln!("{name}: max |kiln - torch| = {diff:e} (tolerance {tol:e})");
    }
}

#[test]
fn stochastic_depth_drops_the_residual_branch_only_in_training() {
    use kiln_models::efficientnet::MBConv;
    let flex = Device::flex();
    for (device, training) in [(flex.clone(), false), (flex.autodiff(), true)] {
        // A residual MBConv whose branch is always dropped in training (p = 1).
        let block = MBConv::new(16, 16, 6.0, 3, 1, 1.0, &device);
        assert!(block.use_res);
        let x = Tensor::<4>::random([2, 16, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let diff = (block.forward(x.clone()) - x).abs().max().into_scalar::<f32>();
        assert_eq!(diff == 0.0, training, "training {training}: max |y - x| = {diff}");
    }
}
