//! kiln's max-unpool kernel against Burn's scatter (the reference formulation): values and the
//! input gradient, on flex and ndarray, after kiln's pooling with indices; and its error on a
//! bad index.

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor};
use kiln_kernels::unpool;

mod common;
use common::{assert_close, devices, tensor};

fn scatter_unpool(x: Tensor<4>, idx: Tensor<4, Int>, [oh, ow]: [usize; 2]) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    Tensor::<3>::zeros([n, c, oh * ow], &x.device())
        .scatter(2, idx.reshape([n, c, h * w]), x.reshape([n, c, h * w]), IndexingUpdateOp::Assign)
        .reshape([n, c, oh, ow])
}

#[test]
fn unpool_matches_scatter_with_gradients() {
    // (input, kernel = stride, padding, output size): SegNet's 2x2 / 2, odd sizes with an explicit
    // output size (PyTorch's output_size argument), 3x3 / 3 with padding 1.
    let cases = [
        ([2, 4, 8, 8], [2, 2], [0, 0], None),
        ([1, 3, 7, 9], [2, 2], [0, 0], Some([7, 9])),
        ([2, 2, 9, 9], [3, 3], [1, 1], Some([9, 9])),
    ];
    for (name, base) in devices() {
        for (i, (shape, k, p, size)) in cases.into_iter().enumerate() {
            let what = format!("{name} case {i} {shape:?} k{k:?} p{p:?}");
            let ad = base.clone().autodiff();
            let x = tensor(shape, 50 + i as u64, &ad);
            let (pooled, idx) = kiln_kernels::max_pool2d_with_indices(x, k, k, p);
            let [_, _, ph, pw] = pooled.dims();
            let size = size.unwrap_or([ph * k[0] - 2 * p[0], pw * k[1] - 2 * p[1]]);
            let (xk, xr) = (pooled.clone().detach().require_grad(), pooled.detach().require_grad());
            let before = unpool::calls();
            let yk = kiln_kernels::max_unpool2d(xk.clone(), idx.clone(), size);
            let yr = scatter_unpool(xr.clone(), idx, size);
            let g = tensor(yr.dims(), 70 + i as u64, &ad);
            let gk = (yk.clone() * g.clone()).sum().backward();
            assert!(unpool::calls() >= before + 2, "{what}: forward and backward both take the kernel");
            let gr = (yr.clone() * g).sum().backward();
            assert_eq!(yk.clone().inner().into_data(), yr.clone().inner().into_data(), "{what}: values");
            assert_close(&format!("{what}: input gradient"), xk.grad(&gk).unwrap(), xr.grad(&gr).unwrap());
        }
    }
}

#[test]
fn an_index_outside_the_output_is_refused() {
    let device = Device::flex();
    let x = tensor([1, 1, 2, 2], 1, &device);
    let idx = Tensor::<4, Int>::from_data([[[[0i64, 1], [2, 99]]]], &device);
    let err = std::panic::catch_unwind(|| kiln_kernels::max_unpool2d(x, idx, [4, 4])).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("index 99 is outside the 4x4 output plane"), "{msg}");
}
