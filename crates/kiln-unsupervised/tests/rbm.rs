//! RBM training on binarised mnist-5k: the reconstruction error falls, the free energy of the
//! data falls, and the filters / samples are drawn.

use burn::tensor::{Device, Tensor, TensorData};
use kiln_unsupervised::flatten_images;
use kiln_unsupervised::picture::save_grid_png;
use kiln_unsupervised::rbm::{Rbm, RbmConfig, binarize};

#[test]
fn cd1_reconstruction_error_falls_on_binarised_mnist() {
    let device = Device::flex();
    let data = kiln_data::Dataset::mnist_5k().unwrap();
    let train = binarize(flatten_images(&data.train, &device), 0.5);
    let val = binarize(flatten_images(data.test().unwrap(), &device), 0.5);
    let config = RbmConfig { hidden: 64, epochs: 4, ..RbmConfig::default() };
    let t = std::time::Instant::now();
    let out = config.fit(train.clone(), Some(val.clone()), |e| eprintln!("{e:?}")).unwrap();
    eprintln!("{:.1}s", t.elapsed().as_secs_f64());
    let h = &out.history;
    assert_eq!(h.len(), 4);
    assert_eq!(h.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let (first, last) = (h[0].reconstruction_error, h[3].reconstruction_error);
    // Per-pixel squared error: ~0.19 for the mean image of binarised MNIST; the RBM gets well
    // below it and keeps improving.
    assert!(first < 0.12, "first-epoch reconstruction error {first}");
    assert!(last < 0.8 * first, "reconstruction error {first} -> {last} did not fall by 20%");
    for w in h.windows(2) {
        assert!(w[1].reconstruction_error < w[0].reconstruction_error, "{h:?}");
    }
    // Data becomes more probable than noise: free energy of digits far below that of random pixels.
    let noise: Vec<f32> = (0..100 * 784).map(|i| ((i * 7919) % 13 < 2) as u8 as f32).collect();
    let noise = Tensor::<2>::from_data(TensorData::new(noise, [100, 784]), &device);
    let f_noise = out.rbm.mean_free_energy(noise).unwrap();
    let f_val = h[3].free_energy_val.unwrap();
    assert!(f_val < f_noise - 50.0, "val free energy {f_val} vs noise {f_noise}");
    // Train and validation free energies stay close after 4 epochs (no overfitting yet).
    assert!((h[3].free_energy_train - f_val).abs() < 10.0, "{:?}", h[3]);
    // The stats serialise.
    let json = serde_json::to_string(&h).unwrap();
    assert!(json.contains("\"reconstruction_error\""));

    // Pictures: filters and Gibbs samples.
    let dir = std::env::temp_dir().join(format!("kiln-rbm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let filters = out.rbm.filters().unwrap();
    assert_eq!(filters.len(), 64);
    save_grid_png(&dir.join("filters.png"), &filters, 28, 28, 8, 2).unwrap();
    let samples = out.rbm.gibbs_sample(val.slice([0..10, 0..784]), 50, 3);
    assert_eq!(samples.dims(), [10, 784]);
    if let Ok(keep) = std::env::var("KILN_RBM_PICTURES") {
        std::fs::copy(dir.join("filters.png"), std::path::Path::new(&keep).join("filters.png")).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn persistent_cd_and_cd_k_run_and_learn() {
    let device = Device::flex();
    let data = kiln_data::Dataset::mnist_5k().unwrap();
    let train = binarize(flatten_images(&data.train, &device), 0.5).slice([0..1000, 0..784]);
    for (persistent, k) in [(true, 1), (false, 3)] {
        let config = RbmConfig { hidden: 32, epochs: 3, persistent, k, lr: 0.05, ..RbmConfig::default() };
        let h = config.fit(train.clone(), None, |_| {}).unwrap().history;
        eprintln!("persistent {persistent} k {k}: {:?}", h.iter().map(|e| e.reconstruction_error).collect::<Vec<_>>());
        assert!(h[2].reconstruction_error < h[0].reconstruction_error, "{h:?}");
        assert!(h[2].free_energy_val.is_none());
    }
}

#[test]
fn free_energy_matches_the_formula_by_hand() {
    // V = 2, H = 1: F(v) = -b.v - softplus(c + v.W).
    let device = Device::flex();
    let rbm = Rbm {
        w: Tensor::from_data(TensorData::new(vec![1.0f32, -2.0], [2, 1]), &device),
        vb: Tensor::from_data(TensorData::new(vec![0.5f32, 0.25], [2]), &device),
        hb: Tensor::from_data(TensorData::new(vec![0.1f32], [1]), &device),
    };
    let v = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], [2, 2]), &device);
    let f = rbm.free_energy(v).into_data().try_into_vec_as::<f32>().unwrap();
    let sp = |x: f64| (1.0 + x.exp()).ln();
    let expect = [-(0.75) - sp(0.1 + 1.0 - 2.0), -(0.5) - sp(0.1 + 1.0)];
    for (a, b) in f.iter().zip(expect) {
        assert!((*a as f64 - b).abs() < 1e-5, "{f:?} vs {expect:?}");
    }
}

#[test]
fn bad_rbm_settings_and_data_are_errors() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 0.5], [2, 2]), &device);
    let e = RbmConfig::default().fit(x.clone(), None, |_| {}).unwrap_err().to_string();
    assert!(e.contains("must be in [0, 1]") && e.contains("binarise"), "{e}");
    let ok = x.clone().clamp(0.0, 1.0);
    let e = RbmConfig { k: 0, ..RbmConfig::default() }.fit(ok.clone(), None, |_| {}).unwrap_err().to_string();
    assert!(e.contains("k >= 1"), "{e}");
    let e = RbmConfig { lr: 0.0, ..RbmConfig::default() }.fit(ok.clone(), None, |_| {}).unwrap_err().to_string();
    assert!(e.contains("learning rate"), "{e}");
    let bad_val = Tensor::<2>::zeros([1, 3], &device);
    let e = RbmConfig::default().fit(ok, Some(bad_val), |_| {}).unwrap_err().to_string();
    assert!(e.contains("validation data has 3 visible units but training data has 2"), "{e}");
}
