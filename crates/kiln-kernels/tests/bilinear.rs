//! kiln's bilinear kernel against Burn's `interpolate(.., Bilinear)`: forward values and input
//! gradients, on flex and ndarray, with and without autodiff, for up- and downsampling, integer
//! and non-integer ratios, both `align_corners` settings and single-pixel edges.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use kiln_kernels::bilinear;

mod common;
use common::{assert_close, devices, tensor};

/// The kernel-call counter is process-wide: tests that read it run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn burn_bilinear(x: Tensor<4>, size: [usize; 2], align_corners: bool) -> Tensor<4> {
    let mut opts = InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size(size);
    opts.align_corners = align_corners;
    interpolate(x, opts)
}

/// (input, output size, align_corners)
fn cases() -> Vec<([usize; 4], [usize; 2], bool)> {
    vec![
        // x2, as in U-Net / FPN decoders and the bench.
        ([2, 8, 14, 14], [28, 28], false),
        ([2, 8, 14, 14], [28, 28], true),
        // non-integer ratios, rectangular, odd sizes.
        ([1, 3, 5, 7], [8, 11], false),
        ([1, 3, 5, 7], [8, 11], true),
        // downsampling and a mix (down in H, up in W).
        ([2, 2, 9, 9], [4, 5], false),
        ([1, 2, 9, 4], [3, 10], true),
        // single pixels: a 1x1 input broadcast, and a 1-wide output.
        ([1, 2, 1, 1], [3, 3], false),
        ([1, 2, 6, 5], [1, 4], true),
        ([1, 2, 6, 5], [4, 1], false),
        // identity size.
        ([1, 3, 6, 6], [6, 6], false),
    ]
}

#[test]
fn forward_and_gradient_match_burn() {
    let _serial = serial();
    for (name, base) in devices() {
        for (i, (shape, size, align)) in cases().into_iter().enumerate() {
            let what = format!("{name} case {i} {shape:?} -> {size:?} align_corners {align}");
            let x = tensor(shape, 20 + i as u64, &base);
            let before = bilinear::calls();
            let yk = kiln_kernels::interpolate_bilinear(x.clone(), size, align);
            assert!(bilinear::calls() > before, "{what}: the kernel path was not taken");
            assert_eq!(yk.dims(), [shape[0], shape[1], size[0], size[1]], "{what}: shape");
            assert_close(&format!("{what}: forward"), yk, burn_bilinear(x, size, align));

            // With autodiff: the gradient of a weighted sum (weights vary per element, so every
            // tap's share is checked, not only their total).
            // burn-ndarray has no bilinear backward ("not supported"), so the reference gradient
            // is Burn's on flex for both backends.
            let ad = base.clone().autodiff();
            let gshape = [shape[0], shape[1], size[0], size[1]];
            let xk = tensor(shape, 20 + i as u64, &ad).require_grad();
            let before = bilinear::calls();
            let yk = kiln_kernels::interpolate_bilinear(xk.clone(), size, align);
            let gk = (yk.clone() * tensor(gshape, 90 + i as u64, &ad)).sum().backward();
            assert!(bilinear::calls() >= before + 2, "{what}: forward and backward both take the kernel");
            let flex = Device::flex().autodiff();
            let xr = tensor(shape, 20 + i as u64, &flex).require_grad();
            let yr = burn_bilinear(xr.clone(), size, align);
            let gr = (yr.clone() * tensor(gshape, 90 + i as u64, &flex)).sum().backward();
            let on_flex = |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &Device::flex());
            assert_close(&format!("{what}: autodiff forward"), on_flex(yk), on_flex(yr));
            assert_close(
                &format!("{what}: input gradient"),
                on_flex(xk.grad(&gk).unwrap()),
                on_flex(xr.grad(&gr).unwrap()),
            );
        }
    }
}

#[test]
fn other_dtypes_fall_back_to_burn() {
    let _serial = serial();
    let device = Device::flex();
    let x = tensor([1, 2, 4, 4], 3, &device).cast(burn::tensor::DType::F64);
    let before = bilinear::calls();
    let y = kiln_kernels::interpolate_bilinear(x.clone(), [8, 8], false);
    assert_eq!(bilinear::calls(), before, "f64 goes to Burn");
    assert_eq!(y.dims(), [1, 2, 8, 8]);
    assert_close(
        "f64",
        y.cast(burn::tensor::DType::F32),
        burn_bilinear(x, [8, 8], false).cast(burn::tensor::DType::F32),
    );
}
