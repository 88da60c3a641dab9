//! Hand-computed checks of the penalties, DropPath, label smoothing and early stopping.

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use kiln_regularize::*;

fn vec_of<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.try_to_vec_as::<f32>().unwrap()
}

fn scalar(t: &Tensor<1>) -> f64 {
    vec_of(t)[0] as f64
}

fn assert_all_close(got: &[f32], expected: &[f64], tol: f64) {
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!((*g as f64 - e).abs() <= tol, "{got:?} vs {expected:?}");
    }
}

// ---------------------------------------------------------------- penalties

#[derive(Module, Debug)]
struct Net {
    fc: Linear,
    bn: BatchNorm,
    heads: Vec<Linear>,
}

/// fc.weight [[1,-2],[3,-4],[0.5,0.25]], fc.bias [10,-20], bn gamma [2,3] beta [5,6] (running
/// mean 0, var 1), heads.0.weight [[1.5],[-0.5]] (no bias).
fn net(device: &Device) -> Net {
    let mut fc = LinearConfig::new(3, 2).init(device);
    fc.weight = Param::from_tensor(Tensor::from_floats([[1.0, -2.0], [3.0, -4.0], [0.5, 0.25]], device));
    fc.bias = Some(Param::from_tensor(Tensor::from_floats([10.0, -20.0], device)));
    let mut bn = BatchNormConfig::new(2).init(device);
    bn.gamma = Param::from_tensor(Tensor::from_floats([2.0, 3.0], device));
    bn.beta = Param::from_tensor(Tensor::from_floats([5.0, 6.0], device));
    let mut head = LinearConfig::new(2, 1).with_bias(false).init(device);
    head.weight = Param::from_tensor(Tensor::from_floats([[1.5], [-0.5]], device));
    Net { fc, bn, heads: vec![head] }
}

#[test]
fn penalty_values_skip_biases_and_norms_by_default() {
    let device = Device::flex();
    let model = net(&device);
    let default = ParamSelection::default();

    let names: Vec<String> = selected_params(&model, &default).into_iter().map(|p| p.path).collect();
    assert_eq!(names, ["fc.weight", "heads.0.weight"]);
    // |w|: 1+2+3+4+0.5+0.25 = 10.75, + 1.5+0.5 = 12.75
    assert_eq!(scalar(&l1_penalty(&model, &default)), 12.75);
    // w²: 1+4+9+16+0.25+0.0625 = 30.3125, + 2.25+0.25 = 32.8125
    assert_eq!(scalar(&l2_penalty(&model, &default)), 32.8125);

    // Everything: + bias 30 / 500, gamma 5 / 13, beta 11 / 61; running stats are never counted.
    let all = ParamSelection::all();
    let names: Vec<String> = selected_params(&model, &all).into_iter().map(|p| p.path).collect();
    assert_eq!(names, ["fc.weight", "fc.bias", "bn.gamma", "bn.beta", "heads.0.weight"]);
    assert_eq!(scalar(&l1_penalty(&model, &all)), 58.75);
    assert_eq!(scalar(&l2_penalty(&model, &all)), 606.8125);

    // Prefix selections (whole path components).
    assert_eq!(scalar(&l1_penalty(&model, &ParamSelection::new().only("fc"))), 10.75);
    assert_eq!(scalar(&l1_penalty(&model, &ParamSelection::new().skip("heads"))), 10.75);
    assert_eq!(scalar(&l2_penalty(&model, &ParamSelection::all().only("bn"))), 74.0);
    assert_eq!(scalar(&l1_penalty(&model, &ParamSelection::new().only("f"))), 0.0);

    // Elastic net: 0.1 * 12.75 + 0.01 * 32.8125
    let p = WeightPenalty { l1: 0.1, l2: 0.01, selection: default };
    let v = p.penalty(&model);
    assert!((scalar(&v) - 1.603125).abs() < 1e-6);
    assert_eq!(v.dims(), [1]);
    assert_eq!(v.device(), device);
}

#[test]
fn penalty_gradients_are_sign_w_and_2w() {
    let device = Device::flex().autodiff();
    let model = net(&device);
    let w = [1.0, -2.0, 3.0, -4.0, 0.5, 0.25];
    let sign: Vec<f64> = w.iter().map(|v: &f64| v.signum()).collect();
    let two_w: Vec<f64> = w.iter().map(|v| 2.0 * v).collect();

    let grads = l1_penalty(&model, &ParamSelection::default()).backward();
    assert_all_close(&vec_of(&model.fc.weight.val().grad(&grads).unwrap()), &sign, 0.0);
    assert_all_close(&vec_of(&model.heads[0].weight.val().grad(&grads).unwrap()), &[1.0, -1.0], 0.0);
    // Skipped parameters get no gradient from the penalty.
    assert!(model.fc.bias.as_ref().unwrap().val().grad(&grads).is_none());
    assert!(model.bn.gamma.val().grad(&grads).is_none());

    let grads = l2_penalty(&model, &ParamSelection::default()).backward();
    assert_all_close(&vec_of(&model.fc.weight.val().grad(&grads).unwrap()), &two_w, 1e-6);
    assert_all_close(&vec_of(&model.heads[0].weight.val().grad(&grads).unwrap()), &[3.0, -1.0], 1e-6);

    // With biases / norms included, the bias gradient is 2b; added to a data loss, the penalty's
    // gradient adds to the data gradient.
    let x = Tensor::<2>::from_floats([[1.0, 0.0, 0.0]], &device);
    let data = model.fc.forward(x).sum(); // d/dW = e_0 outer 1, d/db = 1
    let loss = data + WeightPenalty::l2(0.5).with_selection(ParamSelection::all()).penalty(&model);
    let grads = loss.backward();
    let mut expected: Vec<f64> = w.to_vec(); // 0.5 * 2w = w
    expected[0] += 1.0;
    expected[1] += 1.0;
    assert_all_close(&vec_of(&model.fc.weight.val().grad(&grads).unwrap()), &expected, 1e-6);
    assert_all_close(&vec_of(&model.fc.bias.as_ref().unwrap().val().grad(&grads).unwrap()), &[11.0, -19.0], 1e-6);
    assert_all_close(&vec_of(&model.bn.beta.val().grad(&grads).unwrap()), &[5.0, 6.0], 1e-6);
}

// ---------------------------------------------------------------- DropPath

#[test]
fn drop_path_is_identity_at_inference() {
    let device = Device::flex();
    let x = Tensor::<4>::random([8, 3, 4, 4], Distribution::Default, &device);
    let dp = DropPathConfig::new(0.5).init();
    assert_eq!(vec_of(&dp.forward(x.clone())), vec_of(&x));

    // On a training device, a layer switched to validation mode is the identity too.
    let ad = Device::flex().autodiff();
    let x = Tensor::<4>::random([8, 3, 4, 4], Distribution::Default, &ad);
    assert_eq!(vec_of(&dp.valid().forward(x.clone())), vec_of(&x));
    assert_eq!(vec_of(&DropPathConfig::new(0.0).init().forward(x.clone())), vec_of(&x));
}

#[test]
fn drop_path_drops_whole_samples_and_preserves_the_mean() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let (n, p) = (4000usize, 0.25);
    let x = Tensor::<3>::ones([n, 3, 2], &device).require_grad();
    let dp = DropPathConfig::new(p).init();
    let y = dp.forward(x.clone());
    let values = vec_of(&y);
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut kept = 0usize;
    for sample in values.chunks_exact(6) {
        // one draw per sample: all 6 elements are equal, 0 or 1 / (1 - p)
        assert!(sample.iter().all(|&v| v == sample[0]), "{sample:?}");
        assert!(sample[0] == 0.0 || (sample[0] - scale).abs() < 1e-6, "{sample:?}");
        kept += (sample[0] != 0.0) as usize;
    }
    let kept_frac = kept as f64 / n as f64;
    // binomial std sqrt(0.75 * 0.25 / 4000) = 0.0068
    assert!((kept_frac - 0.75).abs() < 0.035, "kept {kept_frac}");
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
    // std of the mean sqrt(p / (1 - p) / n) = 0.0091
    assert!((mean - 1.0).abs() < 0.05, "mean {mean}");

    // The gradient is the same per-sample mask.
    let grads = y.sum().backward();
    assert_eq!(vec_of(&x.grad(&grads).unwrap()), values);

    // Without scale_by_keep kept samples stay 1.
    let y = DropPathConfig::new(p).with_scale_by_keep(false).init().forward(Tensor::<2>::ones([64, 2], &device));
    assert!(vec_of(&y).iter().all(|&v| v == 0.0 || v == 1.0));
}

// ---------------------------------------------------------------- label smoothing

const LOGITS: [[f64; 3]; 4] = [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [-0.3, 0.2, 1.7], [1.2, -0.7, 0.3]];
const LABELS: [usize; 4] = [0, 2, 2, 1];

/// The loss by hand in f64: (1 - eps) * -log p_y + eps * mean_c -log p_c, averaged.
fn hand_loss(eps: f64) -> (f64, Vec<f64>) {
    let per: Vec<f64> = LOGITS
        .iter()
        .zip(LABELS)
        .map(|(row, y)| {
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let logp: Vec<f64> = row.iter().map(|v| v - lse).collect();
            (1.0 - eps) * -logp[y] + eps * -(logp.iter().sum::<f64>() / 3.0)
        })
        .collect();
    (per.iter().sum::<f64>() / 4.0, per)
}

#[test]
fn label_smoothing_matches_pytorch() {
    // torch.nn.functional.cross_entropy(logits, [0, 2, 2, 1], label_smoothing=eps) in float64
    let torch = [(0.0, 1.679_692_806_416_305_3), (0.1, 1.667_192_806_416_305_3), (0.25, 1.648_442_806_416_305)];
    let torch_none_01 =
        [0.513_696_682_944_500_2, 3.486_511_540_455_621_3, 0.423_022_378_895_813_2, 2.245_540_623_369_285_6];

    let device = Device::flex();
    let logits = Tensor::<2>::from_floats(LOGITS.map(|r| r.map(|v| v as f32)), &device);
    let labels = Tensor::<1, Int>::from_ints([0, 2, 2, 1], &device);
    for (eps, reference) in torch {
        let (hand, _) = hand_loss(eps);
        assert!((hand - reference).abs() < 1e-12, "hand {hand} vs torch {reference}");
        let loss = LabelSmoothingCrossEntropy::new(eps).unwrap().forward(logits.clone(), labels.clone());
        assert_eq!(loss.dims(), [1]);
        let got = scalar(&loss);
        assert!((got - reference).abs() < 1e-6, "eps {eps}: {got} vs {reference}");
    }
    let per = LabelSmoothingCrossEntropy::new(0.1).unwrap().forward_per_sample(logits.clone(), labels.clone());
    assert_all_close(&vec_of(&per), &torch_none_01, 1e-6);
    assert!((scalar(&label_smoothing_cross_entropy(logits, labels, 0.1)) - torch[1].1).abs() < 1e-6);
    assert!(LabelSmoothingCrossEntropy::new(1.5).is_err());
}

#[test]
fn label_smoothing_gradient_is_softmax_minus_smoothed_target() {
    let device = Device::flex().autodiff();
    let eps = 0.1;
    let logits = Tensor::<2>::from_floats(LOGITS.map(|r| r.map(|v| v as f32)), &device).require_grad();
    let labels = Tensor::<1, Int>::from_ints([0, 2, 2, 1], &device);
    let loss = LabelSmoothingCrossEntropy::new(eps).unwrap().forward(logits.clone(), labels);
    let grads = loss.backward();
    let mut expected = Vec::new();
    for (row, y) in LOGITS.iter().zip(LABELS) {
        let z: f64 = row.iter().map(|v| v.exp()).sum();
        for (c, v) in row.iter().enumerate() {
            let q = if c == y { 1.0 - eps } else { 0.0 } + eps / 3.0;
            expected.push((v.exp() / z - q) / 4.0);
        }
    }
    assert_all_close(&vec_of(&logits.grad(&grads).unwrap()), &expected, 1e-6);
}

// ---------------------------------------------------------------- early stopping

#[test]
fn early_stopping_stops_after_patience() {
    let losses = [1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.97, 0.5];
    let mut es = EarlyStopping::new(Mode::Min, 3);
    let decisions: Vec<StopDecision> = losses.iter().map(|&l| es.step(l)).collect();
    assert_eq!(decisions[0], StopDecision::Improved);
    assert_eq!(decisions[1], StopDecision::Improved);
    assert_eq!(decisions[2], StopDecision::Wait { bad_epochs: 1 });
    assert_eq!(decisions[3], StopDecision::Improved);
    assert_eq!(decisions[4], StopDecision::Wait { bad_epochs: 1 });
    assert_eq!(decisions[5], StopDecision::Wait { bad_epochs: 2 });
    assert_eq!(decisions[6], StopDecision::Stop { best_epoch: 3, best: 0.79 });
    // Once stopped it stays stopped, even if a better value comes.
    assert_eq!(decisions[7], StopDecision::Stop { best_epoch: 3, best: 0.79 });
    assert!(es.should_stop());
    assert_eq!(es.stopped_at(), Some(6));
    assert_eq!(es.best_epoch(), Some(3));

    // min_delta 0.02: 0.79 is not better than 0.8 by more than 0.02.
    let mut es = EarlyStopping::new(Mode::Min, 3).with_min_delta(0.02);
    let stop = losses.iter().position(|&l| es.step(l).should_stop());
    assert_eq!(stop, Some(4));
    assert_eq!((es.best_epoch(), es.best()), (Some(1), Some(0.8)));

    // Max mode (accuracies), NaN never improves, and the state round-trips through serde.
    let mut es = EarlyStopping::new(Mode::Max, 2);
    assert_eq!(es.step(0.5), StopDecision::Improved);
    assert_eq!(es.step(0.6), StopDecision::Improved);
    assert_eq!(es.step(f64::NAN), StopDecision::Wait { bad_epochs: 1 });
    let json = serde_json_like(&es);
    assert!(json.contains("Max"));
    assert_eq!(es.step(0.55), StopDecision::Stop { best_epoch: 1, best: 0.6 });
    es.reset();
    assert_eq!((es.epochs(), es.best(), es.should_stop()), (0, None, false));
    assert_eq!(es.patience, 2);
}

/// Debug rendering (serde_json is not a dependency of this crate; the derive is checked by
/// compilation).
fn serde_json_like<T: serde::Serialize + std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}
