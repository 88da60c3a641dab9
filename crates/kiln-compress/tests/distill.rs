//! Knowledge distillation on mnist-5k (flex CPU): a half-width LeNet-5 student distilled from the
//! trained LeNet-5 of `common` beats the same student trained alone (same epochs, data order and
//! initial weights), mean over 3 seeds. In its own test binary: `Device::seed` is process-wide,
//! so students initialised here cannot race with other tests' seeding. Run with `--nocapture` to
//! see the numbers.

mod common;

use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Int, Tensor};
use common::*;
use kiln_compress::{Distill, FinetuneConfig, accuracy, distillation_loss, finetune};
use kiln_models::lenet::{LeNet5, LeNet5Config};

/// A half-width LeNet-5 (conv 3 / 8, fc 60 / 42) with every layer freshly initialised for its own
/// fan-in (PyTorch's default init), the weights drawn from `seed`.
///
/// Not a channel-pruned random LeNet-5: pruning keeps the largest-L1 random filters of the wide
/// layers, whose init is scaled for twice the fan-in. Distillation lost to training alone from
/// that start, in kiln and in PyTorch alike (see the README).
fn student(seed: u64, device: &Device) -> LeNet5 {
    kiln_layers::seeded(device, seed, || {
        let mut m = LeNet5Config::new().init(device);
        let (c1, c2, f1, f2) = (3, 8, 60, 42);
        m.conv1 = Conv2dConfig::new([1, c1], [5, 5]).with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)).init(device);
        m.conv2 = Conv2dConfig::new([c1, c2], [5, 5]).init(device);
        m.fc1 = LinearConfig::new(c2 * 5 * 5, f1).init(device);
        m.fc2 = LinearConfig::new(f1, f2).init(device);
        m.fc3 = LinearConfig::new(f2, 10).init(device);
        m
    })
}

const TRAIN_IMAGES: usize = 300;
const EPOCHS: usize = 30;
const ALPHA: f64 = 0.1;
const TEMPERATURE: f64 = 4.0;

/// The setup: the teacher (LeNet-5 trained on the 4,000 training images, ~0.966), a half-width
/// student trained on the first 300 images (few labels: where distillation helps most) for 30
/// epochs (Adam 2e-3, batch 32), alone or with Hinton's loss (alpha 0.1, T 4); seeds 1, 2, 3 set
/// the initial weights and the data order of both runs.
#[test]
fn distilled_student_beats_the_student_trained_alone() {
    let teacher = trained_lenet();
    let device = train_device();
    let flex = Device::flex();
    let test = &data().1;
    let teacher_acc = accuracy(&teacher.valid(), test, 250, &flex);
    let train = data().0.subset(&(0..TRAIN_IMAGES).collect::<Vec<_>>()).unwrap();
    let distill = |alpha: f64| Distill { teacher: teacher.valid(), alpha, temperature: TEMPERATURE, hint_weight: 0.0 };
    let (mut alone, mut kd) = (vec![], vec![]);
    for seed in [1u64, 2, 3] {
        let cfg = FinetuneConfig { epochs: EPOCHS, batch: 32, lr: 2e-3, seed };
        let (s, _) = finetune::<_, LeNet5>(student(seed, &device), &train, &cfg, None, &device);
        alone.push(accuracy(&s.valid(), test, 250, &flex));
        let (s, _) = finetune(student(seed, &device), &train, &cfg, Some(&distill(ALPHA)), &device);
        kd.push(accuracy(&s.valid(), test, 250, &flex));
        if seed == 1 {
            // alpha = 1 is exactly training on the labels.
            let (s, _) = finetune(student(seed, &device), &train, &cfg, Some(&distill(1.0)), &device);
            assert_eq!(accuracy(&s.valid(), test, 250, &flex), alone[0], "alpha = 1 is plain cross-entropy training");
        }
        eprintln!("seed {seed}: alone {:.4}, distilled {:.4}", alone.last().unwrap(), kd.last().unwrap());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mk) = (mean(&alone), mean(&kd));
    eprintln!(
        "teacher {teacher_acc:.4}; half-width student, {TRAIN_IMAGES} images x {EPOCHS} epochs: alone {alone:?} mean {ma:.4}; distilled (alpha {ALPHA}, T {TEMPERATURE}) {kd:?} mean {mk:.4} ({:+.4})",
        mk - ma
    );
    assert!(teacher_acc > 0.95, "teacher {teacher_acc}");
    assert!(mk > ma, "distilled mean {mk} vs alone {ma}");
}

#[test]
fn distillation_loss_and_its_gradient_match_pytorch() {
    let device = Device::flex().autodiff();
    let s = Tensor::<2>::from_data([[1.0f32, 2.0, 0.5], [0.1, -1.0, 2.0]], &device).require_grad();
    let t = Tensor::<2>::from_data([[2.0f32, 1.0, 0.0], [0.5, 0.2, 1.5]], &device);
    let y = Tensor::<1, Int>::from_data([1i64, 2], &device);
    // torch: l = 0.3*F.cross_entropy(s,y) + 0.7*9*F.kl_div(F.log_softmax(s/3,1), F.softmax(t/3,1),
    // reduction="batchmean"); l.backward(); s.grad
    let loss = distillation_loss(s.clone(), t.clone(), y.clone(), 0.3, 3.0);
    let v = loss.clone().into_scalar::<f32>();
    assert!((v - 0.322_471_7).abs() < 1e-5, "{v}");
    let grads = loss.backward();
    let g = s.grad(&grads).unwrap().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let want = [-0.112_314_55f32, 0.058_881_43, 0.053_433_19, -0.005_883_75, -0.078_195_71, 0.084_079_43];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "gradient {g:?} vs torch {want:?}");
    }
    // alpha = 1 is plain cross-entropy (torch: 0.3230767).
    let ce = distillation_loss(s.inner(), t.inner(), y.inner(), 1.0, 3.0).into_scalar::<f32>();
    assert!((ce - 0.323_076_7).abs() < 1e-5, "{ce}");
}
