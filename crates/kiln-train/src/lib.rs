//! # kiln-train
//!
//! Trains any registered zoo model (a plugin's included) on a dataset with burn-train's `Learner`, on the backend the
//! caller's [`Device`](burn::tensor::Device) selects (flex, ndarray, wgpu), and writes what a
//! user needs to judge the run: `metrics.json` ([`TrainReport`]), `curves.svg`, `report.md`
//! (confusion matrix, overfitting and gradient-health verdicts) and the trained model
//! (`model.json` + `model.bpk`, loadable with [`saved::load`], `cargo xtask run` and
//! `cargo xtask analyze --from`).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use kiln_train::{OptimizerKind, TrainConfig};
//!
//! let mut cfg = TrainConfig::new("lenet5");
//! cfg.epochs = 10;
//! cfg.optimizer = OptimizerKind::Momentum;
//! cfg.lr = Some(0.05);
//! let out = kiln_train::train(&kiln_models::Registry::builtin(), &cfg, "flex", &Device::flex()).unwrap();
//! println!("test accuracy {:?}", out.report.test_accuracy);
//! ```
//!
//! Pieces, for other crates (kiln-compress fine-tunes and distils with them): [`prepare`] builds
//! and adapts a model for a dataset, [`fit`] trains a prepared model (optionally with a
//! [`Distillation`] teacher), [`initialize`] re-initializes weights, [`AnyModel`] (kiln-models')
//! holds any registered model in one Burn module type, so the `Learner` trains a plugin's model
//! as it trains a built-in one.

pub mod autoencoder;
pub mod checkpoint;
pub mod config;
pub mod data;
mod error;
pub mod init;
pub mod model;
pub mod recorder;
pub mod renderer;
pub mod report;
pub mod saved;
mod train;

pub use config::{ChannelAdapt, Display, InitKind, OptimizerKind, TrainConfig};
pub use data::InputAdapter;
pub use error::TrainError;
pub use init::initialize;
pub use model::{AnyModel, Distillation, ImageBatch, Task, Trainee, distillation_loss};
pub use recorder::EpochRecord;
pub use report::TrainReport;
pub use saved::{ModelSpec, SavedModel};
pub use train::{
    Prepared, Splits, TrainOutcome, fit, load_splits, load_teacher, overfitting_verdict, prepare, train,
    weight_sparsity,
};
