//! kiln's max-pool kernel against Burn's `MaxPool2d`: forward values and input gradients, on
//! flex and ndarray, with and without autodiff, for LeNet's 2x2, ResNet's 3x3 / 2 / 1, odd
//! sizes, `Same` padding with an even kernel, dilation and ties.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};
use kiln_kernels::pool;

mod common;
use common::{devices, tensor};

/// The kernel-call counter is process-wide: tests that read it run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// (input, pool)
fn cases() -> Vec<([usize; 4], MaxPool2d)> {
    vec![
        // LeNet-5 after each convolution.
        ([32, 6, 28, 28], MaxPool2dConfig::new([2, 2]).init()),
        ([3, 16, 10, 10], MaxPool2dConfig::new([2, 2]).init()),
        // 2x2 / 2 on odd sizes: the last row and column belong to no window (their gradient is 0);
        // with ceil_mode they form partial windows (the general path).
        ([2, 3, 7, 9], MaxPool2dConfig::new([2, 2]).init()),
        ([2, 3, 7, 9], MaxPool2dConfig::new([2, 2]).with_ceil_mode(true).init()),
        // ResNet / ShuffleNet stems: 3x3, stride 2, padding 1, odd and even sizes.
        (
            [2, 4, 17, 16],
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
        ),
        // stride 1, rectangular kernel, odd sizes that leave a remainder.
        ([1, 3, 9, 7], MaxPool2dConfig::new([3, 2]).with_strides([1, 3]).init()),
        // `Same` padding with an even kernel (asymmetric pairs).
        ([2, 2, 7, 8], MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).with_padding(PaddingConfig2d::Same).init()),
        // SqueezeNet's ceil_mode: 3x3 / 2 on 13x13 and 14x14 (a partial last window), and a
        // padded case where the rounded-up window would start in the trailing padding.
        ([1, 3, 13, 13], MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_ceil_mode(true).init()),
        ([2, 3, 14, 14], MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_ceil_mode(true).init()),
        (
            [1, 2, 6, 5],
            MaxPool2dConfig::new([2, 2])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_ceil_mode(true)
                .init(),
        ),
        // dilation 2.
        ([1, 2, 11, 12], MaxPool2dConfig::new([3, 3]).with_strides([2, 1]).with_dilation([2, 2]).init()),
    ]
}

#[test]
fn forward_and_gradient_match_burn() {
    let _serial = serial();
    for (name, base) in devices() {
        for (i, (shape, pool)) in cases().into_iter().enumerate() {
            let what = format!("{name} case {i} {shape:?}");
            // Without autodiff: identical values (a max is exact).
            let x = tensor(shape, 10 + i as u64, &base);
            let before = pool::calls();
            let yk = kiln_kernels::max_pool2d(&pool, x.clone());
            assert!(pool::calls() > before, "{what}: the kernel path was not taken");
            let yr = pool.forward(x);
            assert_eq!(yk.dims(), yr.dims(), "{what}: shape");
            assert_eq!(vec(yk), vec(yr), "{what}: forward");

            // With autodiff: the same values, and the gradient lands on the same elements.
            let ad = base.clone().autodiff();
            let xr = tensor(shape, 10 + i as u64, &ad).require_grad();
            let xk = tensor(shape, 10 + i as u64, &ad).require_grad();
            let yr = pool.forward(xr.clone());
            let yk = kiln_kernels::max_pool2d(&pool, xk.clone());
            let g = tensor(yr.dims(), 20 + i as u64, &ad);
            assert_eq!(vec(yk.clone().inner()), vec(yr.clone().inner()), "{what}: autodiff forward");
            let gr = (yr * g.clone()).sum().backward();
            let before = pool::calls();
            let gk = (yk * g).sum().backward();
            assert!(pool::calls() > before, "{what}: the kernel backward was not taken");
            let (dk, dr) = (vec(xk.grad(&gk).unwrap()), vec(xr.grad(&gr).unwrap()));
            let worst = dk.iter().zip(&dr).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{what}: dx differs by {worst}");
        }
    }
}

#[test]
fn ties_go_to_the_first_maximum_like_pytorch() {
    let _serial = serial();
    // A constant map: every window ties; PyTorch (and Burn's flex) give the gradient to the
    // first element of each window in row-major order.
    let device = Device::flex().autodiff();
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let x = Tensor::<4>::ones([1, 1, 4, 4], &device).require_grad();
    let y = kiln_kernels::max_pool2d(&pool, x.clone());
    assert_eq!(vec(y.clone().inner()), vec![1.0; 4]);
    let grads = y.sum().backward();
    let dx = vec(x.grad(&grads).unwrap());
    #[rustfmt::skip]
    let expected = vec![
        1.0, 0.0, 1.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.0, 0.0, 1.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(dx, expected);
}

#[test]
fn other_backends_fall_back_to_burn() {
    let _serial = serial();
    // Kernels off: Burn's path, the same values.
    let device = Device::flex();
    let pool = MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
    let x = tensor([1, 2, 8, 8], 7, &device);
    kiln_kernels::set_enabled(false);
    let before = pool::calls();
    let y = kiln_kernels::max_pool2d(&pool, x.clone());
    let after = pool::calls();
    kiln_kernels::set_enabled(true);
    assert_eq!(after, before, "kernels off takes Burn's path");
    assert_eq!(vec(y), vec(pool.forward(x)));
}

#[test]
fn nan_wins_its_window_and_takes_the_gradient() {
    let _serial = serial();
    // PyTorch propagates NaN through max pooling; the gradient goes to the first NaN.
    for (name, base) in devices() {
        let device = base.autodiff();
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let nan = f32::NAN;
        let values = vec![1.0, nan, 3.0, 4.0, nan, 2.0, 5.0, 6.0];
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [1, 1, 2, 4]), &device).require_grad();
        let y = kiln_kernels::max_pool2d(&pool, x.clone());
        let out = vec(y.clone().inner());
        assert!(out[0].is_nan() && out[1] == 6.0, "{name}: {out:?}");
        let grads = y.sum().backward();
        let dx = vec(x.grad(&grads).unwrap());
        assert_eq!(dx, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "{name}");
    }
}

#[test]
fn pooling_indices_match_burn() {
    let _serial = serial();
    use burn::tensor::module::max_pool2d_with_indices;
    use burn::tensor::ops::MaxPoolOptions;
    // (input, kernel, stride, padding): SegNet's 2x2 / 2, odd sizes, 3x3 / 2 / 1, a constant map (all ties).
    let cases = [
        ([2, 4, 8, 8], [2, 2], [2, 2], [0, 0]),
        ([1, 3, 7, 9], [2, 2], [2, 2], [0, 0]),
        ([2, 2, 9, 8], [3, 3], [2, 2], [1, 1]),
        ([1, 2, 6, 7], [3, 2], [1, 2], [1, 0]),
    ];
    for (name, base) in devices() {
        for (i, (shape, k, s, p)) in cases.into_iter().enumerate() {
            let what = format!("{name} case {i} {shape:?} k{k:?} s{s:?} p{p:?}");
            // Coarse values (multiples of 0.25) so that windows have ties.
            let x = (tensor(shape, 40 + i as u64, &base) * 4.0).round() / 4.0;
            let opts = MaxPoolOptions::new(k).with_stride(s).with_padding_pairs([(p[0], p[0]), (p[1], p[1])]);
            let (yr, ir) = max_pool2d_with_indices(x.clone(), opts);
            let before = pool::calls();
            let (yk, ik) = kiln_kernels::max_pool2d_with_indices(x, k, s, p);
            assert!(pool::calls() > before, "{what}: the kernel path was not taken");
            assert_eq!(vec(yk), vec(yr), "{what}: values");
            assert_eq!(ik.into_data().convert::<i64>(), ir.into_data().convert::<i64>(), "{what}: indices");
        }
    }
    // Under autodiff: the values carry the kernel's gradient, the indices are constants.
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::ones([1, 1, 4, 4], &device).require_grad();
    let (y, idx) = kiln_kernels::max_pool2d_with_indices(x.clone(), [2, 2], [2, 2], [0, 0]);
    assert_eq!(idx.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), vec![0, 2, 8, 10]);
    let dx = vec(x.grad(&y.sum().backward()).unwrap());
    assert_eq!(dx.iter().sum::<f32>(), 4.0);
    assert_eq!((dx[0], dx[2], dx[8], dx[10]), (1.0, 1.0, 1.0, 1.0));
}
