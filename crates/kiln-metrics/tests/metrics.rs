//! Hand-computed checks of every metric and monitor in kiln-metrics.

use burn::module::{Module, ParamId};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Int, Tensor};
use kiln_metrics::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {
        assert_close!($a, $b, 1e-12)
    };
    ($a:expr, $b:expr, $tol:expr) => {{
        let (a, b) = ($a as f64, $b as f64);
        assert!(close(a, b, $tol), "{} = {a}, expected {b} (tol {})", stringify!($a), $tol);
    }};
}

// ---------------------------------------------------------------- classification

/// targets / predictions of a 3-class example:
/// confusion (rows true, cols pred) = [[2,1,0],[0,2,1],[0,1,2]+[1,0,0]] = [[2,1,0],[0,2,1],[1,1,2]]
const TARGETS: [usize; 10] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2];
const PREDS: [usize; 10] = [0, 0, 1, 1, 1, 2, 2, 2, 0, 1];

#[test]
fn confusion_matrix_and_per_class_prf() {
    let cm = ConfusionMatrix::from_predictions(&PREDS, &TARGETS, 3).unwrap();
    assert_eq!(cm.counts, vec![vec![2, 1, 0], vec![0, 2, 1], vec![1, 1, 2]]);
    assert_eq!(cm.total(), 10);
    assert_eq!(cm.correct(), 6);
    assert_close!(cm.accuracy(), 0.6);
    assert_close!(accuracy(&PREDS, &TARGETS).unwrap(), 0.6);

    // column sums 3, 4, 3; row sums 3, 3, 4
    let expected = [
        (2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 3),
        (1.0 / 2.0, 2.0 / 3.0, 4.0 / 7.0, 3),
        (2.0 / 3.0, 1.0 / 2.0, 4.0 / 7.0, 4),
    ];
    for (m, (p, r, f, s)) in cm.per_class().iter().zip(expected) {
        assert_close!(m.precision, p);
        assert_close!(m.recall, r);
        assert_close!(m.f1, f);
        assert_eq!(m.support, s);
    }
    assert_close!(cm.macro_precision(), 11.0 / 18.0);
    assert_close!(cm.macro_recall(), 11.0 / 18.0);
    assert_close!(cm.macro_f1(), 38.0 / 63.0);
    // (3 * 2/3 + 3 * 4/7 + 4 * 4/7) / 10
    assert_close!(cm.weighted_f1(), (2.0 + 12.0 / 7.0 + 16.0 / 7.0) / 10.0);

    let report = cm.report();
    assert_close!(report.macro_f1, 38.0 / 63.0);
    assert_eq!(report.total, 10);
    let md = report.to_markdown();
    assert!(md.contains("| 1 | 0.5000 | 0.6667 | 0.5714 | 3 |"), "{md}");
}

#[test]
fn confusion_matrix_markdown_and_serde() {
    let cm = ConfusionMatrix::from_predictions(&PREDS, &TARGETS, 3)
        .unwrap()
        .with_class_names(["cat", "dog", "bird"])
        .unwrap();
    let md = cm.to_markdown();
    assert_eq!(
        md,
        "| true \\ pred | cat | dog | bird | support |\n\
         |---|---:|---:|---:|---:|\n\
         | cat | 2 | 1 | 0 | 3 |\n\
         | dog | 0 | 2 | 1 | 3 |\n\
         | bird | 1 | 1 | 2 | 4 |\n"
    );
    let json = serde_json::to_string(&cm).unwrap();
    assert_eq!(json, r#"{"num_classes":3,"class_names":["cat","dog","bird"],"counts":[[2,1,0],[0,2,1],[1,1,2]]}"#);
    let back: ConfusionMatrix = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cm);
}

#[test]
fn classification_edge_cases() {
    // A class never predicted and never present is left out of the macro average.
    let cm = ConfusionMatrix::from_predictions(&[0, 1, 1], &[0, 1, 0], 4).unwrap();
    assert_close!(cm.precision(2), 0.0);
    assert_close!(cm.recall(3), 0.0);
    // class 0: P 1, R 1/2, F1 2/3; class 1: P 1/2, R 1, F1 2/3
    assert_close!(cm.macro_precision(), 0.75);
    assert_close!(cm.macro_f1(), 2.0 / 3.0);
    assert!(matches!(
        ConfusionMatrix::from_predictions(&[0, 3], &[0, 1], 3),
        Err(MetricsError::LabelOutOfRange { label: 3, num_classes: 3 })
    ));
    assert!(matches!(accuracy(&[0, 1], &[0]), Err(MetricsError::LengthMismatch { .. })));
    let mut a = ConfusionMatrix::from_predictions(&[0, 1], &[0, 1], 2).unwrap();
    a.merge(&ConfusionMatrix::from_predictions(&[1], &[0], 2).unwrap()).unwrap();
    assert_eq!(a.counts, vec![vec![1, 1], vec![0, 1]]);
}

const SCORES: [[f32; 4]; 5] = [
    [0.5, 0.2, 0.2, 0.1],   // label 0: rank 0
    [0.3, 0.4, 0.2, 0.1],   // label 2: rank 2
    [0.2, 0.4, 0.3, 0.1],   // label 2: rank 1
    [0.7, 0.2, 0.05, 0.05], // label 3: tied with class 2, which ranks first: rank 3
    [0.1, 0.1, 0.2, 0.6],   // label 1: rank 3 (0.6, 0.2 above; 0.1 of class 0 ties first)
];
const SCORE_LABELS: [usize; 5] = [0, 2, 2, 3, 1];

#[test]
fn top_k_accuracy_by_hand() {
    let flat: Vec<f32> = SCORES.iter().flatten().copied().collect();
    assert_close!(top_k_accuracy(&flat, 4, &SCORE_LABELS, 1).unwrap(), 0.2);
    assert_close!(top_k_accuracy(&flat, 4, &SCORE_LABELS, 2).unwrap(), 0.4);
    assert_close!(top_k_accuracy(&flat, 4, &SCORE_LABELS, 3).unwrap(), 0.6);
    assert_close!(top_k_accuracy(&flat, 4, &SCORE_LABELS, 4).unwrap(), 1.0);
    assert!(top_k_accuracy(&flat, 4, &SCORE_LABELS, 0).is_err());
    // ties go to the lower class: label 2 of [0.5, 0.2, 0.2, 0.1] is not in the top 2
    assert_close!(top_k_accuracy(&[0.5, 0.2, 0.2, 0.1], 4, &[2], 2).unwrap(), 0.0);
    assert_close!(top_k_accuracy(&[0.5, 0.2, 0.2, 0.1], 4, &[1], 2).unwrap(), 1.0);
    assert_eq!(argmax_rows(&flat, 4).unwrap(), vec![0, 1, 1, 0, 3]);
}

#[test]
fn metrics_from_burn_tensors() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_floats(SCORES, &device);
    let labels = Tensor::<1, Int>::from_ints([0, 2, 2, 3, 1], &device);
    assert_close!(accuracy_from_logits(&logits, &labels).unwrap(), 0.2);
    assert_close!(top_k_accuracy_from_logits(&logits, &labels, 2).unwrap(), 0.4);
    let cm = ConfusionMatrix::from_logits(&logits, &labels).unwrap();
    // predictions [0, 1, 1, 0, 3] against labels [0, 2, 2, 3, 1]
    assert_eq!(cm.counts, vec![vec![1, 0, 0, 0], vec![0, 0, 0, 1], vec![0, 2, 0, 0], vec![1, 0, 0, 0]]);
    let bad = Tensor::<1, Int>::from_ints([0, 2, 2, 4, 1], &device);
    assert!(matches!(accuracy_from_logits(&logits, &bad), Err(MetricsError::LabelOutOfRange { label: 4, .. })));
}

// ---------------------------------------------------------------- regression

#[test]
fn regression_by_hand() {
    // scikit-learn's documented example: r2 = 0.948608..., mse = 0.375, mae = 0.5
    let target = [3.0f32, -0.5, 2.0, 7.0];
    let pred = [2.5f32, 0.0, 2.0, 8.0];
    assert_close!(mse(&pred, &target).unwrap(), 0.375);
    assert_close!(mae(&pred, &target).unwrap(), 0.5);
    // mean 2.875, SS_tot = 29.1875, SS_res = 1.5
    assert_close!(r2_score(&pred, &target).unwrap(), 1.0 - 1.5 / 29.1875);
    assert_close!(r2_score(&pred, &target).unwrap(), 0.948_608_137_044_967_9, 1e-12);
    // constant target
    assert_close!(r2_score(&[1.0, 1.0], &[1.0, 1.0]).unwrap(), 1.0);
    assert_close!(r2_score(&[1.0, 2.0], &[1.0, 1.0]).unwrap(), 0.0);

    let device = Device::flex();
    let m = regression_metrics_from_tensors(
        &Tensor::<2>::from_floats([[2.5, 0.0], [2.0, 8.0]], &device),
        &Tensor::<2>::from_floats([[3.0, -0.5], [2.0, 7.0]], &device),
    )
    .unwrap();
    assert_close!(m.mse, 0.375);
    assert_close!(m.rmse, 0.375f64.sqrt());
    assert_close!(m.mae, 0.5);
    assert_close!(m.r2, 1.0 - 1.5 / 29.1875);
    assert_eq!(m.count, 4);
}

// ---------------------------------------------------------------- segmentation

// target / prediction 3x3 label maps:
//   target 0 0 1    pred 0 1 1
//          0 1 1         0 1 2
//          2 2 2         2 2 2
// confusion [[2,1,0],[0,2,1],[0,0,3]] -> IoU 2/3, 2/4, 3/4
const SEG_TARGET: [usize; 9] = [0, 0, 1, 0, 1, 1, 2, 2, 2];
const SEG_PRED: [usize; 9] = [0, 1, 1, 0, 1, 2, 2, 2, 2];

#[test]
fn iou_by_hand() {
    let r = segmentation_iou(&SEG_PRED, &SEG_TARGET, 3, None).unwrap();
    assert_eq!(r.per_class.len(), 3);
    assert_close!(r.per_class[0].unwrap(), 2.0 / 3.0);
    assert_close!(r.per_class[1].unwrap(), 0.5);
    assert_close!(r.per_class[2].unwrap(), 0.75);
    assert_close!(r.miou, 23.0 / 36.0);
    assert_close!(r.pixel_accuracy, 7.0 / 9.0);
    assert_eq!(r.pixels, 9);

    // A fourth class absent from both maps has no IoU and leaves the mean alone; an ignored
    // target pixel (255) is not counted, whatever was predicted there.
    let mut t = SEG_TARGET.to_vec();
    let mut p = SEG_PRED.to_vec();
    t.push(255);
    p.push(3);
    let r4 = segmentation_iou(&p, &t, 4, Some(255)).unwrap();
    assert_eq!(r4.per_class[3], None);
    assert_close!(r4.miou, 23.0 / 36.0);
    assert_eq!(r4.pixels, 9);
    assert!(segmentation_iou(&p, &t, 4, None).is_err());
}

#[test]
fn iou_from_burn_label_maps_and_logits() {
    let device = Device::flex();
    let to_map = |v: &[usize]| {
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        Tensor::<1, Int>::from_ints(v.as_slice(), &device).reshape([1, 3, 3])
    };
    let target: Tensor<3, Int> = to_map(&SEG_TARGET);
    let pred: Tensor<3, Int> = to_map(&SEG_PRED);
    let r = iou_from_label_maps(&pred, &target, 3, None).unwrap();
    assert_close!(r.miou, 23.0 / 36.0);

    // Logits [1, 3, 3, 3] whose argmax over classes is the predicted map.
    let mut logits = vec![0.0f32; 27];
    for (i, &c) in SEG_PRED.iter().enumerate() {
        logits[c * 9 + i] = 1.0;
    }
    let logits = Tensor::<1>::from_floats(logits.as_slice(), &device).reshape([1, 3, 3, 3]);
    let r = iou_from_logits(&logits, &target, None).unwrap();
    assert_close!(r.per_class[0].unwrap(), 2.0 / 3.0);
    assert_close!(r.per_class[1].unwrap(), 0.5);
    assert_close!(r.per_class[2].unwrap(), 0.75);
    assert!(r.to_markdown().contains("| mIoU | 0.6389 |"));
}

// ---------------------------------------------------------------- overfitting

#[test]
fn overfitting_detector_names_the_epoch() {
    // val loss is best at epoch 3, then rises for 4 epochs while train loss keeps falling.
    let train = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2];
    let val = [1.1, 0.9, 0.75, 0.7, 0.72, 0.76, 0.8, 0.85];
    let v = OverfittingDetector::new(3).check_losses(&train, &val).unwrap();
    assert!(v.overfitting, "{}", v.reason);
    assert_eq!(v.best_epoch, 3);
    assert_eq!(v.began_at_epoch, Some(4));
    assert!(v.reason.contains("epoch 3"), "{}", v.reason);
    assert_close!(v.gap[3], 0.2, 1e-12);
    assert_close!(v.gap[7], 0.65, 1e-12);
    assert_eq!(v.gap_growing_since, Some(1)); // gap[1] == gap[0] (0.1)

    // With a patience of 5 there is not enough evidence (only 4 epochs follow the best).
    let v = OverfittingDetector::new(5).check_losses(&train, &val).unwrap();
    assert!(!v.overfitting);
    assert_eq!(v.began_at_epoch, None);

    // The verdict serializes.
    let json = serde_json::to_value(OverfittingDetector::new(3).check_losses(&train, &val).unwrap()).unwrap();
    assert_eq!(json["overfitting"], true);
    assert_eq!(json["began_at_epoch"], 4);
    assert_eq!(json["best_epoch"], 3);
}

#[test]
fn no_overfitting_on_monotone_curves() {
    let train = [1.0, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15];
    let val = [1.1, 0.8, 0.65, 0.6, 0.55, 0.5, 0.47, 0.45];
    let v = OverfittingDetector::default().check_losses(&train, &val).unwrap();
    assert!(!v.overfitting, "{}", v.reason);
    assert_eq!(v.began_at_epoch, None);
    assert_eq!(v.best_epoch, 7);
    assert!(v.reason.contains("still improving"), "{}", v.reason);
}

#[test]
fn overfitting_on_accuracies_plateaus_and_divergence() {
    // Validation accuracy peaks at epoch 5.
    let train = [0.5, 0.62, 0.7, 0.78, 0.84, 0.88, 0.91, 0.94, 0.96, 0.98];
    let val = [0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.73, 0.71, 0.70, 0.69];
    let v = OverfittingDetector::new(3).check_accuracies(&train, &val).unwrap();
    assert!(v.overfitting, "{}", v.reason);
    assert_eq!((v.best_epoch, v.began_at_epoch), (5, Some(6)));
    assert_close!(v.gap[9], 0.29, 1e-12); // train - val

    // Validation flat after epoch 2 while training keeps improving: the gap rule.
    let train = [1.0, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2];
    let val = [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7];
    let v = OverfittingDetector::new(3).check_losses(&train, &val).unwrap();
    assert!(v.overfitting, "{}", v.reason);
    assert_eq!((v.best_epoch, v.began_at_epoch), (2, Some(3)));
    assert!(v.reason.contains("gap grew"), "{}", v.reason);

    // Both curves get worse: divergence, not overfitting.
    let train = [1.0, 0.8, 0.7, 0.9, 1.2, 1.5];
    let val = [1.1, 0.9, 0.8, 1.0, 1.3, 1.6];
    let v = OverfittingDetector::new(3).check_losses(&train, &val).unwrap();
    assert!(!v.overfitting);
    assert!(v.reason.contains("divergence"), "{}", v.reason);

    assert!(OverfittingDetector::new(3).check_losses(&[1.0], &[1.0, 2.0]).is_err());
    assert!(OverfittingDetector::new(3).check_losses(&[], &[]).is_err());
}

// ---------------------------------------------------------------- gradient norms

#[derive(Module, Debug)]
struct Tiny {
    a: Linear,
    b: Linear,
    unused: Linear,
    norm: BatchNorm,
}

/// Gradients from `loss.backward()`.
struct Backward<'a>(&'a Gradients);
impl GradientLookup for Backward<'_> {
    fn grad<const D: usize>(&self, _id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>> {
        param.grad(self.0)
    }
}

/// Gradients keyed by parameter id (what optimizers take).
struct ByParamId<'a>(&'a GradientsParams);
impl GradientLookup for ByParamId<'_> {
    fn grad<const D: usize>(&self, id: ParamId, _param: &Tensor<D>) -> Option<Tensor<D>> {
        self.0.get::<D>(id)
    }
}

fn tiny(device: &Device) -> Tiny {
    Tiny {
        a: LinearConfig::new(3, 2).init(device),
        b: LinearConfig::new(3, 2).with_bias(false).init(device),
        unused: LinearConfig::new(2, 2).init(device),
        norm: BatchNormConfig::new(2).init(device),
    }
}

/// `sum(a(x)) * scale + sum(b(x)) * 0`: with Burn's `y = x W + b` (W is [in, out]),
/// dL/dW_a[i][j] = scale * sum_batch x[., i] and dL/db_a = scale * batch; b's gradient is zero.
fn loss(model: &Tiny, device: &Device, scale: f64) -> Tensor<1> {
    let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], device);
    model.a.forward(x.clone()).sum().mul_scalar(scale) + model.b.forward(x).sum().mul_scalar(0.0)
}

#[test]
fn gradient_norms_by_hand() {
    let device = Device::flex().autodiff();
    let model = tiny(&device);
    let grads = loss(&model, &device, 1.0).backward();
    let report = GradNormMonitor::default().report(&model, &Backward(&grads)).unwrap();

    // column sums of x: [5, 7, 9], each repeated over 2 outputs; bias gradient [2, 2]
    let w = (2.0f64 * (25.0 + 49.0 + 81.0)).sqrt();
    let b = 8.0f64.sqrt();
    let wa = report.param("a.weight").unwrap();
    assert_eq!(wa.shape, vec![3, 2]);
    assert_close!(wa.norm.unwrap(), w, 1e-5);
    assert_eq!(wa.flag, GradFlag::Ok);
    assert_close!(report.param("a.bias").unwrap().norm.unwrap(), b, 1e-5);
    let la = report.layer("a").unwrap();
    assert_close!(la.norm.unwrap(), (w * w + b * b).sqrt(), 1e-5);
    assert_eq!(la.params, vec!["a.weight".to_string(), "a.bias".to_string()]);

    // b: zero gradient -> vanishing. unused / norm: no gradient -> missing.
    assert_eq!(report.param("b.weight").unwrap().norm, Some(0.0));
    assert_eq!(report.layer("b").unwrap().flag, GradFlag::Vanishing);
    assert_eq!(report.vanishing, vec!["b".to_string()]);
    assert_eq!(report.missing, vec!["unused".to_string(), "norm".to_string()]);
    assert!(report.exploding.is_empty());
    assert!(report.has_problems());
    // BatchNorm running statistics are buffers, not reported.
    assert!(report.params.iter().all(|p| !p.name.contains("running")));
    assert_eq!(report.params.len(), 2 + 1 + 2 + 2);
    assert_close!(report.total_norm, (w * w + b * b).sqrt(), 1e-5);

    // The same numbers through GradientsParams (keyed by ParamId).
    let params = GradientsParams::from_grads(grads, &model);
    let report2 = GradNormMonitor::default().report(&model, &ByParamId(&params)).unwrap();
    assert_close!(report2.layer("a").unwrap().norm.unwrap(), (w * w + b * b).sqrt(), 1e-5);
    assert_eq!(report2.vanishing, vec!["b".to_string()]);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["vanishing"][0], "b");
    assert!(report.to_markdown().contains("| b | 0.0000e0 | Vanishing |"), "{}", report.to_markdown());
}

#[test]
fn gradient_monitor_flags_exploding() {
    let device = Device::flex().autodiff();
    let model = tiny(&device);
    let grads = loss(&model, &device, 1e4).backward();
    let report = GradNormMonitor::default().report(&model, &Backward(&grads)).unwrap();
    let w = 1e4 * (2.0f64 * 155.0 + 8.0).sqrt();
    assert_close!(report.layer("a").unwrap().norm.unwrap(), w, w * 1e-6);
    assert_eq!(report.exploding, vec!["a".to_string()]);
    assert_eq!(report.layer("a").unwrap().flag, GradFlag::Exploding);
}

// ---------------------------------------------------------------- activation sparsity

#[test]
fn relu_activation_sparsity() {
    let device = Device::flex();
    let pre = Tensor::<2>::from_floats([[-1.0, 2.0, 0.0, 3.0], [-0.5, -2.0, 1.0, 4.0]], &device);
    let relu1 = burn::tensor::activation::relu(pre); // zeros: 4 of 8
    let relu2 = Tensor::<2>::from_floats([[0.0, 0.0, 0.0, 1.0]], &device); // 3 of 4
    let r = activation_sparsity([("layer1", relu1.clone()), ("layer2", relu2.clone())]).unwrap();
    assert_eq!(r.layers.len(), 2);
    assert_eq!((r.layers[0].zeros, r.layers[0].total), (4, 8));
    assert_close!(r.layer("layer1").unwrap().sparsity, 0.5);
    assert_close!(r.layer("layer2").unwrap().sparsity, 0.75);
    assert_close!(r.overall, 7.0 / 12.0);
    assert_eq!(r.at_least(0.7), vec!["layer2"]);

    // Accumulation across batches and ranks.
    let mut t = SparsityTracker::new();
    t.record("layer1", &relu1).unwrap();
    t.record("layer1", &relu2).unwrap();
    t.record("conv", &Tensor::<4>::zeros([1, 2, 2, 2], &device)).unwrap();
    let r = t.report();
    assert_eq!((r.layers[0].zeros, r.layers[0].total), (7, 12));
    assert_close!(r.layer("conv").unwrap().sparsity, 1.0);
    assert_close!(zero_fraction(&relu2).unwrap(), 0.75);
}
