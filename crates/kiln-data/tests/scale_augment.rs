//! Feature scaling (fit on train, apply anywhere, JSON) and seeded augmentation.

use burn::tensor::{Device, Tensor, TensorData};
use kiln_data::augment::{elastic, hflip, jitter, pad_crop, rotate, shear};
use kiln_data::{AugOp, Augment, AugmentError, Dataset, ImageDataset, Pixels, Rng, ScaleKind, Scaler, Split};

fn mnist() -> Dataset {
    Dataset::mnist_5k().unwrap()
}

// ---------------------------------------------------------------------------------------------
// scaling

#[test]
fn zscore_fit_on_train_gives_mean_0_std_1() {
    let ds = mnist();
    let s = Scaler::fit(ScaleKind::ZScore, &ds.train).unwrap();
    match &s {
        Scaler::ZScore { mean, std } => {
            assert!((mean[0] - 0.130_859_89).abs() < 1e-6, "{mean:?}");
            assert!((std[0] - 0.308_015_56).abs() < 1e-6, "{std:?}");
        }
        other => panic!("{other:?}"),
    }
    let mut train = ds.train.clone();
    s.apply_in_place(&mut train).unwrap();
    assert!(matches!(train.pixels(), Pixels::F32(_)));
    let (m, sd) = train.channel_stats();
    assert!(m[0].abs() < 1e-5, "scaled train mean {}", m[0]);
    assert!((sd[0] - 1.0).abs() < 1e-5, "scaled train std {}", sd[0]);
    // The test split scaled with train's statistics is close to, not exactly, (0, 1).
    let mut test = ds.test.clone().unwrap();
    s.apply_in_place(&mut test).unwrap();
    let (tm, _) = test.channel_stats();
    assert!((tm[0] - (0.133_158_59 - 0.130_859_89) / 0.308_015_56).abs() < 1e-4, "{}", tm[0]);
    // Fitting on held-out data is refused.
    assert!(Scaler::fit(ScaleKind::ZScore, ds.test().unwrap()).is_err());
    let (_, val) = ds.train.split_validation(0.1, 1).unwrap();
    assert!(Scaler::fit(ScaleKind::MinMax, &val).is_err());
}

#[test]
fn apply_batch_matches_apply_in_place() {
    let ds = mnist();
    let device = Device::flex();
    let idx = [5usize, 17, 300];
    for kind in [ScaleKind::Identity, ScaleKind::MinMax, ScaleKind::ZScore, ScaleKind::Log1p, ScaleKind::OneMinusExp] {
        let s = Scaler::fit(kind, &ds.train).unwrap();
        let mut scaled = ds.train.clone();
        s.apply_in_place(&mut scaled).unwrap();
        let (x, _) = ds.train.batch(&idx, &device);
        let got = s.apply_batch(x).into_data().try_to_vec::<f32>().unwrap();
        let (want, _) = scaled.batch(&idx, &device);
        let want = want.into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{kind}: {a} vs {b}");
        }
    }
}

#[test]
fn nonlinear_and_minmax_values() {
    let device = Device::flex();
    let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 0.5, 1.0, 2.0], [1, 1, 2, 2]), &device);
    let log = Scaler::Log1p.apply_batch(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let exp = Scaler::OneMinusExp.apply_batch(x).into_data().try_to_vec::<f32>().unwrap();
    let want_log = [0.0f32, 0.405_465_1, std::f32::consts::LN_2, 1.098_612_3];
    let want_exp = [0.0f32, 0.393_469_34, 0.632_120_56, 0.864_664_7];
    for i in 0..4 {
        assert!((log[i] - want_log[i]).abs() < 1e-6 && (exp[i] - want_exp[i]).abs() < 1e-6, "{log:?} {exp:?}");
    }
    // Per-channel min-max on a 3-channel set whose channels span different ranges.
    let px: Vec<f32> = vec![
        0.2, 0.4, /* */ 0.0, 1.0, /* */ 0.5, 0.5, // image 0: R, G, B planes of 1x2
        0.6, 0.3, /* */ 0.5, 0.25, /* */ 0.5, 0.5, // image 1
    ];
    let names = vec!["x".to_string()];
    let mut d = ImageDataset::new(Pixels::F32(px), vec![0, 0], [3, 1, 2], names, Split::Train).unwrap();
    let s = Scaler::fit(ScaleKind::MinMax, &d).unwrap();
    assert_eq!(s, Scaler::MinMax { min: vec![0.2, 0.0, 0.5], max: vec![0.6, 1.0, 1.5] }); // constant B: max = min + 1
    s.apply_in_place(&mut d).unwrap();
    let (lo, hi) = d.channel_min_max();
    assert_eq!((lo, hi), (vec![0.0, 0.0, 0.0], vec![1.0, 1.0, 0.0]));
    // ... and per-channel z-score.
    let z = Scaler::fit(ScaleKind::ZScore, &d).unwrap();
    z.apply_in_place(&mut d).unwrap();
    let (m, sd) = d.channel_stats();
    for c in 0..2 {
        assert!(m[c].abs() < 1e-6 && (sd[c] - 1.0).abs() < 1e-5, "channel {c}: {m:?} {sd:?}");
    }
    assert!(m[2].abs() < 1e-6 && sd[2] == 0.0); // constant channel: std kept at 1, stays 0
    // A 1-channel scaler refuses 3-channel data.
    let one = Scaler::fit(ScaleKind::ZScore, &mnist().train).unwrap();
    assert!(one.apply_in_place(&mut d).is_err());
}

#[test]
fn scaler_json_round_trip() {
    let ds = mnist();
    let s = Scaler::fit(ScaleKind::ZScore, &ds.train).unwrap();
    let json = s.to_json();
    assert!(json.starts_with(r#"{"kind":"z-score","mean":[0.1308"#), "{json}");
    assert_eq!(Scaler::from_json(&json).unwrap(), s);
    let path = std::env::temp_dir().join(format!("kiln-data-{}-scaler.json", std::process::id()));
    s.save(&path).unwrap();
    assert_eq!(Scaler::load(&path).unwrap(), s);
    assert_eq!(Scaler::from_json(r#"{"kind":"log1p"}"#).unwrap(), Scaler::Log1p);
    assert!(Scaler::from_json(r#"{"kind":"cube"}"#).is_err());
    for (name, k) in [
        ("zscore", ScaleKind::ZScore),
        ("minmax", ScaleKind::MinMax),
        ("log", ScaleKind::Log1p),
        ("exp", ScaleKind::OneMinusExp),
        ("none", ScaleKind::Identity),
    ] {
        assert_eq!(name.parse::<ScaleKind>().unwrap(), k);
        assert_eq!(k.to_string(), name);
    }
    assert!("robust".parse::<ScaleKind>().is_err());
}

// ---------------------------------------------------------------------------------------------
// augmentation

const FULL: &str = "flip,crop:4,rotate:15,shear:0.2,elastic:34:4,jitter:0.2";

fn digit() -> (Vec<f32>, [usize; 3]) {
    let ds = mnist();
    (ds.train.get(0).unwrap().0, [1, 28, 28])
}

fn ramp(shape: [usize; 3]) -> Vec<f32> {
    let n = shape.iter().product::<usize>();
    (0..n).map(|i| ((i * 37) % 101) as f32 / 100.0).collect()
}

#[test]
fn pipeline_is_deterministic_per_seed() {
    let aug: Augment = FULL.parse().unwrap();
    assert_eq!(aug.ops.len(), 6);
    let (img, shape) = digit();
    let a = aug.apply_image(&img, shape, &mut Rng::new(7));
    let b = aug.apply_image(&img, shape, &mut Rng::new(7));
    let c = aug.apply_image(&img, shape, &mut Rng::new(8));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, img);
    assert!(a.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    // Each op alone is deterministic too, and changes the image for some seed.
    for op in &aug.ops {
        let one = Augment::new(vec![op.clone()]);
        let x = one.apply_image(&img, shape, &mut Rng::new(3));
        assert_eq!(x, one.apply_image(&img, shape, &mut Rng::new(3)), "{op}");
        assert!((0..8).any(|s| one.apply_image(&img, shape, &mut Rng::new(s)) != img), "{op} never changes");
    }
    // RGB images too (jitter's saturation path).
    let rgb = ramp([3, 9, 7]);
    let a = aug.apply_image(&rgb, [3, 9, 7], &mut Rng::new(1));
    assert_eq!(a, aug.apply_image(&rgb, [3, 9, 7], &mut Rng::new(1)));
    assert_ne!(a, aug.apply_image(&rgb, [3, 9, 7], &mut Rng::new(2)));
}

#[test]
fn batch_augmentation_is_reproducible() {
    let aug: Augment = FULL.parse().unwrap();
    let ds = mnist();
    let idx: Vec<usize> = (0..8).collect();
    let mut flat = Vec::new();
    for &i in &idx {
        flat.extend(ds.train.get(i).unwrap().0);
    }
    let a = aug.apply_batch(&flat, [8, 1, 28, 28], 11).unwrap();
    assert_eq!(a, aug.apply_batch(&flat, [8, 1, 28, 28], 11).unwrap());
    assert_ne!(a, aug.apply_batch(&flat, [8, 1, 28, 28], 12).unwrap());
    assert!(aug.apply_batch(&flat, [9, 1, 28, 28], 11).is_err());
    // Dataset batches: image i is augmented by (seed, i), whatever the batch it is in.
    let device = Device::flex();
    let (x1, _) = ds.train.batch_augmented(&[3, 4], &aug, 5, &device);
    let (x2, _) = ds.train.batch_augmented(&[4, 9, 3], &aug, 5, &device);
    let x1 = x1.into_data().try_to_vec::<f32>().unwrap();
    let x2 = x2.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(&x1[..784], &x2[2 * 784..]);
    assert_eq!(&x1[784..], &x2[..784]);
    // The empty chain is the plain batch.
    let (p, _) = ds.train.batch(&[3, 4], &device);
    let (q, _) = ds.train.batch_augmented(&[3, 4], &Augment::default(), 5, &device);
    assert_eq!(p.into_data().try_to_vec::<f32>().unwrap(), q.into_data().try_to_vec::<f32>().unwrap());
}

#[test]
fn identities() {
    for shape in [[1, 28, 28], [3, 5, 8]] {
        let img = ramp(shape);
        assert_eq!(hflip(&hflip(&img, shape), shape), img, "flip twice");
        assert_ne!(hflip(&img, shape), img);
        assert_eq!(rotate(&img, shape, 0.0), img, "rotate 0");
        assert_eq!(shear(&img, shape, 0.0, 0.0), img, "shear 0");
        assert_eq!(pad_crop(&img, shape, 0, 0, 0), img, "crop pad 0");
        assert_eq!(pad_crop(&img, shape, 3, 3, 3), img, "crop centred");
        assert_eq!(elastic(&img, shape, 0.0, 4.0, &mut Rng::new(1)), img, "elastic alpha 0");
        assert_eq!(jitter(&img, shape, 1.0, 1.0, 1.0), img, "jitter factors 1");
        // The same through the pipeline, whatever the seed.
        let none: Augment = "crop:0,rotate:0,shear:0,elastic:0:4,jitter:0,flip:0".parse().unwrap();
        for seed in 0..5 {
            assert_eq!(none.apply_image(&img, shape, &mut Rng::new(seed)), img);
        }
        let always: Augment = "flip:1,flip:1".parse().unwrap();
        assert_eq!(always.apply_image(&img, shape, &mut Rng::new(9)), img);
    }
}

#[test]
fn geometry_is_right() {
    // 3x3, one bright pixel right of centre.
    let shape = [1, 3, 3];
    let mut img = vec![0f32; 9];
    img[5] = 1.0; // (x=2, y=1)
    // +90 degrees (counter-clockwise as displayed): right of centre goes above centre.
    let r = rotate(&img, shape, 90.0);
    for (i, v) in r.iter().enumerate() {
        let want = if i == 1 { 1.0 } else { 0.0 };
        assert!((v - want).abs() < 1e-6, "rotate 90: {r:?}");
    }
    // 180 degrees == flipping both axes.
    let img = ramp([1, 5, 7]);
    let r = rotate(&img, [1, 5, 7], 180.0);
    for y in 0..5 {
        for x in 0..7 {
            assert!((r[y * 7 + x] - img[(4 - y) * 7 + (6 - x)]).abs() < 1e-5);
        }
    }
    // Crop at offset (0, 0) of the padded image shifts the content right/down by pad.
    let c = pad_crop(&img, [1, 5, 7], 2, 0, 0);
    assert_eq!(c[0], 0.0);
    assert_eq!(c[2 * 7 + 2], img[0]);
    assert_eq!(c[4 * 7 + 6], img[2 * 7 + 4]);
    // Brightness 0 makes black; contrast 0 makes the mean gray level everywhere.
    assert!(jitter(&img, [1, 5, 7], 0.0, 1.0, 1.0).iter().all(|&v| v == 0.0));
    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64;
    assert!(jitter(&img, [1, 5, 7], 1.0, 0.0, 1.0).iter().all(|&v| (v as f64 - mean).abs() < 1e-6));
    // Saturation 0 makes an RGB image gray (all three channels equal).
    let rgb = ramp([3, 2, 2]);
    let g = jitter(&rgb, [3, 2, 2], 1.0, 1.0, 0.0);
    for i in 0..4 {
        assert!((g[i] - g[4 + i]).abs() < 1e-6 && (g[i] - g[8 + i]).abs() < 1e-6);
    }
    // Elastic: a constant image stays constant away from the border (only zero fill enters).
    let flat = vec![0.5f32; 28 * 28];
    let e = elastic(&flat, [1, 28, 28], 34.0, 4.0, &mut Rng::new(2));
    assert!((e[14 * 28 + 14] - 0.5).abs() < 1e-6);
    assert_ne!(e, flat);
}

#[test]
fn spec_parsing_and_errors() {
    let aug: Augment = FULL.parse().unwrap();
    assert_eq!(aug.ops[0], AugOp::Flip { p: 0.5 });
    assert_eq!(aug.ops[1], AugOp::Crop { pad: 4 });
    assert_eq!(aug.ops[4], AugOp::Elastic { alpha: 34.0, sigma: 4.0 });
    assert_eq!(aug.ops[5], AugOp::Jitter { brightness: 0.2, contrast: 0.2, saturation: 0.2 });
    // Display writes a spec that parses back to the same chain.
    assert_eq!(aug.to_string().parse::<Augment>().unwrap(), aug);
    assert_eq!(" flip , rotate:10 ".parse::<Augment>().unwrap().ops.len(), 2);
    assert!("".parse::<Augment>().unwrap().is_empty());
    assert!("none".parse::<Augment>().unwrap().is_empty());
    let err = |s: &str| s.parse::<Augment>().unwrap_err();
    assert!(matches!(err("flip,blur:3"), AugmentError::Unknown { ref name, .. } if name == "blur"));
    assert!(matches!(err("crop"), AugmentError::Arity { found: 0, .. }));
    assert!(matches!(err("elastic:34"), AugmentError::Arity { found: 1, .. }));
    assert!(matches!(err("rotate:abc"), AugmentError::BadParam { .. }));
    assert!(matches!(err("crop:-1"), AugmentError::BadParam { .. }));
    assert!(matches!(err("crop:2.5"), AugmentError::BadParam { .. }));
    assert!(matches!(err("jitter:2"), AugmentError::BadParam { .. }));
    assert!(matches!(err("flip:1.5"), AugmentError::BadParam { .. }));
    assert!(matches!(err("rotate:nan"), AugmentError::BadParam { .. }));
    assert!(matches!(err("flip,,crop:2"), AugmentError::EmptyItem(_)));
    for s in ["blur", "crop", "rotate:abc", "flip,"] {
        let m = err(s).to_string();
        assert!(!m.contains('\n') && m.contains(s.trim_end_matches(',')), "{m}");
    }
    // Serde round trip (saved with a training run).
    let json = serde_json::to_string(&aug).unwrap();
    assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), aug);
}

#[test]
fn rng_is_splitmix64() {
    // SplitMix64 reference values for seed 0 (Vigna's splitmix64.c).
    let mut r = Rng::new(0);
    assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    let mut r = Rng::new(1);
    let mut hist = [0usize; 4];
    for _ in 0..4000 {
        hist[r.below(4)] += 1;
        let u = r.next_f64();
        assert!((0.0..1.0).contains(&u));
    }
    assert!(hist.iter().all(|&h| (900..1100).contains(&h)), "{hist:?}");
    assert_ne!(Rng::for_item(1, 0).next_u64(), Rng::for_item(1, 1).next_u64());
    assert_ne!(Rng::for_item(1, 0).next_u64(), Rng::for_item(2, 0).next_u64());
}
