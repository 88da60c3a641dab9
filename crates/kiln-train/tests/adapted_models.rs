//! Models whose native input differs from the data: MobileNetV2 (3x224x224, width 0.5) adapted
//! to 1x28x28 MNIST, a channel-repeat adaptation, and a short run on wgpu.

mod common;

use burn::tensor::Device;
use kiln_models::Registry;
use kiln_train::{ChannelAdapt, OptimizerKind};

#[test]
fn mobilenet_v2_half_width_learns_mnist_in_two_epochs() {
    let mut cfg = common::config("mobilenet_v2", "mnv2");
    cfg.width_mult = 0.5;
    cfg.epochs = 2;
    cfg.optimizer = OptimizerKind::Adam;
    cfg.lr = Some(3e-3);
    cfg.batch_size = 64;
    let out = kiln_train::train(&Registry::builtin(), &cfg, "flex", &Device::flex()).expect("trains");
    let r = &out.report;
    let acc = r.test_accuracy.unwrap();
    println!("mobilenet_v2 x0.5 @28x28: {:?}, test accuracy {acc}", r.epochs);
    // Chance is 0.10 (measured here: 0.566 after two epochs).
    assert!(acc > 0.4, "test accuracy {acc}");
    assert_eq!(out.spec.in_channels, 1, "stem adapted to 1 channel");
    assert_eq!(out.spec.num_classes, 10);
    assert!(r.input_adaptation.contains("first convolution built for 1 channel"), "{}", r.input_adaptation);
    assert!(r.input_adaptation.contains("28x28 (native 224x224"), "{}", r.input_adaptation);
    let _ = std::fs::remove_dir_all(&cfg.out);
}

#[test]
fn channel_repeat_and_resize_are_explicit() {
    let mut cfg = common::config("resnet18", "repeat");
    cfg.channels = ChannelAdapt::Repeat;
    cfg.resize = Some(32);
    cfg.epochs = 1;
    cfg.train_limit = Some(64);
    cfg.batch_size = 32;
    cfg.val_fraction = 0.02;
    let prepared = kiln_train::prepare(&Registry::builtin(), &cfg, &Device::flex()).expect("prepares");
    let spec = &prepared.spec;
    assert_eq!(spec.in_channels, 3);
    assert_eq!(spec.input.model_shape, [3, 32, 32]);
    assert!(spec.input.repeat_channels && spec.input.resize);
    let x = burn::tensor::Tensor::<4>::ones([2, 1, 28, 28], &Device::flex());
    assert_eq!(spec.input.apply(x).dims(), [2, 3, 32, 32]);
    assert!(spec.input.description.contains("repeated to 3 channels"), "{}", spec.input.description);
    assert!(spec.input.description.contains("resized bilinearly from 28x28 to 32x32"), "{}", spec.input.description);
}

#[test]
fn dense_prediction_models_are_refused_on_label_data() {
    let cfg = common::config("unet", "unet");
    let err = kiln_train::prepare(&Registry::builtin(), &cfg, &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("per-pixel masks"), "{err}");
}

#[test]
fn wgpu_short_run_lowers_the_training_loss() {
    if std::env::var("KILN_SKIP_WGPU").is_ok_and(|v| v == "1") {
        eprintln!("KILN_SKIP_WGPU=1: wgpu training test skipped");
        return;
    }
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let mut cfg = common::config("lenet5", "wgpu");
    // Three epochs of 16 steps: at seed 42 the second epoch is still near chance (2.30 -> 2.19;
    // other seeds are at ~2.0 by then), the third is not (1.59, validation 1.21).
    cfg.epochs = 3;
    cfg.train_limit = Some(512);
    cfg.batch_size = 32;
    cfg.val_fraction = 0.05;
    cfg.optimizer = OptimizerKind::Adam;
    let r = kiln_train::train(&Registry::builtin(), &cfg, "wgpu", &device).expect("trains on wgpu").report;
    println!("wgpu: {:?}", r.epochs);
    assert!(r.epochs[2].train_loss < r.epochs[0].train_loss - 0.2, "{:?}", r.epochs);
    assert!(r.epochs[2].val_loss < 2.0, "{:?}", r.epochs);
    let _ = std::fs::remove_dir_all(&cfg.out);
}

#[test]
fn conv_autoencoder_reconstructs_below_the_pca_baseline() {
    let mut cfg = common::config("conv_autoencoder", "ae");
    cfg.epochs = 15;
    cfg.optimizer = OptimizerKind::Adam;
    let out = kiln_train::train(&Registry::builtin(), &cfg, "flex", &Device::flex()).expect("trains");
    let r = &out.report;
    let mse = r.test_mse.expect("reconstruction");
    println!("conv_autoencoder: test MSE {mse}, codes {:?}", r.code_clusters.as_ref().map(|c| (c.purity, c.nmi)));
    // PCA with 16 components reaches 0.028 per pixel on the same split.
    assert!(mse < 0.028, "test MSE {mse}");
    assert!(r.test_accuracy.is_none());
    assert_eq!(r.task, kiln_train::Task::Reconstruction);
    // The 16-number codes hold class structure: k-means on them is far above chance purity (0.1).
    let clusters = r.code_clusters.as_ref().expect("codes clustered");
    assert_eq!((clusters.k, clusters.n, clusters.dim), (10, 1000, 16));
    assert!(clusters.purity.unwrap() > 0.35, "{:?}", clusters.purity);
    let png = std::fs::read(cfg.out.join("reconstructions.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let _ = std::fs::remove_dir_all(&cfg.out);
}

#[test]
fn dense_autoencoder_trains() {
    let mut cfg = common::config("dense_autoencoder", "dense-ae");
    cfg.epochs = 2;
    cfg.optimizer = OptimizerKind::Adam;
    let r = kiln_train::train(&Registry::builtin(), &cfg, "flex", &Device::flex()).expect("trains").report;
    println!("dense_autoencoder: {:?}", r.epochs);
    assert!(r.epochs[1].val_loss < r.epochs[0].val_loss);
    assert!(r.test_mse.unwrap() < 0.06, "{:?}", r.test_mse);
    assert!(r.code_clusters.is_some());
    let _ = std::fs::remove_dir_all(&cfg.out);
}

#[test]
fn a_dataset_with_one_class_is_refused_for_a_classifier() {
    // An image folder with a single class: 20 grey PNGs in train/only/.
    let dir = std::env::temp_dir().join(format!("kiln-train-one-class-{}", std::process::id()));
    let class = dir.join("train").join("only");
    std::fs::create_dir_all(&class).unwrap();
    for i in 0..20 {
        let img: Vec<f32> = (0..28 * 28).map(|p| ((p * (i + 1)) % 255) as f32 / 255.0).collect();
        kiln_unsupervised::picture::save_grid_png(&class.join(format!("{i}.png")), &[img], 28, 28, 1, 1).unwrap();
    }
    let mut cfg = common::config("lenet5", "one-class");
    cfg.dataset = dir.to_string_lossy().into_owned();
    let err = kiln_train::prepare(&Registry::builtin(), &cfg, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("a classifier needs at least two classes, and this run has 1 (only)"), "{err}");
    // The same folder trains an autoencoder (no labels needed; one class, so no clustering of
    // its codes in the report).
    let mut ae = common::config("dense_autoencoder", "one-class-ae");
    ae.dataset = cfg.dataset.clone();
    ae.epochs = 1;
    ae.resize = Some(28); // the PNG writer frames each image: 30x30 files
    let r =
        kiln_train::train(&Registry::builtin(), &ae, "flex", &Device::flex()).unwrap_or_else(|e| panic!("{e}")).report;
    assert!(r.test_mse.is_some_and(|m| m.is_finite()) && r.code_clusters.is_none(), "{:?}", r.test_mse);
    let _ = std::fs::remove_dir_all(&ae.out);
    let _ = std::fs::remove_dir_all(&dir);
}
