//! The same zoo model on wgpu and on flex gives the same outputs (relative difference <= 1e-4).
//! On a machine without a GPU, wgpu runs on Mesa's lavapipe Vulkan driver (`.ci/run` installs
//! `mesa-vulkan-drivers`). Set `KILN_SKIP_WGPU=1` to skip where no Vulkan driver exists at all.

use burn::module::Module;
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use kiln_models::mobilenet_v3::{MobileNetV3Config, V3Arch};

#[test]
fn mobilenet_v3_small_on_wgpu_matches_flex() {
    if std::env::var("KILN_SKIP_WGPU").is_ok_and(|v| v == "1") {
        eprintln!("KILN_SKIP_WGPU=1: skipping the wgpu parity test");
        return;
    }
    let cpu = Device::flex();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice);
    let model = MobileNetV3Config::new(V3Arch::Small).with_num_classes(10).init(&cpu);
    // Inputs kept small: lavapipe is slow and the first calls compile kernels.
    let x = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &cpu);
    let expect = model.forward(x.clone());
    let model_gpu = model.to_device(&gpu);
    let got = model_gpu.forward(x.to_device(&gpu)).to_device(&cpu);
    let scale = expect.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = (expect - got).abs().max().into_scalar::<f32>();
    assert!(diff <= 1e-4 * scale, "max |wgpu - flex| = {diff} (scale {scale})");
}

fn flat(out: kiln_models::Output) -> Tensor<1> {
    match out {
        kiln_models::Output::Logits(t) => t.flatten(0, 1),
        kiln_models::Output::Map(t) => t.flatten(0, 3),
    }
}

/// Every registered zoo model on wgpu against flex, at its default input, batch 1. Too slow for
/// lavapipe: runs only with `KILN_WGPU_ZOO=1` (`scripts/gpu-check` sets it on a machine with a
/// GPU) and says so otherwise.
#[test]
fn every_zoo_model_on_wgpu_matches_flex() {
    if std::env::var("KILN_WGPU_ZOO").map_or(true, |v| v != "1") {
        eprintln!("KILN_WGPU_ZOO is not 1: the whole-zoo wgpu parity check is left to scripts/gpu-check");
        return;
    }
    let cpu = Device::flex();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice);
    let reg = kiln_models::Registry::builtin();
    let dir = std::env::temp_dir().join(format!("kiln-wgpu-zoo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut worst = Vec::new();
    for e in reg.models() {
        let opts = kiln_models::ModelOptions::default();
        let model = reg.build(&e.name, &opts, &cpu).unwrap();
        let file = dir.join(format!("{}.bpk", e.name));
        model.save_file(&file).unwrap();
        let mut on_gpu = reg.build(&e.name, &opts, &gpu).unwrap();
        on_gpu.load_file(&file).unwrap();
        let [c, h, w] = e.default_input;
        let x = Tensor::<4>::random([1, c, h, w], Distribution::Normal(0.0, 1.0), &cpu);
        let expect = flat(model.forward(x.clone()));
        let got = flat(on_gpu.forward(x.to_device(&gpu))).to_device(&cpu);
        let scale = expect.clone().abs().max().into_scalar::<f32>().max(1.0);
        let rel = (expect - got).abs().max().into_scalar::<f32>() / scale;
        println!("{}: max |wgpu - flex| / max |flex| = {rel:.2e}", e.name);
        worst.push((e.name.clone(), rel));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bad: Vec<_> = worst.iter().filter(|(_, r)| !(*r <= 1e-4)).collect();
    assert!(bad.is_empty(), "relative difference above 1e-4: {bad:?}");
}
