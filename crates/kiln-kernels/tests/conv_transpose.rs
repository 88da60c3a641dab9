//! kiln's non-overlapping transposed convolution (one matrix product) against Burn's
//! `ConvTranspose2d`: values and the gradients of the input, weight and bias, on flex and
//! ndarray; overlapping or padded cases go to Burn unchanged.

use burn::module::Param;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::{Device, Tensor};

mod common;
use common::{assert_close, devices, tensor};

fn layer(cin: usize, cout: usize, k: [usize; 2], stride: [usize; 2], bias: bool, device: &Device) -> ConvTranspose2d {
    let mut m = ConvTranspose2dConfig::new([cin, cout], k).with_stride(stride).with_bias(bias).init(device);
    m.weight = Param::from_tensor(tensor([cin, cout, k[0], k[1]], 5, device));
    if bias {
        m.bias = Some(Param::from_tensor(tensor([cout], 6, device)));
    }
    m
}

#[test]
fn patch_transpose_matches_burn_with_gradients() {
    // (input, cout, kernel = stride, bias): U-Net's 2x2 / 2, a rectangular 3x2 patch, odd sizes.
    let cases = [([2, 8, 7, 5], 4, [2, 2], true), ([1, 3, 4, 6], 5, [3, 2], false), ([3, 16, 14, 14], 8, [2, 2], true)];
    for (name, base) in devices() {
        for (i, (shape, cout, k, bias)) in cases.into_iter().enumerate() {
            let what = format!("{name} case {i} {shape:?} -> {cout}, kernel = stride {k:?}");
            let ad = base.clone().autodiff();
            let m = layer(shape[1], cout, k, k, bias, &ad);
            assert!(kiln_kernels::is_patch_transpose(&m), "{what}");
            let xk = tensor(shape, 10 + i as u64, &ad).require_grad();
            let xr = tensor(shape, 10 + i as u64, &ad).require_grad();
            let yk = kiln_kernels::conv_transpose2d(&m, xk.clone());
            let yr = m.forward(xr.clone());
            assert_eq!(yk.dims(), yr.dims(), "{what}: shape");
            let g = tensor(yr.dims(), 30 + i as u64, &ad);
            let gk = (yk.clone() * g.clone()).sum().backward();
            let gr = (yr.clone() * g).sum().backward();
            assert_close(&format!("{what}: forward"), yk, yr);
            assert_close(&format!("{what}: input gradient"), xk.grad(&gk).unwrap(), xr.grad(&gr).unwrap());
            assert_close(&format!("{what}: weight gradient"), m.weight.grad(&gk).unwrap(), m.weight.grad(&gr).unwrap());
            if bias {
                let (bk, br) =
                    (m.bias.as_ref().unwrap().grad(&gk).unwrap(), m.bias.as_ref().unwrap().grad(&gr).unwrap());
                assert_close(&format!("{what}: bias gradient"), bk, br);
            }
            // Without autodiff too.
            let m = layer(shape[1], cout, k, k, bias, &base);
            let x = tensor(shape, 10 + i as u64, &base);
            assert_close(&format!("{what}: inference"), kiln_kernels::conv_transpose2d(&m, x.clone()), m.forward(x));
        }
    }
}

#[test]
fn overlapping_and_padded_cases_are_burns() {
    let device = Device::flex();
    let x = tensor([1, 4, 5, 5], 3, &device);
    // The autoencoder's 3x3 / 2 with padding, and a 2x2 / 1.
    let a = ConvTranspose2dConfig::new([4, 2], [3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_padding_out([1, 1])
        .init(&device);
    let b = ConvTranspose2dConfig::new([4, 2], [2, 2]).init(&device);
    for m in [a, b] {
        assert!(!kiln_kernels::is_patch_transpose(&m));
        let (yk, yr): (Tensor<4>, Tensor<4>) = (kiln_kernels::conv_transpose2d(&m, x.clone()), m.forward(x.clone()));
        assert_eq!(yk.into_data(), yr.into_data());
    }
}
