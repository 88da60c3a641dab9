//! The dense-convolution backward (im2col + matrix products) against Burn's `conv2d`: forward,
//! input, weight and bias gradients, on flex and ndarray, within 1e-4 relative.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::ops::ConvOptions;
use kiln_kernels::dense;

mod common;
use common::{assert_close, devices, tensor};

/// (input, weight, stride, padding, dilation)
type Case = ([usize; 4], [usize; 4], [usize; 2], [(usize, usize); 2], [usize; 2]);

const CASES: &[Case] = &[
    // LeNet-5's two convolutions (smaller batch).
    ([3, 1, 28, 28], [6, 1, 5, 5], [1, 1], [(2, 2), (2, 2)], [1, 1]),
    ([3, 6, 14, 14], [16, 6, 5, 5], [1, 1], [(0, 0), (0, 0)], [1, 1]),
    // A stride-2 3x3 stem, odd sizes, asymmetric padding, dilation.
    ([2, 3, 11, 9], [8, 3, 3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1]),
    ([1, 4, 7, 10], [5, 4, 3, 2], [1, 2], [(2, 0), (1, 0)], [1, 1]),
    ([2, 3, 9, 9], [4, 3, 3, 3], [1, 1], [(2, 2), (2, 2)], [2, 2]),
    // A patch matrix past `dense::KEEP_COLS_MAX` (4.7M elements): the weight gradient rebuilds
    // it from the input instead of keeping the forward's.
    ([4, 32, 64, 64], [4, 32, 3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
];

#[test]
fn forward_and_gradients_match_burn() {
    let (x, w) = (CASES[5].0, CASES[5].1);
    assert!(w[1] * w[2] * w[3] * x[0] * x[2] * x[3] > dense::KEEP_COLS_MAX, "case 5 must rebuild its patch matrix");
    for (name, base) in devices() {
        let ad = base.autodiff();
        for (i, &(xs, ws, stride, padding, dilation)) in CASES.iter().enumerate() {
            let what = format!("{name} case {i}");
            let opts = ConvOptions::new_with_padding(stride, padding, dilation, 1);
            let leaves = || {
                (
                    tensor(xs, 1 + i as u64, &ad).require_grad(),
                    tensor(ws, 2 + i as u64, &ad).require_grad(),
                    tensor([ws[0]], 3 + i as u64, &ad).require_grad(),
                )
            };
            let (xr, wr, br) = leaves();
            let yr = burn::tensor::module::conv2d(xr.clone(), wr.clone(), Some(br.clone()), opts.clone());
            let (xk, wk, bk) = leaves();
            let yk = kiln_kernels::dense_conv2d(xk.clone(), wk.clone(), Some(bk.clone()), opts.clone());
            assert_close(&format!("{what} forward"), yk.clone().inner(), yr.clone().inner());
            let g = tensor(yr.dims(), 4 + i as u64, &ad);
            let gr = (yr * g.clone()).sum().backward();
            let before = dense::calls();
            let gk = (yk * g).sum().backward();
            assert!(dense::calls() >= before + 2, "{what}: the kernel path was not taken");
            assert_close(&format!("{what} dx"), xk.grad(&gk).unwrap(), xr.grad(&gr).unwrap());
            assert_close(&format!("{what} dw"), wk.grad(&gk).unwrap(), wr.grad(&gr).unwrap());
            assert_close(&format!("{what} db"), bk.grad(&gk).unwrap(), br.grad(&gr).unwrap());
        }
    }
}

#[test]
fn conv2d_module_takes_the_dense_path_under_autodiff() {
    for (name, base) in devices() {
        let ad = base.clone().autodiff();
        let conv = Conv2dConfig::new([6, 16], [5, 5]).with_padding(PaddingConfig2d::Explicit(1, 2, 0, 1)).init(&ad);
        let x = tensor([2, 6, 12, 13], 9, &ad).require_grad();
        let before = dense::calls();
        let y = kiln_kernels::conv2d(&conv, x.clone());
        let grads = y.clone().sum().backward();
        assert!(dense::calls() > before, "{name}: dense path not taken");
        let x2 = tensor([2, 6, 12, 13], 9, &ad).require_grad();
        let y2 = conv.forward(x2.clone());
        let grads2 = y2.clone().sum().backward();
        assert_close(&format!("{name} forward"), y.inner(), y2.inner());
        assert_close(&format!("{name} dx"), x.grad(&grads).unwrap(), x2.grad(&grads2).unwrap());
        // Without autodiff, Burn's convolution as it is.
        let plain = Conv2dConfig::new([6, 16], [5, 5]).init(&base);
        let x = tensor([2, 6, 12, 13], 9, &base);
        assert_close(&format!("{name} plain"), kiln_kernels::conv2d(&plain, x.clone()), plain.forward(x));
    }
}

/// Inference (no autodiff) with enough output channels, patch rows and columns for the AVX-512
/// path that writes im2col straight into the GEMM's packed panels: odd positions (panel tails),
/// padding, strides, dilation and a strided 1x1 convolution.
const PANEL_CASES: &[Case] = &[
    ([2, 16, 13, 11], [30, 16, 3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
    ([2, 15, 20, 17], [40, 15, 3, 3], [2, 1], [(2, 0), (1, 2)], [2, 1]),
    ([4, 130, 15, 15], [32, 130, 1, 1], [2, 2], [(0, 0), (0, 0)], [1, 1]),
    ([1, 64, 16, 16], [64, 64, 3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
];

#[test]
fn inference_forward_matches_burn_and_the_training_path() {
    for (name, base) in devices() {
        for (i, &(xs, ws, stride, padding, dilation)) in PANEL_CASES.iter().enumerate() {
            let what = format!("{name} panel case {i}");
            let opts = ConvOptions::new_with_padding(stride, padding, dilation, 1);
            let (x, w, b) =
                (tensor(xs, 11 + i as u64, &base), tensor(ws, 12 + i as u64, &base), tensor([ws[0]], 13, &base));
            let want = burn::tensor::module::conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone());
            let got = kiln_kernels::dense_conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone());
            assert_close(&format!("{what} forward"), got.clone(), want);
            // The training path (patch matrix kept for the backward, then the product) gives the
            // same values bit for bit: the same sums in the same order.
            let ad = base.clone().autodiff();
            let tracked = kiln_kernels::dense_conv2d(
                tensor(xs, 11 + i as u64, &ad).require_grad(),
                tensor(ws, 12 + i as u64, &ad).require_grad(),
                Some(tensor([ws[0]], 13, &ad)),
                opts,
            )
            .inner();
            assert_eq!(got.into_data(), tracked.into_data(), "{what}: inference and training forward differ");
        }
    }
}
