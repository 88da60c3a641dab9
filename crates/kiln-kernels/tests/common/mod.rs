//! Shared by the kernel test files: the CPU devices, deterministic inputs and the comparison
//! against Burn's reference ops.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};

#[allow(deprecated)]
pub fn devices() -> Vec<(&'static str, Device)> {
    vec![("flex", Device::flex()), ("ndarray", Device::ndarray())]
}

/// Deterministic values in [-1, 1].
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A tensor of [`values`] scaled to `[offset - scale, offset + scale]`.
pub fn scaled<const D: usize>(shape: [usize; D], seed: u64, scale: f32, offset: f32, device: &Device) -> Tensor<D> {
    let v = values(shape.iter().product(), seed).into_iter().map(|v| v * scale + offset).collect::<Vec<_>>();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// A tensor of [`values`] in [-1, 1].
pub fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    scaled(shape, seed, 1.0, 0.0, device)
}

/// `|a - b| <= 1e-4 * max(1, max |b|)` element-wise.
pub fn assert_close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a.into_data().try_to_vec::<f32>().unwrap();
    let b = b.into_data().try_to_vec::<f32>().unwrap();
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4 * scale, "{what}: max |diff| {worst} > 1e-4 x {scale}");
}
