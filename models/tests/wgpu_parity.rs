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
