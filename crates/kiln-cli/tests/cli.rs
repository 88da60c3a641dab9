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
