//! Shared by the test files: the mnist-5k data and one trained LeNet-5 per test binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::module::Module;
use burn::tensor::Device;
use kiln_compress::io::{SavedPlan, load_compressed, save_compressed};
use kiln_data::{Dataset, ImageDataset};
use kiln_models::lenet::{LeNet5, LeNet5Config};

pub fn data() -> &'static (ImageDataset, ImageDataset) {
    static D: OnceLock<(ImageDataset, ImageDataset)> = OnceLock::new();
    D.get_or_init(|| {
        let d = Dataset::mnist_5k().expect("mnist-5k");
        (d.train.clone(), d.test().expect("test split").clone())
    })
}

pub fn train_device() -> Device {
    Device::flex().autodiff()
}

pub fn lenet_plan() -> SavedPlan {
    SavedPlan::new("lenet5", vec![1, 28, 28], 10, 1.0)
}

/// The folder of a LeNet-5 trained once per test binary by the project's trainer
/// (`kiln_train::train`: 10 epochs of SGD with momentum 0.9, lr 0.05, batch 64, on mnist-5k with
/// its default min-max input scaling, i.e. the raw `[0, 1]` pixels this crate evaluates on).
/// The folder is what `cargo xtask train` writes and `cargo xtask compress --from` reads.
pub fn trained_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kiln-compress-lenet-train-{}", std::process::id()));
        let mut cfg = kiln_train::TrainConfig::new("lenet5");
        cfg.epochs = 10;
        cfg.optimizer = kiln_train::OptimizerKind::Momentum;
        cfg.lr = Some(0.05);
        cfg.batch_size = 64;
        cfg.display = kiln_train::Display::Quiet;
        cfg.out = dir.clone();
        let outcome =
            kiln_train::train(&kiln_models::Registry::builtin(), &cfg, "flex", &Device::flex()).expect("train");
        let Ok(m) = outcome.model.downcast::<LeNet5>() else { panic!("lenet5 trained into another model") };
        save_compressed(&m, &lenet_plan(), &dir.join("compressed")).expect("save");
        dir
    })
}

/// The trained LeNet-5 of [`trained_dir`], on the autodiff training device.
pub fn trained_lenet() -> LeNet5 {
    let device = train_device();
    load_compressed(LeNet5Config::new().init(&device), &trained_dir().join("compressed")).expect("reload")
}

pub fn max_abs_diff(a: burn::tensor::Tensor<2>, b: burn::tensor::Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

pub fn valid<M: Module>(m: &M) -> M {
    m.valid()
}

/// Latency is measured and reported, not asserted to fall: on a shared 2-core machine with the
/// other tests of a file running, a 0.1 ms batch-1 timing is noise (it read 0.145 -> 0.167 ms once
/// in CI); the speed-up lives in the benches. Checks that both rows were actually timed.
pub fn assert_latency_measured(before: &kiln_compress::report::StageRow, after: &kiln_compress::report::StageRow) {
    for row in [before, after] {
        assert!(row.latency_ms.is_finite() && row.latency_ms > 0.0, "{}: latency {} ms", row.stage, row.latency_ms);
    }
}
