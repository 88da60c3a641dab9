//! torchvision parity: load the fixtures' state_dicts and reproduce their logits.
//!
//! The fixture folder comes from `KILN_FIXTURES` (default: `../shared/fixtures/torchvision`
//! next to the repository). When it is absent the tests say so and do nothing else.

use std::path::PathBuf;

use burn::tensor::Device;
use kiln_models::npy::{self, NpyArray};
use kiln_models::{ModelOptions, Registry};

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/torchvision"));
    if dir.join("input_2x3x224x224.npy").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "torchvision fixtures not found at {} (set KILN_FIXTURES to the folder holding input_2x3x224x224.npy and <model>.pth / <model>.out.npy): parity not checked",
            dir.display()
        );
        None
    }
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn check(name: &str, device: &Device) -> Option<(f32, f32)> {
    let dir = fixtures()?;
    let reg = Registry::builtin();
    if reg.get(name).is_err() {
        panic!("{name} is not registered");
    }
    let input = npy::read(&dir.join("input_2x3x224x224.npy")).unwrap();
    let expect = npy::read(&dir.join(format!("{name}.out.npy"))).unwrap();
    let got: NpyArray = kiln_models::weights::run_pretrained(
        &reg,
        name,
        &ModelOptions::default(),
        &dir.join(format!("{name}.pth")),
        &input,
        device,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got.shape, expect.shape, "{name}");
    let diff = got.data.iter().zip(&expect.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let tol = 1e-4 * max_abs(&expect.data).max(1.0);
    assert!(diff <= tol, "{name}: max |kiln - torch| = {diff:e} > {tol:e}");
    Some((diff, tol))
}

macro_rules! parity {
    ($test:ident, $name:literal) => {
        #[test]
        fn $test() {
            let flex = check($name, &Device::flex());
            #[allow(deprecated)]
            let nd = check($name, &Device::ndarray());
            if let (Some(f), Some(n)) = (flex, nd) {
                eprintln!("{}: flex max diff {:e}, ndarray max diff {:e} (tolerance {:e})", $name, f.0, n.0, f.1);
            }
        }
    };
}

parity!(mobilenet_v2_matches_torchvision, "mobilenet_v2");
parity!(mobilenet_v3_small_matches_torchvision, "mobilenet_v3_small");
parity!(resnet18_matches_torchvision, "resnet18");
parity!(shufflenet_v2_x0_5_matches_torchvision, "shufflenet_v2_x0_5");
parity!(squeezenet1_1_matches_torchvision, "squeezenet1_1");

#[test]
fn bad_weight_files_are_clear_errors() {
    let Some(dir) = fixtures() else { return };
    let reg = Registry::builtin();
    let device = Device::flex();
    let input = npy::read(&dir.join("input_2x3x224x224.npy")).unwrap();
    let tmp = std::env::temp_dir().join(format!("kiln-parity-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let run = |weights: &std::path::Path, model: &str| {
        kiln_models::weights::run_pretrained(&reg, model, &ModelOptions::default(), weights, &input, &device)
            .unwrap_err()
            .to_string()
    };
    // Missing file.
    let e = run(&tmp.join("nope.pth"), "mobilenet_v2");
    assert!(e.contains("not found"), "{e}");
    // Truncated file.
    let bytes = std::fs::read(dir.join("mobilenet_v2.pth")).unwrap();
    std::fs::write(tmp.join("trunc.pth"), &bytes[..bytes.len() / 3]).unwrap();
    let e = run(&tmp.join("trunc.pth"), "mobilenet_v2");
    assert!(e.contains("not a readable PyTorch state_dict") && !e.contains('\n'), "{e}");
    // Not a PyTorch file at all.
    std::fs::write(tmp.join("text.pth"), b"definitely not a pickle").unwrap();
    let e = run(&tmp.join("text.pth"), "mobilenet_v2");
    assert!(e.contains("not a readable PyTorch state_dict"), "{e}");
    // Weights of another model: keys listed.
    let e = run(&dir.join("mobilenet_v3_small.pth"), "mobilenet_v2");
    assert!(
        e.contains("missing keys [")
            && e.contains("unexpected keys [")
            && e.contains("features.1.conv.0.0.weight")
            && e.contains("features.1.block.0.0.weight"),
        "{e}"
    );
    // Right keys, wrong shapes (a 10-class model against 1000-class weights).
    let e = kiln_models::weights::run_pretrained(
        &reg,
        "mobilenet_v2",
        &ModelOptions { num_classes: 10, ..Default::default() },
        &dir.join("mobilenet_v2.pth"),
        &input,
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mismatched") && e.contains("classifier"), "{e}");
    // Wrong input shape.
    let small = NpyArray { shape: vec![1, 1, 32, 32], data: vec![0.0; 1024] };
    let e = kiln_models::weights::run_pretrained(
        &reg,
        "mobilenet_v2",
        &ModelOptions::default(),
        &dir.join("mobilenet_v2.pth"),
        &small,
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("expects 3 input channels"), "{e}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
