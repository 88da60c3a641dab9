//! Batch norm (training and inference, with a fused clamp activation) and clamp activations
//! (ReLU6) as a Burn backend extension: [`NormActBackend`] is implemented for `Flex` and `NdArray`
//! with the loops of [`crate::norm_act_cpu`], and for `Autodiff<B, C>` with hand-written backward
//! passes that call the same loops.

// burn-ndarray is deprecated in Burn 0.22; kiln keeps supporting it (and registers the kernel for it).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, AutodiffBackend, Backend, backend_extension, tensor::FloatTensor};

#[cfg(feature = "flex")]
use burn::backend::Flex;
#[cfg(feature = "ndarray")]
use burn::backend::NdArray;

use crate::extension::CpuF32;
use crate::norm_act_cpu as cpu;

/// Batch norm and clamp activations on backends with direct kernels. All tensors are `f32`
/// (the public wrappers check it); `x` is `[N, C, ...]`, per-channel tensors are `[C]`.
#[allow(deprecated, clippy::too_many_arguments)]
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait NormActBackend: Backend {
    /// `clamp(x, lo, hi)` (ReLU6: `lo = 0`, `hi = 6`).
    fn clamp_act(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self>;

    /// The gradient of `y = clamp_act(x, lo, hi)` from its output `y`: `grad` where `lo < y < hi`.
    fn clamp_act_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self>;

    /// Inference batch norm with the given statistics, then `clamp(., lo, hi)`, in one pass. Not
    /// differentiable (the autodiff implementation returns an untracked tensor).
    fn bn_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        lo: f32,
        hi: f32,
    ) -> FloatTensor<Self>;

    /// Training batch norm: `(output, batch mean, biased batch variance)`.
    fn bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of [`NormActBackend::bn_train`]: `(dx, dgamma, dbeta)`.
    fn bn_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn check_f32<B: CpuF32>(ts: &[&FloatTensor<B>]) {
    assert!(ts.iter().all(|t| B::is_f32(t)), "kiln norm / activation kernels take f32 tensors");
}

fn vec_f32<B: CpuF32>(t: &FloatTensor<B>) -> Vec<f32> {
    B::with_f32(t, |s| s.to_vec())
}

macro_rules! cpu_impl {
    ($backend:ty, $feature:literal) => {
        #[cfg(feature = $feature)]
        #[allow(deprecated)]
        impl NormActBackend for $backend {
            fn clamp_act(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self> {
                check_f32::<Self>(&[&x]);
                let shape = Self::dims(&x);
                let out = Self::with_f32(&x, |xs| cpu::clamp(xs, lo, hi));
                Self::from_f32(out, &shape)
            }

            fn clamp_act_backward(
                y: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                lo: f32,
                hi: f32,
            ) -> FloatTensor<Self> {
                check_f32::<Self>(&[&y, &grad]);
                let shape = Self::dims(&y);
                let out = Self::with_f32(&y, |ys| Self::with_f32(&grad, |gs| cpu::clamp_backward(ys, gs, lo, hi)));
                Self::from_f32(out, &shape)
            }

            fn bn_act(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                mean: FloatTensor<Self>,
                var: FloatTensor<Self>,
                eps: f64,
                lo: f32,
                hi: f32,
            ) -> FloatTensor<Self> {
                check_f32::<Self>(&[&x, &gamma, &beta, &mean, &var]);
                let shape = Self::dims(&x);
                let (_, c, plane) = cpu::ncp(&shape);
                let (scale, shift) = cpu::bn_scale_shift(
                    &vec_f32::<Self>(&gamma),
                    &vec_f32::<Self>(&beta),
                    &vec_f32::<Self>(&mean),
                    &vec_f32::<Self>(&var),
                    eps,
                );
                let out = Self::with_f32(&x, |xs| cpu::bn_apply(xs, c, plane, &scale, &shift, lo, hi));
                Self::from_f32(out, &shape)
            }

            fn bn_train(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                eps: f64,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                check_f32::<Self>(&[&x, &gamma, &beta]);
                let shape = Self::dims(&x);
                let (n, c, plane) = cpu::ncp(&shape);
                let (gamma, beta) = (vec_f32::<Self>(&gamma), vec_f32::<Self>(&beta));
                let (out, mean, var) =
                    Self::with_f32(&x, |xs| cpu::bn_train_forward(xs, n, c, plane, &gamma, &beta, eps));
                (Self::from_f32(out, &shape), Self::from_f32(mean, &[c]), Self::from_f32(var, &[c]))
            }

            fn bn_train_backward(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                mean: FloatTensor<Self>,
                var: FloatTensor<Self>,
                eps: f64,
                grad: FloatTensor<Self>,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                check_f32::<Self>(&[&x, &gamma, &mean, &var, &grad]);
                let shape = Self::dims(&x);
                let (n, c, plane) = cpu::ncp(&shape);
                let (gamma, mean, var) = (vec_f32::<Self>(&gamma), vec_f32::<Self>(&mean), vec_f32::<Self>(&var));
                let (dx, dgamma, dbeta) = Self::with_f32(&x, |xs| {
                    Self::with_f32(&grad, |gs| cpu::bn_train_backward(xs, gs, n, c, plane, &gamma, &mean, &var, eps))
                });
                (Self::from_f32(dx, &shape), Self::from_f32(dgamma, &[c]), Self::from_f32(dbeta, &[c]))
            }
        }
    };
}

cpu_impl!(Flex, "flex");
cpu_impl!(NdArray, "ndarray");

#[derive(Debug)]
struct ClampAct;

impl<B: Backend + NormActBackend> Backward<B, 1> for ClampAct {
    // The output (the mask is `lo < y < hi`) and the bounds.
    type State = (FloatTensor<B>, f32, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (y, lo, hi) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::clamp_act_backward(y, grad, lo, hi));
        }
    }
}

#[derive(Debug)]
struct BatchNormTrain;

impl<B: Backend + NormActBackend> Backward<B, 3> for BatchNormTrain {
    // x and gamma (checkpointed), the batch mean and variance, epsilon.
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, var, eps) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let (dx, dgamma, dbeta) = B::bn_train_backward(x, gamma, mean, var, eps, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

impl<B: Backend + NormActBackend, C: CheckpointStrategy> NormActBackend for Autodiff<B, C> {
    fn clamp_act(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self> {
        match ClampAct.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::clamp_act(x.into_primitive(), lo, hi);
                prep.finish((y.clone(), lo, hi), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::clamp_act(x.into_primitive(), lo, hi)),
        }
    }

    // The gradient ops and the inference batch norm are not themselves differentiated: they
    // compute on the inner backend and return untracked tensors.
    fn clamp_act_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self> {
        Self::from_inner(B::clamp_act_backward(y.into_primitive(), grad.into_primitive(), lo, hi))
    }

    fn bn_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        lo: f32,
        hi: f32,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::bn_act(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            var.into_primitive(),
            eps,
            lo,
            hi,
        ))
    }

    fn bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormTrain.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (out, mean, var) =
                    B::bn_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), eps);
                let out = prep.finish((x_state, gamma_state, mean.clone(), var.clone(), eps), out);
                (out, Self::from_inner(mean), Self::from_inner(var))
            }
            OpsKind::UnTracked(prep) => {
                let (out, mean, var) =
                    B::bn_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), eps);
                (prep.finish(out), Self::from_inner(mean), Self::from_inner(var))
            }
        }
    }

    fn bn_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::bn_train_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            mean.into_primitive(),
            var.into_primitive(),
            eps,
            grad.into_primitive(),
        );
        (Self::from_inner(dx), Self::from_inner(dgamma), Self::from_inner(dbeta))
    }
}
