//! 2-D max unpooling (PyTorch's `MaxUnpool2d`) as a Burn backend extension. Through Burn it is a
//! `scatter` of each pooled value to its index, which flex runs element by element with its
//! general indexing machinery (8x64x28x28 -> 56x56: ~10 ms, 4x the pooling before it). Here
//! each `(n, c)` plane is one parallel task: zero the output plane and write the values at their
//! indices; the backward pass gathers the output gradient at the same indices.

// burn-ndarray is deprecated in Burn 0.22; kiln keeps supporting it (and registers the kernel for it).
#![allow(deprecated)]

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension};
use rayon::prelude::*;

#[cfg(feature = "flex")]
use burn::backend::Flex;
#[cfg(feature = "ndarray")]
use burn::backend::NdArray;

use crate::extension::CpuF32;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many times the unpooling kernels ran in this process (tests use it to prove that a call
/// took the kernel path).
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// Max unpooling on backends with a direct kernel: `x` and `indices` `[N, C, H, W]` (`f32`
/// values, indices into `OH x OW` planes, each below 2^24; the public wrapper checks shapes).
#[allow(deprecated)]
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait MaxUnpoolBackend: Backend {
    /// `[N, C, OH, OW]`: zeros, with `x`'s values at `indices`. Panics on an index outside the
    /// output plane (they come from the matching max pool).
    fn kiln_max_unpool2d(x: FloatTensor<Self>, indices: IntTensor<Self>, out: [usize; 2]) -> FloatTensor<Self>;

    /// The gradient with respect to `x` (`input` is its shape): `grad` gathered at `indices`.
    fn kiln_max_unpool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        input: [usize; 4],
    ) -> FloatTensor<Self>;
}

fn check(i: f32, plane: usize, out: [usize; 2]) -> usize {
    let k = i as usize;
    assert!(
        i >= 0.0 && k < plane,
        "max unpool: index {i} is outside the {}x{} output plane (indices must come from the max pool whose output is being unpooled, with the same output size)",
        out[0],
        out[1]
    );
    k
}

fn forward(dims: [usize; 4], out: [usize; 2], x: &[f32], idx: &[f32]) -> Vec<f32> {
    let [_, _, h, w] = dims;
    let (hw, plane) = (h * w, out[0] * out[1]);
    let mut y = vec![0.0f32; x.len() / hw.max(1) * plane];
    if hw == 0 || plane == 0 {
        return y;
    }
    y.par_chunks_mut(plane).zip(x.par_chunks(hw).zip(idx.par_chunks(hw))).for_each(|(yp, (xp, ip))| {
        for (&v, &i) in xp.iter().zip(ip) {
            yp[check(i, plane, out)] = v;
        }
    });
    y
}

fn backward(input: [usize; 4], out: [usize; 2], grad: &[f32], idx: &[f32]) -> Vec<f32> {
    let [_, _, h, w] = input;
    let (hw, plane) = (h * w, out[0] * out[1]);
    let mut dx = vec![0.0f32; input.iter().product()];
    if hw == 0 || plane == 0 {
        return dx;
    }
    dx.par_chunks_mut(hw).zip(grad.par_chunks(plane).zip(idx.par_chunks(hw))).for_each(|(dp, (gp, ip))| {
        for (d, &i) in dp.iter_mut().zip(ip) {
            *d = gp[check(i, plane, out)];
        }
    });
    dx
}

macro_rules! cpu_impl {
    ($backend:ty, $feature:literal) => {
        #[cfg(feature = $feature)]
        #[allow(deprecated)]
        impl MaxUnpoolBackend for $backend {
            fn kiln_max_unpool2d(x: FloatTensor<Self>, indices: IntTensor<Self>, out: [usize; 2]) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let dims = Self::dims4(&x);
                let idx = <Self as burn::backend::ops::IntTensorOps<Self>>::int_into_float(
                    indices,
                    burn::tensor::FloatDType::F32,
                );
                let y = Self::with_f32(&x, |xs| Self::with_f32(&idx, |is| forward(dims, out, xs, is)));
                Self::from_f32(y, &[dims[0], dims[1], out[0], out[1]])
            }

            fn kiln_max_unpool2d_backward(
                grad: FloatTensor<Self>,
                indices: IntTensor<Self>,
                input: [usize; 4],
            ) -> FloatTensor<Self> {
                CALLS.fetch_add(1, Ordering::Relaxed);
                let gd = Self::dims4(&grad);
                let idx = <Self as burn::backend::ops::IntTensorOps<Self>>::int_into_float(
                    indices,
                    burn::tensor::FloatDType::F32,
                );
                let dx = Self::with_f32(&grad, |gs| Self::with_f32(&idx, |is| backward(input, [gd[2], gd[3]], gs, is)));
                Self::from_f32(dx, &input)
            }
        }
    };
}

cpu_impl!(Flex, "flex");
cpu_impl!(NdArray, "ndarray");

#[derive(Debug)]
struct Unpool;

impl<B: Backend + MaxUnpoolBackend> Backward<B, 1> for Unpool {
    // The indices and the input shape: the map is linear in x.
    type State = (IntTensor<B>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (indices, input) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::kiln_max_unpool2d_backward(grad, indices, input));
        }
    }
}

impl<B: Backend + MaxUnpoolBackend, C: CheckpointStrategy> MaxUnpoolBackend for Autodiff<B, C> {
    fn kiln_max_unpool2d(x: FloatTensor<Self>, indices: IntTensor<Self>, out: [usize; 2]) -> FloatTensor<Self> {
        let shape = burn::backend::TensorMetadata::shape(x.primitive()).to_vec();
        let input = [shape[0], shape[1], shape[2], shape[3]];
        match Unpool.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::kiln_max_unpool2d(x.into_primitive(), indices.clone(), out);
                prep.finish((indices, input), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::kiln_max_unpool2d(x.into_primitive(), indices, out)),
        }
    }

    fn kiln_max_unpool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        input: [usize; 4],
    ) -> FloatTensor<Self> {
        Self::from_inner(B::kiln_max_unpool2d_backward(grad.into_primitive(), indices, input))
    }
}
