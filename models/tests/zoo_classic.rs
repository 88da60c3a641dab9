//! The classic classification twins (LeNet-5, VGG-16, ResNet-18/34/50, DenseNet-121,
//! SqueezeNet 1.1) against PyTorch: exact params, buffers and MACs, torchvision's module paths,
//! the receptive field of VGG-16, and the analyzer's shapes against real forward passes.
//!
//! Reference numbers: torchvision 0.29.2, counted with forward hooks on every Conv2d / Linear
//! (output elements x in/groups x kh x kw; linear: rows x in x out), 1x3x224x224 input; buffers
//! are the BatchNorm running means and variances. LeNet-5: the PyTorch module in
//! `kiln_models::lenet`'s docs, counted the same way at 1x1x28x28.

use burn::tensor::{Device, Distribution, Tensor};
use kiln_analyze::{Report, Rf, Status, analyze};
use kiln_models::{ModelOptions, Registry};

struct Ref {
    name: &'static str,
    params: u64,
    buffers: u64,
    macs: u64,
    /// torchvision's modules that own parameters (`named_modules()` with direct parameters).
    param_modules: usize,
    /// A few of those paths, which must be analyzer rows.
    names: &'static [&'static str],
}

const REFS: &[Ref] = &[
    Ref {
        name: "resnet18",
        params: 11_689_512,
        buffers: 9_600,
        macs: 1_814_073_344,
        param_modules: 41,
        names: &[
            "conv1",
            "bn1",
            "layer1.0.conv1",
            "layer2.0.downsample.0",
            "layer2.0.downsample.1",
            "layer4.1.bn2",
            "fc",
        ],
    },
    Ref {
        name: "resnet34",
        params: 21_797_672,
        buffers: 17_024,
        macs: 3_663_761_408,
        param_modules: 73,
        names: &["layer3.5.conv2", "layer4.0.downsample.0", "layer4.2.bn2", "fc"],
    },
    Ref {
        name: "resnet50",
        params: 25_557_032,
        buffers: 53_120,
        macs: 4_089_184_256,
        param_modules: 107,
        names: &["layer1.0.downsample.0", "layer1.0.conv3", "layer3.5.bn3", "layer4.2.conv3", "fc"],
    },
    Ref {
        name: "vgg16",
        params: 138_357_544,
        buffers: 0,
        macs: 15_470_264_320,
        param_modules: 16,
        names: &[
            "features.0",
            "features.2",
            "features.5",
            "features.28",
            "classifier.0",
            "classifier.3",
            "classifier.6",
        ],
    },
    Ref {
        name: "vgg16_bn",
        params: 138_365_992,
        buffers: 8_448,
        macs: 15_470_264_320,
        param_modules: 29,
        names: &["features.0", "features.1", "features.3", "features.4", "features.40", "features.41", "classifier.6"],
    },
    Ref {
        name: "densenet121",
        params: 7_978_856,
        buffers: 83_648,
        macs: 2_834_161_664,
        param_modules: 242,
        names: &[
            "features.conv0",
            "features.norm0",
            "features.denseblock1.denselayer1.norm1",
            "features.denseblock1.denselayer6.conv2",
            "features.transition1.norm",
            "features.transition3.conv",
            "features.denseblock4.denselayer16.conv2",
            "features.norm5",
            "classifier",
        ],
    },
    Ref {
        name: "squeezenet1_1",
        params: 1_235_496,
        buffers: 0,
        macs: 349_151_936,
        param_modules: 26,
        names: &["features.0", "features.3.squeeze", "features.3.expand3x3", "features.12.expand1x1", "classifier.1"],
    },
];

fn param_rows(rep: &Report) -> Vec<&str> {
    rep.layers.iter().filter(|l| l.params > 0).map(|l| l.name.as_str()).collect()
}

#[test]
fn params_buffers_macs_and_names_match_torchvision() {
    let device = Device::flex();
    let reg = Registry::builtin();
    for r in REFS {
        let model = reg.build(r.name, &ModelOptions::default(), &device).unwrap();
        let rep = analyze(model.as_ref(), r.name, &[1, 3, 224, 224]).unwrap();
        let t = &rep.total;
        assert_eq!(t.params, r.params, "{} params", r.name);
        assert_eq!(t.buffers, r.buffers, "{} buffers", r.name);
        assert_eq!(t.macs, r.macs, "{} macs", r.name);
        assert_eq!(t.status, Status::Complete, "{}: {:?}", r.name, t.partial_ops);
        assert_eq!(t.output_shape, vec![1, 1000], "{}", r.name);
        assert_eq!(model.num_params() as u64, t.params + t.buffers, "{} num_params", r.name);
        // Every parameterised layer is traced exactly once, under its torchvision path.
        let rows = param_rows(&rep);
        let mut unique = rows.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), rows.len(), "{}: a parameterised row is traced twice", r.name);
        assert_eq!(rows.len(), r.param_modules, "{} parameterised rows", r.name);
        for n in r.names {
            assert!(rows.contains(n), "{}: no row {n}; rows: {rows:?}", r.name);
        }
    }
}

#[test]
fn lenet5_numbers_and_forward() {
    let device = Device::flex();
    let reg = Registry::builtin();
    // MNIST: 1x28x28, 10 classes (PyTorch: 61,706 params, 416,520 MACs).
    let opts = ModelOptions { num_classes: 10, in_channels: 1, ..Default::default() };
    let e = reg.get("lenet5").unwrap();
    assert_eq!(e.default_input, [1, 28, 28]);
    let model = reg.build("lenet5", &opts, &device).unwrap();
    let rep = analyze(model.as_ref(), "lenet5", &[1, 1, 28, 28]).unwrap();
    assert_eq!(rep.total.params, 61_706);
    assert_eq!(rep.total.buffers, 0);
    assert_eq!(rep.total.macs, 416_520);
    assert_eq!(rep.total.status, Status::Complete);
    assert_eq!(param_rows(&rep), vec!["conv1", "conv2", "fc1", "fc2", "fc3"]);
    let row = |n: &str| rep.layers.iter().find(|l| l.name == n).unwrap_or_else(|| panic!("no row {n}"));
    assert_eq!(row("conv1").output_shape, vec![1, 6, 28, 28]);
    assert_eq!(row("conv1").macs, Some(117_600));
    assert_eq!(row("pool2").output_shape, vec![1, 16, 5, 5]);
    assert_eq!(row("fc1").macs, Some(48_000));
    // The flatten collapses the 5x5 map: the RF is read at pool2's output.
    assert_eq!(rep.total.receptive_field_node, "pool2");
    assert_eq!(rep.total.receptive_field, Rf::Pixels(16));
    assert_eq!(rep.total.effective_stride, 4);
    let out = model.forward(Tensor::random([1, 1, 28, 28], Distribution::Default, &device));
    assert_eq!(out.dims(), rep.total.output_shape);
    assert_eq!(out.dims(), vec![1, 10]);
    assert_eq!(model.num_params() as u64, 61_706);
    // in_channels / num_classes options (PyTorch LeNet5(3, 100): 69,656 params, 659,280 MACs).
    let model =
        reg.build("lenet", &ModelOptions { num_classes: 100, in_channels: 3, ..Default::default() }, &device).unwrap();
    let rep = analyze(model.as_ref(), "lenet5", &[2, 3, 28, 28]).unwrap();
    assert_eq!((rep.total.params, rep.total.macs), (69_656, 2 * 659_280));
    assert_eq!(model.forward(Tensor::random([2, 3, 28, 28], Distribution::Default, &device)).dims(), vec![2, 100]);
    // Any other size is an analyzer error, not a panic.
    let err = analyze(model.as_ref(), "lenet5", &[1, 3, 32, 32]).unwrap_err().to_string();
    assert!(err.contains("400 input features"), "{err}");
}

#[test]
fn vgg16_receptive_field_is_212_at_stride_32() {
    let device = Device::flex();
    for name in ["vgg16", "vgg16_bn"] {
        let model = kiln_models::build(name, &ModelOptions::default(), &device).unwrap();
        let rep = analyze(model.as_ref(), name, &[1, 3, 224, 224]).unwrap();
        // At 224 the adaptive pool is a 1x1 window (7 -> 7); the flatten collapses, so the RF is
        // read at the avgpool output = pool5's output.
        assert_eq!(rep.total.receptive_field_node, "avgpool", "{name}");
        assert_eq!(rep.total.receptive_field, Rf::Pixels(212), "{name}");
        assert_eq!(rep.total.effective_stride, 32, "{name}");
        let last_pool = if name == "vgg16" { "features.30" } else { "features.43" };
        let row = rep.layers.iter().find(|l| l.name == last_pool).unwrap();
        assert_eq!(row.op, "MaxPool2d");
        assert_eq!(row.output_shape, vec![1, 512, 7, 7]);
        assert_eq!(row.receptive_field, Rf::Pixels(212));
    }
}

#[test]
fn squeezenet_shapes_follow_ceil_mode_pooling() {
    let device = Device::flex();
    let model = kiln_models::build("squeezenet", &ModelOptions::default(), &device).unwrap();
    let rep = analyze(model.as_ref(), "squeezenet1_1", &[1, 3, 224, 224]).unwrap();
    let row = |n: &str| rep.layers.iter().find(|l| l.name == n).unwrap_or_else(|| panic!("no row {n}"));
    // torchvision per-layer reference (output shape, MACs).
    for (name, shape, macs) in [
        ("features.0", [1, 64, 111, 111], 21_290_688u64),
        ("features.3.squeeze", [1, 16, 55, 55], 3_097_600),
        ("features.3.expand3x3", [1, 64, 55, 55], 27_878_400),
        ("features.6.squeeze", [1, 32, 27, 27], 2_985_984),
        ("features.7.expand3x3", [1, 128, 27, 27], 26_873_856),
        ("features.9.expand1x1", [1, 192, 13, 13], 1_557_504),
        ("features.12.squeeze", [1, 64, 13, 13], 5_537_792),
        ("features.12.expand3x3", [1, 256, 13, 13], 24_920_064),
        ("classifier.1", [1, 1000, 13, 13], 86_528_000),
    ] {
        assert_eq!(row(name).output_shape, shape.to_vec(), "{name}");
        assert_eq!(row(name).macs, Some(macs), "{name}");
    }
    assert_eq!(row("features.2").output_shape, vec![1, 64, 55, 55]);
    assert_eq!(row("features.12.cat").output_shape, vec![1, 512, 13, 13]);
    // torchvision at 225x227: features -> [1, 512, 14, 14] (ceil mode keeps partial windows).
    let rep = analyze(model.as_ref(), "squeezenet1_1", &[1, 3, 225, 227]).unwrap();
    assert_eq!(rep.layers.iter().find(|l| l.name == "features.12.cat").unwrap().output_shape, vec![1, 512, 14, 14]);
    let out = model.forward(Tensor::random([1, 3, 225, 227], Distribution::Default, &device));
    assert_eq!(out.dims(), rep.total.output_shape);
    assert_eq!(out.dims(), vec![1, 1000]);
}

#[test]
fn analyzer_shapes_equal_a_real_forward_pass() {
    let device = Device::flex();
    let reg = Registry::builtin();
    // One input per model; VGG-16 at 224 (~15 GMACs, one forward), the rest at smaller,
    // non-square sizes, batch 2.
    for (name, input, classes) in [
        ("vgg16", [1usize, 3, 224, 224], 1000usize),
        ("vgg16_bn", [2, 3, 64, 96], 10),
        ("resnet18", [2, 3, 96, 128], 10),
        ("resnet34", [1, 3, 64, 80], 7),
        ("resnet50", [2, 3, 96, 128], 10),
        ("densenet121", [2, 3, 96, 128], 10),
        ("squeezenet1_1", [2, 3, 96, 128], 10),
    ] {
        let model = reg.build(name, &ModelOptions { num_classes: classes, ..Default::default() }, &device).unwrap();
        let rep = analyze(model.as_ref(), name, &input).unwrap();
        assert_eq!(rep.total.output_shape, vec![input[0], classes], "{name}");
        let out = model.forward(Tensor::random(input, Distribution::Default, &device));
        assert_eq!(out.dims(), rep.total.output_shape, "{name} at {input:?}");
        assert_eq!(model.num_params() as u64, rep.total.params + rep.total.buffers, "{name}");
        let kiln_models::Output::Logits(logits) = out else { panic!("{name}: expected logits") };
        let v = logits.into_data().try_to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}: non-finite output");
    }
}

#[test]
fn registry_names_aliases_and_options() {
    let device = Device::flex();
    let reg = Registry::builtin();
    for (alias, canonical) in [
        ("resnet", "resnet18"),
        ("vgg", "vgg16"),
        ("densenet", "densenet121"),
        ("squeezenet", "squeezenet1_1"),
        ("lenet", "lenet5"),
    ] {
        assert_eq!(reg.get(alias).unwrap().name, canonical);
    }
    let opts = ModelOptions { num_classes: 5, ..Default::default() };
    let model = reg.build("resnet", &opts, &device).unwrap();
    // ResNet-18 with a 5-class head: 11,689,512 - 1000 * 513 + 5 * 513.
    let rep = analyze(model.as_ref(), "resnet18", &[1, 3, 224, 224]).unwrap();
    assert_eq!(rep.total.params, 11_689_512 - 995 * 513);
    assert_eq!(rep.total.output_shape, vec![1, 5]);
    // Single-channel inputs.
    let model = reg.build("densenet121", &ModelOptions { in_channels: 1, ..Default::default() }, &device).unwrap();
    assert!(analyze(model.as_ref(), "densenet121", &[1, 1, 224, 224]).is_ok());
    // None of these has a width multiplier.
    for name in ["lenet5", "vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50", "densenet121", "squeezenet1_1"] {
        let err = reg.build(name, &ModelOptions { width_mult: 0.5, ..Default::default() }, &device).unwrap_err();
        assert!(err.to_string().contains("no width multiplier"), "{name}: {err}");
    }
}
