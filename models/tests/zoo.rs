//! Every registered model against its PyTorch reference: exact params, MACs within 0.5 %, and the
//! analyzer's self-checks (predicted output shape == a real forward pass; params + buffers ==
//! Burn's `num_params()`).
//!
//! Reference numbers: torchvision 0.29.2 / timm 1.0.31, counted with forward hooks on every
//! Conv2d / Linear (output elements x in/groups x kh x kw), 1x3x224x224 input.

use burn::tensor::{Device, Distribution, Tensor};
use kiln_analyze::{Rf, Status, analyze};
use kiln_models::{ModelOptions, Registry};

struct Ref {
    name: &'static str,
    width: f64,
    params: u64,
    buffers: u64,
    macs: u64,
}

const REFS: &[Ref] = &[
    Ref { name: "mobilenet_v2", width: 1.0, params: 3_504_872, buffers: 34_112, macs: 300_774_272 },
    Ref { name: "mobilenet_v2", width: 0.5, params: 1_968_680, buffers: 18_544, macs: 97_131_840 },
    Ref { name: "mobilenet_v2", width: 1.4, params: 6_108_776, buffers: 47_936, macs: 582_195_824 },
    Ref { name: "mobilenet_v3_large", width: 1.0, params: 5_483_032, buffers: 24_400, macs: 216_589_760 },
    Ref { name: "mobilenet_v3_small", width: 1.0, params: 2_542_856, buffers: 12_112, macs: 56_510_400 },
    Ref { name: "mobilenet_v1", width: 1.0, params: 4_231_976, buffers: 21_888, macs: 568_740_352 },
];

#[test]
fn params_and_macs_match_torchvision_and_timm() {
    let device = Device::flex();
    let reg = Registry::builtin();
    for r in REFS {
        let model = reg.build(r.name, &ModelOptions { width_mult: r.width, ..Default::default() }, &device).unwrap();
        let rep = analyze(model.as_ref(), r.name, &[1, 3, 224, 224]).unwrap();
        let t = &rep.total;
        assert_eq!(t.params, r.params, "{} x{} params", r.name, r.width);
        assert_eq!(t.buffers, r.buffers, "{} x{} buffers", r.name, r.width);
        let rel = (t.macs as f64 - r.macs as f64).abs() / r.macs as f64;
        assert!(rel <= 0.005, "{} x{} macs {} vs {}", r.name, r.width, t.macs, r.macs);
        // Conv + linear MACs are counted exactly as the reference does.
        assert_eq!(t.macs, r.macs, "{} x{} macs", r.name, r.width);
        assert_eq!(t.status, Status::Complete, "{}", r.name);
        assert_eq!(t.output_shape, vec![1, 1000]);
    }
}

#[test]
fn mobilenet_v2_headline_numbers_and_layer_names() {
    let device = Device::flex();
    let model = kiln_models::build("mobilenet", &ModelOptions::default(), &device).unwrap();
    let rep = analyze(model.as_ref(), "mobilenet_v2", &[1, 3, 224, 224]).unwrap();
    assert_eq!(rep.total.params, 3_504_872);
    assert_eq!(rep.total.macs, 300_774_272);
    // torchvision's module paths, with PyTorch's per-layer MACs.
    let row = |n: &str| rep.layers.iter().find(|l| l.name == n).unwrap_or_else(|| panic!("no row {n}"));
    assert_eq!(row("features.0.0").macs, Some(10_838_016));
    assert_eq!(row("features.0.0").output_shape, vec![1, 32, 112, 112]);
    assert_eq!(row("features.3.conv.1.0").op, "Conv2d(depthwise)");
    assert_eq!(row("features.18.0").output_shape, vec![1, 1280, 7, 7]);
    assert_eq!(row("classifier.1").macs, Some(1_280_000));
    // Receptive field of the last feature map (input of the global pool).
    assert_eq!(rep.total.receptive_field_node, "features.18.2");
    assert_eq!(rep.total.effective_stride, 32);
    assert!(matches!(rep.total.receptive_field, Rf::Pixels(491)), "{:?}", rep.total.receptive_field);
    // FLOPs = 2 x MACs + the element-wise ops, so strictly more than twice the MACs.
    assert!(rep.total.flops > 2 * rep.total.macs);
    assert_eq!(rep.total.weight_bytes, (3_504_872 + 34_112) * 4);
    assert!(rep.total.peak_activation_bytes >= 2 * 96 * 112 * 112 * 4);
}

#[test]
fn squeeze_excite_makes_the_receptive_field_global() {
    let device = Device::flex();
    for name in ["mobilenet_v3_large", "mobilenet_v3_small"] {
        let model = kiln_models::build(name, &ModelOptions::default(), &device).unwrap();
        let rep = analyze(model.as_ref(), name, &[1, 3, 224, 224]).unwrap();
        assert_eq!(rep.total.receptive_field, Rf::Global, "{name}");
        let json: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
        assert_eq!(json["total"]["receptive_field"], "global");
        // The stem, before any SE, still has a finite RF.
        assert_eq!(rep.layers.iter().find(|l| l.name == "features.0.0").unwrap().receptive_field, Rf::Pixels(3));
    }
}

#[test]
fn analyzer_shapes_and_params_equal_a_real_forward_pass() {
    let device = Device::flex();
    let reg = Registry::builtin();
    for e in reg.models() {
        let [c, h, w] = e.default_input;
        // The default input, and a second one with other sizes (a multiple of 32 for the nets
        // that halve their input five times).
        // Nets with a fixed input size (the 28x28 MNIST nets) are checked at that size only.
        let mut inputs = vec![([c, h, w], 1000usize)];
        if h >= 64 {
            inputs.push(([c, h + 32, w + 64], 10));
        }
        for (input, classes) in inputs {
            let opts = ModelOptions { num_classes: classes, ..Default::default() };
            let model = reg.build(&e.name, &opts, &device).unwrap();
            let shape = [2, input[0], input[1], input[2]];
            let rep =
                analyze(model.as_ref(), &e.name, &shape).unwrap_or_else(|err| panic!("{} at {shape:?}: {err}", e.name));
            let out = model.forward(Tensor::random(shape, Distribution::Default, &device));
            assert_eq!(out.dims(), rep.total.output_shape, "{} at {:?}", e.name, shape);
            assert_eq!(model.num_params() as u64, rep.total.params + rep.total.buffers, "{}", e.name);
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = Device::flex();
    let model = kiln_models::build("mobilenet_v2", &ModelOptions::default(), &device).unwrap();
    let err = analyze(model.as_ref(), "mobilenet_v2", &[1, 1, 224, 224]).unwrap_err().to_string();
    assert!(err.contains("expects 3 input channels"), "{err}");
    let err = analyze(model.as_ref(), "mobilenet_v2", &[1, 3, 224]).unwrap_err().to_string();
    assert!(err.contains("rank-4"), "{err}");
    assert!(analyze(model.as_ref(), "mobilenet_v2", &[1, 3, 0, 224]).is_err());
    let err = Registry::builtin().get("mobilenet_v9").err().unwrap().to_string();
    assert!(err.contains("unknown model 'mobilenet_v9'") && err.contains("mobilenet_v3_small"), "{err}");
    assert!(
        kiln_models::build("mobilenet_v2", &ModelOptions { width_mult: 0.0, ..Default::default() }, &device).is_err()
    );
    assert!(kiln_models::build("resnet18", &ModelOptions { width_mult: 0.5, ..Default::default() }, &device).is_err());
}

#[test]
fn ndarray_backend_runs_the_zoo() {
    #[allow(deprecated)]
    let device = Device::ndarray();
    let model =
        kiln_models::build("mobilenet_v3_small", &ModelOptions { num_classes: 10, ..Default::default() }, &device)
            .unwrap();
    assert_eq!(model.forward(Tensor::random([1, 3, 64, 64], Distribution::Default, &device)).dims(), vec![1, 10]);
}

/// The analyzer needs shapes only: analyzing a model must leave Burn's lazy weights uninitialized
/// (VGG-16's 138 M random weights used to be drawn, 560 MB and seconds, just to print its table:
/// the traces read `param.shape()`, which derefs to the tensor and initializes it, instead of
/// `lazy_shape()`).
#[test]
fn analysis_never_materializes_weights() {
    struct Count {
        lazy: usize,
        initialized: Vec<String>,
    }
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            // Weights (rank >= 2) only: Burn creates some vectors (biases, BN) eagerly.
            if D < 2 {
                return;
            }
            if param.is_initialized() {
                self.initialized.push(format!("{:?}", param.lazy_shape().dims::<D>()));
            } else {
                self.lazy += 1;
            }
        }
    }
    let device = Device::flex();
    let reg = Registry::builtin();
    for name in ["vgg16", "resnet50", "mobilenet_v2", "densenet121", "mobilenet_v3_large", "lenet5"] {
        let e = reg.get(name).unwrap();
        let model = reg.build(name, &ModelOptions::default(), &device).unwrap();
        let mut input = vec![1];
        input.extend(e.default_input);
        analyze(model.as_ref(), name, &input).unwrap();
        let mut c = Count { lazy: 0, initialized: vec![] };
        burn::module::Module::visit(&kiln_models::AnyModel::new(model), &mut c);
        assert!(c.lazy > 0 && c.initialized.is_empty(), "{name}: {} lazy, initialized: {:?}", c.lazy, c.initialized);
    }
}
