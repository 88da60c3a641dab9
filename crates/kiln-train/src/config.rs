//! What a training run is asked to do ([`TrainConfig`]) and its option enums.

use std::path::PathBuf;
use std::str::FromStr;

use kiln_data::{Format, ScaleKind};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The optimizers `--optimizer` accepts (all Burn's; `gd` and `sgd` differ by batch size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Full-batch gradient descent: plain SGD on the whole training split at once.
    Gd,
    /// Plain mini-batch SGD.
    Sgd,
    /// SGD with momentum 0.9 (dampening 0, as PyTorch's `SGD(momentum=0.9)`).
    Momentum,
    /// SGD with Nesterov momentum 0.9.
    Nesterov,
    /// Adam (β = 0.9, 0.999, ε = 1e-8).
    Adam,
    /// AdaGrad.
    AdaGrad,
    /// RMSProp (α = 0.99, no momentum: PyTorch's defaults).
    RmsProp,
}

impl OptimizerKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [OptimizerKind; 7] = [
        OptimizerKind::Gd,
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Nesterov,
        OptimizerKind::Adam,
        OptimizerKind::AdaGrad,
        OptimizerKind::RmsProp,
    ];

    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Gd => "gd",
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Momentum => "momentum",
            OptimizerKind::Nesterov => "nesterov",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdaGrad => "adagrad",
            OptimizerKind::RmsProp => "rmsprop",
        }
    }

    /// The learning rate used when `--lr` is not given. Full-batch GD gets 0.1: at 0.5 (and 0.2)
    /// LeNet-5 on mnist-5k left its initial plateau with a loss spike and ended with dead units
    /// (validation loss stuck at ln 10).
    pub fn default_lr(self) -> f64 {
        match self {
            OptimizerKind::Gd => 0.1,
            OptimizerKind::Sgd => 0.1,
            OptimizerKind::Momentum | OptimizerKind::Nesterov => 0.05,
            OptimizerKind::Adam | OptimizerKind::RmsProp => 1e-3,
            OptimizerKind::AdaGrad => 1e-2,
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimizerKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        OptimizerKind::ALL.into_iter().find(|k| k.name() == lower).ok_or_else(|| {
            TrainError::InvalidOption(format!(
                "unknown optimizer '{s}': expected one of {}",
                OptimizerKind::ALL.map(|k| k.name()).join(", ")
            ))
        })
    }
}

/// Weight initialization applied after the model is built (`--init`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitKind {
    /// Keep the model's own initialization (torchvision's scheme for each zoo model).
    Default,
    /// Kaiming (He) normal, fan-in, gain √2, on conv / linear weights; biases zero.
    Kaiming,
    /// Xavier (Glorot) uniform on conv / linear weights; biases zero.
    Xavier,
    /// Every conv / linear weight and bias zero (shows the symmetry problem).
    Zeros,
}

impl InitKind {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            InitKind::Default => "default",
            InitKind::Kaiming => "kaiming",
            InitKind::Xavier => "xavier",
            InitKind::Zeros => "zeros",
        }
    }
}

impl FromStr for InitKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(InitKind::Default),
            "kaiming" | "he" => Ok(InitKind::Kaiming),
            "xavier" | "glorot" => Ok(InitKind::Xavier),
            "zeros" | "zero" => Ok(InitKind::Zeros),
            _ => Err(TrainError::InvalidOption(format!(
                "unknown init '{s}': expected one of default, kaiming, xavier, zeros"
            ))),
        }
    }
}

/// How images whose channel count differs from the model's native one are fed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelAdapt {
    /// Build the model's stem for the data's channels (`in_channels = data channels`): a
    /// 3-channel ImageNet net takes 1-channel MNIST with a 1-channel first convolution.
    Stem,
    /// Keep the model's native stem and repeat a 1-channel image to its channel count.
    Repeat,
}

impl FromStr for ChannelAdapt {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "stem" => Ok(ChannelAdapt::Stem),
            "repeat" => Ok(ChannelAdapt::Repeat),
            _ => Err(TrainError::InvalidOption(format!("unknown channel adaptation '{s}': expected stem or repeat"))),
        }
    }
}

/// How progress is shown while training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Display {
    /// burn-train's terminal dashboard when stdout is a terminal, one line per epoch otherwise.
    Auto,
    /// One line per epoch on stderr.
    Plain,
    /// Nothing (library use, tests).
    Quiet,
}

/// Everything a training run needs; [`TrainConfig::new`] gives the defaults of `cargo xtask train`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Zoo model name (aliases accepted).
    pub model: String,
    /// Output classes; 0 = the dataset's class count.
    pub num_classes: usize,
    /// Width multiplier (MobileNets, GhostNet).
    pub width_mult: f64,
    /// Dropout probability of the model's dropout layers (`None` = the model's default).
    pub dropout: Option<f64>,
    /// `mnist-5k` (built in) or a dataset folder.
    pub dataset: String,
    /// The dataset's format (`None` = detect).
    pub format: Option<Format>,
    /// Number of epochs.
    pub epochs: usize,
    /// Mini-batch size (ignored by `gd`, which uses the whole training split).
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Learning rate (`None` = [`OptimizerKind::default_lr`]).
    pub lr: Option<f64>,
    /// L2 weight decay coefficient, given to the optimizer (0 = none).
    pub weight_decay: f64,
    /// L1 penalty coefficient added to the loss over conv / linear weights (0 = none).
    pub l1: f64,
    /// Label smoothing of the cross-entropy (0 = none).
    pub label_smoothing: f64,
    /// Stop when the validation loss has not improved for this many epochs.
    pub early_stopping: Option<usize>,
    /// Augmentations (kiln-data's list syntax, e.g. `flip,crop:2,rotate:10`).
    pub augment: Option<String>,
    /// Weight initialization.
    pub init: InitKind,
    /// Seed of the data split, shuffling, augmentation and initialization.
    pub seed: u64,
    /// Output folder.
    pub out: PathBuf,
    /// Continue from the last checkpoint in `out`.
    pub resume: bool,
    /// Fraction of the training split held out for validation.
    pub val_fraction: f64,
    /// Feature scaling fitted on the training split and saved with the model (`None`: min-max
    /// to [0, 1] for classification, as PyTorch's `ToTensor`; none for reconstruction).
    pub scale: Option<ScaleKind>,
    /// Channel adaptation when the data's channels differ from the model's.
    pub channels: ChannelAdapt,
    /// Resize images to `resize x resize` before the model (`None` = the data's size).
    pub resize: Option<usize>,
    /// Use only the first N images of the training split (after the validation split).
    pub train_limit: Option<usize>,
    /// Progress display.
    pub display: Display,
    /// Distil from this trained model folder (Hinton's loss; `None` = plain training).
    pub teacher: Option<PathBuf>,
    /// Weight α of the hard-label cross-entropy in the distillation loss.
    pub kd_alpha: f64,
    /// Distillation temperature T.
    pub kd_temperature: f64,
}

impl TrainConfig {
    /// The defaults of `cargo xtask train <model>`: mnist-5k, 10 epochs, batch 64, momentum,
    /// z-score scaling, 10 % validation, seed 42, output in `runs/<model>`.
    pub fn new(model: impl Into<String>) -> Self {
        let model = model.into();
        Self {
            out: PathBuf::from("runs").join(&model),
            model,
            num_classes: 0,
            width_mult: 1.0,
            dropout: None,
            dataset: "mnist-5k".into(),
            format: None,
            epochs: 10,
            batch_size: 64,
            optimizer: OptimizerKind::Momentum,
            lr: None,
            weight_decay: 0.0,
            l1: 0.0,
            label_smoothing: 0.0,
            early_stopping: None,
            augment: None,
            init: InitKind::Default,
            seed: 42,
            resume: false,
            val_fraction: 0.1,
            scale: None,
            channels: ChannelAdapt::Stem,
            resize: None,
            train_limit: None,
            display: Display::Auto,
            teacher: None,
            kd_alpha: 0.5,
            kd_temperature: 4.0,
        }
    }

    /// The learning rate in effect.
    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or_else(|| self.optimizer.default_lr())
    }

    /// The parsed `augment` spec (`None` when empty); its errors are [`TrainError::InvalidOption`].
    pub fn augmentation(&self) -> Result<Option<kiln_data::Augment>, TrainError> {
        match &self.augment {
            Some(s) if !s.trim().is_empty() => {
                kiln_data::Augment::parse(s).map(Some).map_err(|e| TrainError::InvalidOption(format!("--augment: {e}")))
            }
            _ => Ok(None),
        }
    }

    /// Checks the ranges and the augmentation spec (the errors name the flag).
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::InvalidOption(m));
        self.augmentation()?;
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("--lr must be a positive number, got {lr}"));
        }
        for (flag, v) in [("--weight-decay", self.weight_decay), ("--l1", self.l1)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{flag} must be >= 0, got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!("--label-smoothing must be in [0, 1), got {}", self.label_smoothing));
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad(format!("--val-fraction must be in (0, 1), got {}", self.val_fraction));
        }
        if self.early_stopping == Some(0) {
            return bad("--early-stopping needs a patience of at least 1 epoch".into());
        }
        if self.resize == Some(0) {
            return bad("--resize must be at least 1 pixel".into());
        }
        if !(0.0..=1.0).contains(&self.kd_alpha) {
            return bad(format!("--kd-alpha must be in [0, 1], got {}", self.kd_alpha));
        }
        if !(self.kd_temperature.is_finite() && self.kd_temperature > 0.0) {
            return bad(format!("--kd-temperature must be positive, got {}", self.kd_temperature));
        }
        if self.train_limit == Some(0) {
            return bad("--train-limit must be at least 1 image".into());
        }
        Ok(())
    }
}
