//! `cargo xtask train`: parses flags into a [`TrainConfig`] and calls [`kiln_train::train`].

use std::path::PathBuf;

use kiln_models::Registry;
use kiln_train::{TrainConfig, TrainError};

use crate::args::{ChannelsArg, InitArg, OptimizerArg, ProgressArg};
use crate::{Backend, CliError};

/// Arguments of `train`.
#[derive(clap::Args, Debug)]
pub(crate) struct TrainArgs {
    /// Model name (see `cargo xtask analyze --list`).
    model: String,
    /// Backend to train on.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// `mnist-5k` (built in) or a dataset folder (MNIST IDX, CIFAR-10 binary, or one subfolder per class).
    #[arg(long, default_value = "mnist-5k")]
    dataset: String,
    /// Dataset format when it cannot be detected: idx, cifar10, folder.
    #[arg(long)]
    format: Option<String>,
    /// Number of epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Mini-batch size (`gd` uses the whole training split).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Momentum)]
    optimizer: OptimizerArg,
    /// Learning rate (default per optimizer: 0.1 for GD and SGD, 0.05 for momentum / Nesterov,
    /// 1e-3 for Adam / RMSProp, 1e-2 for AdaGrad).
    #[arg(long)]
    lr: Option<f64>,
    /// L2 weight decay (in the optimizer).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// L1 penalty on conv / linear weights (added to the loss; BN and biases skipped).
    #[arg(long, default_value_t = 0.0)]
    l1: f64,
    /// Dropout probability of the model's dropout layers.
    #[arg(long)]
    dropout: Option<f64>,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Stop after this many epochs without validation-loss improvement.
    #[arg(long, value_name = "PATIENCE")]
    early_stopping: Option<usize>,
    /// Augmentations, e.g. `flip,crop:2,rotate:10,shear:0.1,elastic:8:3,jitter:0.2` (see docs/training.md).
    #[arg(long)]
    augment: Option<String>,
    /// Weight init (default: the model's own).
    #[arg(long, value_enum, default_value_t = InitArg::Default)]
    init: InitArg,
    /// Seed of the split, shuffling, augmentation and initialization.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output folder (default: runs/<model>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Number of classes (default: the dataset's).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    num_classes: usize,
    /// Width multiplier (MobileNets, GhostNet).
    #[arg(long, default_value_t = 1.0)]
    width_mult: f64,
    /// Feature scaling fitted on the training split: zscore | minmax | none | log | exp
    /// (default: minmax, i.e. [0, 1], for classifiers; none for autoencoders).
    #[arg(long)]
    scale: Option<String>,
    /// When the data has fewer channels than the model: build the first conv for the data's
    /// channels, or repeat a gray channel.
    #[arg(long, value_enum, default_value_t = ChannelsArg::Stem)]
    channels: ChannelsArg,
    /// Resize images to NxN before the model (bilinear).
    #[arg(long, value_name = "N")]
    resize: Option<usize>,
    /// Fraction of the training split held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Use only the first N training images (e.g. to provoke overfitting).
    #[arg(long, value_name = "N")]
    train_limit: Option<usize>,
    /// Distil from a trained model folder (Hinton's loss: α·CE + (1−α)·T²·KL).
    #[arg(long, value_name = "DIR")]
    teacher: Option<PathBuf>,
    /// α of the distillation loss (weight of the hard labels).
    #[arg(long, default_value_t = 0.5)]
    kd_alpha: f64,
    /// Temperature T of the distillation loss.
    #[arg(long, default_value_t = 4.0)]
    kd_temperature: f64,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
}

fn usage(e: TrainError) -> CliError {
    CliError::Usage(e.to_string())
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig, CliError> {
        let mut c = TrainConfig::new(self.model.clone());
        c.dataset = self.dataset.clone();
        c.format = match &self.format {
            Some(f) => Some(f.parse().map_err(|e: kiln_data::DataError| CliError::Usage(e.to_string()))?),
            None => None,
        };
        c.epochs = self.epochs;
        c.batch_size = self.batch_size;
        c.optimizer = self.optimizer.into();
        c.lr = self.lr;
        c.weight_decay = self.weight_decay;
        c.l1 = self.l1;
        c.dropout = self.dropout;
        c.label_smoothing = self.label_smoothing;
        c.early_stopping = self.early_stopping;
        c.augment = self.augment.clone();
        c.init = self.init.into();
        c.seed = self.seed;
        if let Some(out) = &self.out {
            c.out = out.clone();
        }
        c.resume = self.resume;
        c.num_classes = self.num_classes;
        c.width_mult = self.width_mult;
        c.scale = match &self.scale {
            Some(s) => Some(s.parse().map_err(|e: kiln_data::DataError| CliError::Usage(e.to_string()))?),
            None => None,
        };
        c.channels = self.channels.into();
        c.resize = self.resize;
        c.val_fraction = self.val_fraction;
        c.train_limit = self.train_limit;
        c.display = self.progress.into();
        c.teacher = self.teacher.clone();
        c.kd_alpha = self.kd_alpha;
        c.kd_temperature = self.kd_temperature;
        c.validate().map_err(usage)?;
        Ok(c)
    }
}

pub(crate) fn run(registry: &Registry, args: &TrainArgs) -> Result<(), CliError> {
    // `--augment` is parsed once, by `TrainConfig::validate` (in `config`).
    let cfg = args.config()?;
    let device = args.backend.device()?;
    let outcome = kiln_train::train(registry, &cfg, args.backend.name(), &device).map_err(|e| match e {
        TrainError::InvalidOption(_)
        | TrainError::Zoo(_)
        | TrainError::Data(_)
        | TrainError::Mismatch(_)
        | TrainError::Unsupported(_)
        | TrainError::Io { .. }
        | TrainError::Saved(_)
        | TrainError::Weights(_)
        | TrainError::Diverged(_) => CliError::Usage(e.to_string()),
        other => CliError::Failed(other.to_string()),
    })?;
    let r = &outcome.report;
    match (r.test_accuracy, r.test_mse) {
        (Some(a), _) => println!("test accuracy {a:.4} (test loss {:.4})", r.test_loss),
        (None, Some(m)) => println!("test reconstruction MSE {m:.5} per pixel"),
        _ => {}
    }
    if let Some(reason) = &r.stop_reason {
        println!("early stopping: {reason}");
    }
    if let Some(v) = &r.overfitting {
        println!("overfitting: {}", if v.overfitting { v.reason.clone() } else { "none detected".into() });
    }
    println!("gradients: {}", r.gradient_verdict());
    println!("wrote {}/{{metrics.json, curves.svg, report.md, model.json, model.bpk}}", cfg.out.display());
    Ok(())
}
