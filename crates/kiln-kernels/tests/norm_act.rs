//! The batch-norm and clamp-activation kernels against Burn's `BatchNorm` and `clamp`: training
//! forward (output, running statistics), input / gamma / beta gradients, inference with a fused
//! activation, ReLU6 forward and backward, on flex and ndarray, within 1e-4 relative.

use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::Device;
use kiln_kernels::norm_act_cpu;

mod common;
use common::{assert_close, devices, scaled as tensor};

/// A batch norm with non-trivial gamma / beta / running statistics.
fn bn(c: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).with_momentum(0.3).init(device);
    bn.gamma = Param::from_tensor(tensor([c], 1, 0.5, 1.0, device));
    bn.beta = Param::from_tensor(tensor([c], 2, 1.0, 0.0, device));
    bn.running_mean = RunningState::new(tensor([c], 3, 0.5, 0.0, device));
    bn.running_var = RunningState::new(tensor([c], 4, 0.4, 1.0, device));
    bn
}

const SHAPES: &[[usize; 4]] = &[[4, 6, 7, 9], [1, 3, 5, 5], [3, 16, 1, 1], [2, 32, 40, 40]];

#[test]
fn batch_norm_training_matches_burn() {
    for (name, base) in devices() {
        let device = base.clone().autodiff();
        for (i, &shape) in SHAPES.iter().enumerate() {
            let c = shape[1];
            let what = format!("{name} {shape:?}");
            // Inputs with a large mean: the centred variance must not lose precision.
            let x = tensor(shape, 10 + i as u64, 2.0, 3.0, &device);
            let g = tensor(shape, 20 + i as u64, 1.0, 0.2, &device);
            let (ours_bn, ref_bn) = (bn(c, &device), bn(c, &device));

            let before = norm_act_cpu::calls();
            let xa = x.clone().require_grad();
            let ya = kiln_kernels::batch_norm(&ours_bn, xa.clone());
            let grads_a = (ya.clone() * g.clone()).sum().backward();
            assert!(norm_act_cpu::calls() >= before + 2, "{what}: the kernel path was not taken");

            let xb = x.clone().require_grad();
            let yb = ref_bn.forward(xb.clone());
            let grads_b = (yb.clone() * g.clone()).sum().backward();

            assert_close(&format!("{what} output"), ya, yb);
            assert_close(&format!("{what} dx"), xa.grad(&grads_a).unwrap(), xb.grad(&grads_b).unwrap());
            assert_close(
                &format!("{what} dgamma"),
                ours_bn.gamma.val().grad(&grads_a).unwrap(),
                ref_bn.gamma.val().grad(&grads_b).unwrap(),
            );
            assert_close(
                &format!("{what} dbeta"),
                ours_bn.beta.val().grad(&grads_a).unwrap(),
                ref_bn.beta.val().grad(&grads_b).unwrap(),
            );
            assert_close(&format!("{what} running mean"), ours_bn.running_mean.value(), ref_bn.running_mean.value());
            assert_close(&format!("{what} running var"), ours_bn.running_var.value(), ref_bn.running_var.value());
        }
    }
}

#[test]
fn batch_norm_training_then_relu6_matches_burn() {
    for (name, base) in devices() {
        let device = base.clone().autodiff();
        let shape = [3, 5, 6, 6];
        let x = tensor(shape, 7, 3.0, 0.5, &device);
        let g = tensor(shape, 8, 1.0, 0.0, &device);
        let (ours_bn, ref_bn) = (bn(5, &device), bn(5, &device));
        let xa = x.clone().require_grad();
        let ya = kiln_kernels::batch_norm_act(&ours_bn, xa.clone(), 0.0, 6.0);
        let grads_a = (ya.clone() * g.clone()).sum().backward();
        let xb = x.require_grad();
        let yb = ref_bn.forward(xb.clone()).clamp(0.0, 6.0);
        let grads_b = (yb.clone() * g).sum().backward();
        assert_close(&format!("{name} output"), ya, yb);
        assert_close(&format!("{name} dx"), xa.grad(&grads_a).unwrap(), xb.grad(&grads_b).unwrap());
    }
}

#[test]
fn batch_norm_inference_with_activation_matches_burn() {
    for (name, device) in devices() {
        for (i, &shape) in SHAPES.iter().enumerate() {
            let c = shape[1];
            let m = bn(c, &device);
            let x = tensor(shape, 30 + i as u64, 3.0, 0.5, &device);
            let reference = m.forward(x.clone());
            let before = norm_act_cpu::calls();
            assert_close(&format!("{name} {shape:?} none"), kiln_kernels::batch_norm(&m, x.clone()), reference.clone());
            assert!(norm_act_cpu::calls() > before, "{name}: the kernel path was not taken");
            assert_close(
                &format!("{name} {shape:?} relu"),
                kiln_kernels::batch_norm_act(&m, x.clone(), 0.0, f32::INFINITY),
                reference.clone().clamp_min(0.0),
            );
            assert_close(
                &format!("{name} {shape:?} relu6"),
                kiln_kernels::batch_norm_act(&m, x, 0.0, 6.0),
                reference.clamp(0.0, 6.0),
            );
        }
    }
}

#[test]
fn batch_norm_of_a_validation_snapshot_uses_running_statistics() {
    use burn::module::Module;
    for (name, base) in devices() {
        let m = bn(4, &base.clone().autodiff()).valid();
        let x = tensor([2, 4, 3, 3], 5, 1.0, 0.0, &base);
        assert_close(name, kiln_kernels::batch_norm(&m, x.clone()), m.forward(x));
    }
}

#[test]
fn relu6_forward_and_backward_match_burn() {
    for (name, base) in devices() {
        let device = base.autodiff();
        // Large enough to be split over threads; values span both bounds.
        for shape in [[2, 3, 4, 5], [4, 16, 32, 33]] {
            let x = tensor(shape, 40, 8.0, 2.0, &device);
            let g = tensor(shape, 41, 1.0, 0.0, &device);
            let before = norm_act_cpu::calls();
            let xa = x.clone().require_grad();
            let ya = kiln_kernels::relu6(xa.clone());
            let grads_a = (ya.clone() * g.clone()).sum().backward();
            assert!(norm_act_cpu::calls() >= before + 2, "{name}: the kernel path was not taken");
            let xb = x.require_grad();
            let yb = xb.clone().clamp(0.0, 6.0);
            let grads_b = (yb.clone() * g).sum().backward();
            assert_close(&format!("{name} {shape:?} relu6"), ya, yb);
            assert_close(&format!("{name} {shape:?} relu6 dx"), xa.grad(&grads_a).unwrap(), xb.grad(&grads_b).unwrap());
        }
    }
}

#[test]
fn ops_on_plain_devices_and_rank_2() {
    for (name, device) in devices() {
        let x = tensor([5, 7], 50, 8.0, 0.0, &device);
        assert_close(name, kiln_kernels::relu6(x.clone()), x.clamp(0.0, 6.0));
    }
}
