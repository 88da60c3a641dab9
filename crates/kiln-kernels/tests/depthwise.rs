//! The depthwise kernel against Burn's reference `conv2d`: forward, input gradient, weight
//! gradient and bias gradient, on flex and ndarray, within 1e-4 relative.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::Device;
use burn::tensor::ops::ConvOptions;
use kiln_kernels::{KernelError, depthwise_cpu};

mod common;
use common::{assert_close, devices, tensor};

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    bias: bool,
}

const CASES: &[Case] = &[
    // MobileNet's 3x3, stride 1 and 2, padding 1.
    Case {
        batch: 3,
        channels: 8,
        h: 12,
        w: 12,
        k: [3, 3],
        stride: [1, 1],
        padding: [(1, 1); 2],
        dilation: [1, 1],
        bias: false,
    },
    Case {
        batch: 3,
        channels: 8,
        h: 12,
        w: 12,
        k: [3, 3],
        stride: [2, 2],
        padding: [(1, 1); 2],
        dilation: [1, 1],
        bias: true,
    },
    // Odd sizes, no padding, batch 1.
    Case {
        batch: 1,
        channels: 5,
        h: 7,
        w: 9,
        k: [3, 3],
        stride: [1, 1],
        padding: [(0, 0); 2],
        dilation: [1, 1],
        bias: true,
    },
    Case {
        batch: 1,
        channels: 5,
        h: 7,
        w: 9,
        k: [3, 3],
        stride: [2, 2],
        padding: [(0, 0); 2],
        dilation: [1, 1],
        bias: false,
    },
    // Dilation 2 with padding 2 (DeepLab's atrous depthwise).
    Case {
        batch: 3,
        channels: 4,
        h: 9,
        w: 7,
        k: [3, 3],
        stride: [1, 1],
        padding: [(2, 2); 2],
        dilation: [2, 2],
        bias: true,
    },
    // 5x5 (MobileNetV3 / EfficientNet), padding 2, stride 2, odd size.
    Case {
        batch: 2,
        channels: 6,
        h: 11,
        w: 13,
        k: [5, 5],
        stride: [2, 2],
        padding: [(2, 2); 2],
        dilation: [1, 1],
        bias: false,
    },
    // Asymmetric padding and a non-square kernel.
    Case {
        batch: 1,
        channels: 3,
        h: 8,
        w: 10,
        k: [3, 5],
        stride: [2, 1],
        padding: [(0, 1), (2, 1)],
        dilation: [1, 2],
        bias: true,
    },
];

fn check(name: &str, device: &Device, c: Case) {
    let ad = device.clone().autodiff();
    let opts = ConvOptions::new_with_padding(c.stride, c.padding, c.dilation, c.channels);
    let x0 = tensor([c.batch, c.channels, c.h, c.w], 1, &ad);
    let w0 = tensor([c.channels, 1, c.k[0], c.k[1]], 2, &ad);
    let b0 = tensor([c.channels], 3, &ad);
    let leaves =
        || (x0.clone().detach().require_grad(), w0.clone().detach().require_grad(), b0.clone().detach().require_grad());

    let (xr, wr, br) = leaves();
    let yr = burn::tensor::module::conv2d(xr.clone(), wr.clone(), c.bias.then(|| br.clone()), opts.clone());
    let (xk, wk, bk) = leaves();
    let before = depthwise_cpu::calls();
    let yk = kiln_kernels::depthwise_conv2d(xk.clone(), wk.clone(), c.bias.then(|| bk.clone()), opts.clone());
    assert!(depthwise_cpu::calls() > before, "{name} {c:?}: the kernel path was not taken");
    let what = format!("{name} {c:?}");
    assert_close(&format!("{what} forward"), yk.clone().inner(), yr.clone().inner());

    // A non-uniform upstream gradient, so that every gradient term is exercised.
    let g = tensor(yr.dims(), 4, &ad);
    let gr = (yr * g.clone()).sum().backward();
    let gk = (yk * g).sum().backward();
    assert_close(&format!("{what} input grad"), xk.grad(&gk).unwrap(), xr.grad(&gr).unwrap());
    assert_close(&format!("{what} weight grad"), wk.grad(&gk).unwrap(), wr.grad(&gr).unwrap());
    if c.bias {
        assert_close(&format!("{what} bias grad"), bk.grad(&gk).unwrap(), br.grad(&gr).unwrap());
    } else {
        assert!(bk.grad(&gk).is_none());
    }
}

#[test]
fn matches_burn_conv2d_forward_and_gradients() {
    for (name, device) in devices() {
        for &c in CASES {
            check(name, &device, c);
        }
    }
}

#[test]
fn forward_without_autodiff_matches_burn() {
    for (name, device) in devices() {
        for &c in CASES {
            let opts = ConvOptions::new_with_padding(c.stride, c.padding, c.dilation, c.channels);
            let x = tensor([c.batch, c.channels, c.h, c.w], 5, &device);
            let w = tensor([c.channels, 1, c.k[0], c.k[1]], 6, &device);
            let b = c.bias.then(|| tensor([c.channels], 7, &device));
            let want = burn::tensor::module::conv2d(x.clone(), w.clone(), b.clone(), opts.clone());
            let got = kiln_kernels::depthwise_conv2d(x, w, b, opts);
            assert_close(&format!("{name} {c:?} inference forward"), got, want);
        }
    }
}

#[test]
fn module_wrapper_resolves_padding_like_burn() {
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        for (padding, stride) in [
            (PaddingConfig2d::Same, 1),
            (PaddingConfig2d::Same, 2),
            (PaddingConfig2d::Valid, 2),
            (PaddingConfig2d::Explicit(1, 0, 2, 1), 1),
        ] {
            let conv = Conv2dConfig::new([6, 6], [3, 3])
                .with_groups(6)
                .with_stride([stride, stride])
                .with_padding(padding.clone())
                .init(&ad);
            assert!(kiln_kernels::is_depthwise(&conv));
            let x = tensor([2, 6, 10, 9], 8, &ad);
            let before = depthwise_cpu::calls();
            let got = kiln_kernels::conv2d(&conv, x.clone());
            assert!(depthwise_cpu::calls() > before, "{name} {padding:?}: kernel not used");
            assert_close(&format!("{name} {padding:?} s{stride}"), got.inner(), conv.forward(x).inner());
        }
        // A grouped but not depthwise convolution, and a dense one, go to Burn unchanged.
        for conv in [
            Conv2dConfig::new([6, 6], [3, 3]).with_groups(3).init(&ad),
            Conv2dConfig::new([6, 12], [3, 3]).with_groups(6).init(&ad),
            Conv2dConfig::new([6, 4], [1, 1]).init(&ad),
        ] {
            assert!(!kiln_kernels::is_depthwise(&conv));
            let x = tensor([1, 6, 5, 5], 9, &ad);
            assert_close(
                &format!("{name} non-depthwise"),
                kiln_kernels::conv2d(&conv, x.clone()).inner(),
                conv.forward(x).inner(),
            );
        }
    }
}

#[test]
fn kernels_are_registered_for_flex_and_ndarray_only() {
    for (name, device) in devices() {
        assert!(kiln_kernels::has_kernels(&device), "{name}");
        assert!(kiln_kernels::has_kernels(&device.clone().autodiff()), "{name} autodiff");
    }
}

#[test]
fn bad_configurations_are_errors() {
    let device = Device::flex();
    let x = tensor([1, 4, 6, 6], 1, &device);
    let opts = ConvOptions::new([1, 1], [0, 0], [1, 1], 2);
    let err = kiln_kernels::try_depthwise_conv2d(x.clone(), tensor([4, 2, 3, 3], 2, &device), None, opts).unwrap_err();
    assert!(matches!(err, KernelError::NotDepthwise { groups: 2, .. }), "{err}");
    let opts = ConvOptions::new([1, 1], [0, 0], [4, 4], 4);
    let err = kiln_kernels::try_depthwise_conv2d(x, tensor([4, 1, 3, 3], 2, &device), None, opts).unwrap_err();
    assert!(matches!(err, KernelError::EmptyOutput { .. }), "{err}");
    assert!(err.to_string().contains("empty output"));
}

#[test]
fn pointwise_matmul_matches_burn_conv2d() {
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        for bias in [false, true] {
            let conv = Conv2dConfig::new([6, 4], [1, 1]).with_bias(bias).init(&ad);
            assert!(kiln_kernels::is_pointwise(&conv));
            let x0 = tensor([2, 6, 5, 7], 10, &ad);
            let (xa, xb) = (x0.clone().detach().require_grad(), x0.detach().require_grad());
            let ya = kiln_kernels::pointwise_conv2d(&conv, xa.clone());
            let yb = conv.forward(xb.clone());
            assert_close(&format!("{name} pointwise forward"), ya.clone().inner(), yb.clone().inner());
            let g = tensor(yb.dims(), 11, &ad);
            let ga = (ya * g.clone()).sum().backward();
            let gb = (yb * g).sum().backward();
            assert_close(&format!("{name} pointwise input grad"), xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap());
            assert_close(
                &format!("{name} pointwise weight grad"),
                conv.weight.grad(&ga).unwrap(),
                conv.weight.grad(&gb).unwrap(),
            );
        }
        let strided = Conv2dConfig::new([6, 4], [1, 1]).with_stride([2, 2]).init(&ad);
        assert!(!kiln_kernels::is_pointwise(&strided));
    }
}
