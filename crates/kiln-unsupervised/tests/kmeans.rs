//! k-means on mnist-5k (flex and ndarray, same seed, same clustering) and its error cases.

use burn::tensor::{Device, Tensor, TensorData};
use kiln_unsupervised::kmeans::{KMeansConfig, KMeansInit};
use kiln_unsupervised::metrics::{nmi, purity};
use kiln_unsupervised::{UnsupervisedError, flatten_images};

fn tensor(v: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

#[test]
fn mnist_5k_k10_purity_matches_sklearn_on_flex_and_ndarray() {
    let data = kiln_data::Dataset::mnist_5k().unwrap();
    let labels = data.train.labels();
    let config = KMeansConfig::new(10).with_seed(0).with_restarts(3);
    #[allow(deprecated)]
    let devices = [Device::flex(), Device::ndarray()];
    let mut runs = vec![];
    for device in &devices {
        let t = std::time::Instant::now();
        let fit = config.fit(flatten_images(&data.train, device)).unwrap();
        let p = purity(&fit.assignments, labels).unwrap();
        let m = nmi(&fit.assignments, labels).unwrap();
        eprintln!(
            "{device:?}: purity {p:.4} NMI {m:.4} inertia {:.2} iterations {} restarts {:?} ({:.1}s)",
            fit.inertia,
            fit.iterations,
            fit.restarts_inertia,
            t.elapsed().as_secs_f64()
        );
        assert!(p >= 0.53, "purity {p} below scikit-learn's range (0.54-0.57 for one init)");
        assert!(m >= 0.45, "NMI {m}");
        assert_eq!(fit.restarts_inertia.len(), 3);
        assert_eq!(fit.inertia, fit.restarts_inertia.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(fit.assignments.len(), 4000);
        assert_eq!(fit.cluster_sizes().iter().sum::<usize>(), 4000);
        // predict on the training data gives the fitted assignments back.
        assert_eq!(fit.predict(flatten_images(&data.train, device)).unwrap(), fit.assignments);
        runs.push((fit.assignments, fit.inertia, p));
    }
    assert_eq!(runs[0].0, runs[1].0, "flex and ndarray disagree for the same seed");
    assert!((runs[0].1 - runs[1].1).abs() / runs[0].1 < 1e-5, "inertia {} vs {}", runs[0].1, runs[1].1);
    assert_eq!(runs[0].2, runs[1].2);
}

#[test]
fn same_seed_same_clusters_other_seed_other_start() {
    let device = Device::flex();
    let data = kiln_data::Dataset::mnist_5k().unwrap();
    let x = flatten_images(&data.test.unwrap(), &device);
    let a = KMeansConfig::new(10).with_seed(7).fit(x.clone()).unwrap();
    let b = KMeansConfig::new(10).with_seed(7).fit(x.clone()).unwrap();
    assert_eq!(a.assignments, b.assignments);
    assert_eq!(a.inertia, b.inertia);
    let c = KMeansConfig::new(10).with_seed(8).fit(x).unwrap();
    assert_ne!(a.inertia, c.inertia, "another seed starts elsewhere");
}

#[test]
fn separated_blobs_are_found_exactly() {
    // Three tight 2-D blobs around (0,0), (10,0), (0,10): every init finds them.
    let device = Device::flex();
    let mut v = vec![];
    let mut labels = vec![];
    let centers = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
    for i in 0..30 {
        let (cx, cy) = centers[i % 3];
        let dx = ((i * 7) % 5) as f32 * 0.1 - 0.2;
        let dy = ((i * 3) % 5) as f32 * 0.1 - 0.2;
        v.extend([cx + dx, cy + dy]);
        labels.push(i % 3);
    }
    for init in [KMeansInit::PlusPlus, KMeansInit::Random, KMeansInit::Linear] {
        let fit =
            KMeansConfig::new(3).with_init(init).with_restarts(5).fit(tensor(v.clone(), [30, 2], &device)).unwrap();
        if init == KMeansInit::Linear {
            // Linear init spreads centres along the diagonal: it still separates the blobs here.
            assert_eq!(fit.restarts_inertia.len(), 1);
        }
        assert_eq!(purity(&fit.assignments, &labels).unwrap(), 1.0, "{init:?}");
        assert!((nmi(&fit.assignments, &labels).unwrap() - 1.0).abs() < 1e-12);
        // Inertia by hand: sum of squared offsets from each blob's mean.
        let mut expect = 0.0f64;
        for c in 0..3 {
            let pts: Vec<(f64, f64)> =
                (0..30).filter(|i| i % 3 == c).map(|i| (v[2 * i] as f64, v[2 * i + 1] as f64)).collect();
            let (mx, my) = (
                pts.iter().map(|p| p.0).sum::<f64>() / pts.len() as f64,
                pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64,
            );
            expect += pts.iter().map(|p| (p.0 - mx).powi(2) + (p.1 - my).powi(2)).sum::<f64>();
        }
        assert!((fit.inertia - expect).abs() < 1e-3, "{init:?}: inertia {} vs {expect}", fit.inertia);
        assert!(fit.converged);
    }
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let device = Device::flex();
    let x = tensor(vec![0.0, 1.0, 2.0, 3.0], [2, 2], &device);
    let e = KMeansConfig::new(0).fit(x.clone()).unwrap_err();
    assert!(matches!(e, UnsupervisedError::InvalidArgument(_)));
    assert_eq!(e.to_string(), "k must be at least 1");
    let e = KMeansConfig::new(3).fit(x.clone()).unwrap_err().to_string();
    assert_eq!(e, "k = 3 is larger than the number of samples (2): use k <= 2");
    let e = KMeansConfig::new(1).fit(tensor(vec![], [0, 2], &device)).unwrap_err().to_string();
    assert!(e.contains("non-empty [N, D] matrix, got [0, 2]"), "{e}");
    let e = KMeansConfig::new(1).fit(tensor(vec![0.0, f32::NAN, 1.0, 2.0], [2, 2], &device)).unwrap_err().to_string();
    assert!(e.contains("NaN or infinite"), "{e}");
    let e = KMeansConfig::new(1).fit(tensor(vec![0.0, f32::INFINITY, 1.0, 2.0], [2, 2], &device)).unwrap_err();
    assert!(e.to_string().contains("NaN or infinite"));
    let e = KMeansConfig::new(1).with_restarts(0).fit(x.clone()).unwrap_err().to_string();
    assert!(e.contains("restarts"), "{e}");
    let fit = KMeansConfig::new(2).fit(x.clone()).unwrap();
    let e = fit.predict(tensor(vec![0.0; 3], [1, 3], &device)).unwrap_err().to_string();
    assert!(e.contains("3 features per sample but the centroids have 2"), "{e}");
    // k = n: every sample its own cluster, zero inertia.
    assert_eq!(fit.inertia, 0.0);
    let mut a = fit.assignments.clone();
    a.sort();
    assert_eq!(a, vec![0, 1]);
}
