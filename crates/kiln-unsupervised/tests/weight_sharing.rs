//! Weight sharing on a LeNet-5 trained here on mnist-5k: k = 16 shared values per layer keeps
//! the test accuracy within 1 point (Deep Compression's claim for LeNet).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_data::{ImageDataset, Rng};
use kiln_models::lenet::{LeNet5, LeNet5Config};
use kiln_unsupervised::kmeans::KMeansInit;
use kiln_unsupervised::weight_sharing::{SharingConfig, share_tensor, share_weights};

fn accuracy(model: &LeNet5, data: &ImageDataset, device: &Device) -> f64 {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0i64;
    for chunk in idx.chunks(250) {
        let (x, y) = data.batch(chunk, device);
        let pred = model.forward(x).argmax(1).reshape([chunk.len()]);
        correct += pred.equal(y).int().sum().into_scalar::<i64>();
    }
    correct as f64 / data.len() as f64
}

#[test]
fn k16_sharing_keeps_lenet5_accuracy_within_one_point() {
    let device = Device::flex().autodiff();
    let data = kiln_data::Dataset::mnist_5k().unwrap();
    let test = data.test().unwrap();
    let mut model = kiln_layers::seeded(&device, 5, || LeNet5Config::new().init(&device));
    let mut optim = AdamConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut rng = Rng::new(1);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    for _epoch in 0..3 {
        rng.shuffle(&mut order);
        for chunk in order.chunks(32) {
            let (x, y) = data.train.batch(chunk, &device);
            let loss = ce.forward(model.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(2e-3, model, grads);
        }
    }
    let model = model.valid();
    let eval = Device::flex();
    let before = accuracy(&model, test, &eval);
    let (shared, report) = share_weights(model.clone(), &SharingConfig::new(16)).unwrap();
    let after = accuracy(&shared, test, &eval);
    eprintln!("LeNet-5 test accuracy {before:.4} -> {after:.4} with k = 16 (linear init)\n{}", report.to_markdown());
    assert!(before >= 0.9, "LeNet-5 trained to only {before}");
    assert!(after >= before - 0.01, "k = 16 sharing lost more than 1 point: {before} -> {after}");
    // k-means++ seeding also keeps it; k = 4 (2 bits) visibly does not match k = 16's fidelity.
    let (pp, _) =
        share_weights(model.clone(), &SharingConfig::new(16).with_init(KMeansInit::PlusPlus).with_seed(3)).unwrap();
    let after_pp = accuracy(&pp, test, &eval);
    let (k4, report4) = share_weights(model.clone(), &SharingConfig::new(4)).unwrap();
    let after_k4 = accuracy(&k4, test, &eval);
    eprintln!("k-means++ init: {after_pp:.4}; k = 4: {after_k4:.4} ({:.2}x)", report4.compression_ratio);
    assert!(after_pp >= before - 0.01, "k-means++ init: {before} -> {after_pp}");
    for (l4, l16) in report4.layers.iter().zip(&report.layers) {
        assert!(l16.sqnr_db > l4.sqnr_db + 6.0, "{} dB (k=16) vs {} dB (k=4)", l16.sqnr_db, l4.sqnr_db);
    }

    // The five weight tensors are shared, the five biases are not.
    let paths: Vec<&str> = report.layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]);
    assert_eq!(report.skipped.len(), 5);
    assert!(report.skipped.iter().all(|s| s.path.ends_with(".bias")));
    assert_eq!(
        report.layers.iter().map(|l| l.numel).sum::<usize>() + report.skipped.iter().map(|s| s.numel).sum::<usize>(),
        61_706
    );
    for l in &report.layers {
        assert_eq!((l.k, l.bits), (16, 4));
        assert!(l.distinct <= 16 && l.distinct >= 12, "{l:?}");
        assert!(l.sqnr_db > 15.0, "{l:?}");
        assert_eq!(l.compressed_bytes, (l.numel * 4).div_ceil(8) + 64);
    }
    // ~8x smaller: 4-bit indices for 61k weights, f32 biases and codebooks.
    assert!(report.compression_ratio > 7.0 && report.compression_ratio < 8.0, "{}", report.compression_ratio);
    // Every shared weight tensor really holds at most 16 distinct values.
    let w = shared.fc1.weight.val().into_data().try_into_vec_as::<f32>().unwrap();
    let mut distinct: Vec<u32> = w.iter().map(|v| v.to_bits()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() <= 16, "{}", distinct.len());
    // Biases untouched.
    let b0 = model.fc1.bias.as_ref().unwrap().val().into_data().try_into_vec_as::<f32>().unwrap();
    let b1 = shared.fc1.bias.as_ref().unwrap().val().into_data().try_into_vec_as::<f32>().unwrap();
    assert_eq!(b0, b1);
}

#[test]
fn share_tensor_by_hand_and_errors() {
    let device = Device::flex();
    // Two groups of values: k = 2 puts each at its group mean.
    let t = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.2, 0.1, 1.0, 1.2, 1.1], [2, 3]), &device);
    for init in [KMeansInit::Linear, KMeansInit::PlusPlus] {
        let (q, s) = share_tensor(t.clone(), &SharingConfig::new(2).with_init(init)).unwrap();
        let q = q.into_data().try_into_vec_as::<f32>().unwrap();
        for (a, b) in q.iter().zip([0.1, 0.1, 0.1, 1.1, 1.1, 1.1]) {
            assert!((a - b).abs() < 1e-6, "{init:?}: {q:?}");
        }
        // SQNR = 10 log10(Σw² / Σ(w-q)²) = 10 log10(3.7 / 0.04).
        assert!((s.sqnr_db - 10.0 * (3.7f64 / 0.04).log10()).abs() < 1e-3, "{}", s.sqnr_db);
        assert_eq!((s.numel, s.k, s.bits, s.distinct, s.compressed_bytes), (6, 2, 1, 2, 1 + 8));
    }
    let model = LeNet5Config::new().init(&device);
    let e = share_weights(model, &SharingConfig::new(1)).unwrap_err().to_string();
    assert!(e.contains("k >= 2"), "{e}");
}
