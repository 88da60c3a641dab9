//! # kiln-models
//!
//! kiln's model zoo. Every architecture is written the way torchvision / timm write it — a table
//! of block settings read by a loop — and is registered by name in a [`Registry`], from which the
//! analyzer, the CLI and the trainer build it. Child names in traces follow the PyTorch
//! definitions (`features.3.conv.1`), so reports and weight files line up with torchvision's.
//!
//! Third-party crates add models and ops the same way the built-in ones are added: implement
//! `kiln_layers::Trace` and [`Hooks`], implement [`ZooModel`] with [`zoo_model!`], then
//! [`Registry::register`] an entry — see the `examples/custom-op` crate. Registration erases the
//! type once ([`AnyModel`] is a Burn module over any registered model), so `analyze`, `run`,
//! `train` and `compress` take a plugin's model exactly as a built-in one.

use burn::tensor::{Device, Tensor};
use kiln_layers::Trace;

pub mod autoencoder;
mod common;
pub mod deeplab;
pub mod densenet;
pub mod efficientnet;
pub mod erased;
pub mod ghostnet;
pub mod lenet;
pub mod mobilenet_v1;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod npy;
pub mod pickle_guard;
pub mod registry;
pub mod resnet;
pub mod segnet;
pub mod shufflenet_v2;
pub mod squeezenet;
pub mod unet;
pub mod vgg;
pub mod weights;
pub mod yolov5_focus;

pub use erased::{AnyModel, ErasedModule};
pub use registry::{ModelEntry, ModelOptions, OpEntry, Registry, ZooError};
pub use weights::{LoadReport, WeightError};

/// What a zoo model returns.
#[derive(Debug, Clone)]
pub enum Output {
    /// Class scores `[N, classes]`.
    Logits(Tensor<2>),
    /// A dense map `[N, C, H, W]` (segmentation, autoencoders).
    Map(Tensor<4>),
}

impl Output {
    /// The output's shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Output::Logits(t) => t.dims().to_vec(),
            Output::Map(t) => t.dims().to_vec(),
        }
    }

    /// Class scores: the logits, or a map flattened to `[N, C * H * W]`.
    pub fn into_logits(self) -> Tensor<2> {
        match self {
            Output::Logits(l) => l,
            Output::Map(m) => m.flatten::<2>(1, 3),
        }
    }
}

/// What a model is trained to do, fixed by the model ([`ZooModel::task`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Class scores against labels: cross-entropy, accuracy.
    Classification,
    /// A map of the input's shape against the input itself: mean squared error (autoencoders).
    Reconstruction,
    /// Per-pixel maps (segmentation, detection backbones): needs dense labels to train.
    Dense,
}

/// The abilities training and compression need, beside `forward` and [`Trace`] — as
/// torchvision keeps `fuse_model` beside each model. Every method has a default (a model without
/// batch norms folds none, one without depthwise convolutions syncs nothing); a model overrides
/// the ones that apply, mostly by delegating to its blocks (`ConvBnAct` and `InvertedResidual`
/// carry their own rules, see `kiln_layers::hooks`).
pub trait Hooks {
    /// The feature map a FitNets hint is taken from (`[N, C, H, W]`: the input of the global
    /// pooling or of the classifier); `None` when the model exposes none.
    fn features(&self, _x: Tensor<4>) -> Option<Tensor<4>> {
        None
    }

    /// Folds every inference-mode batch norm into the convolution before it
    /// (`w' = w * g / sqrt(v + eps)`, `b' = (b - m) * g / sqrt(v + eps) + beta`). A norm that the
    /// model's type makes optional (`ConvBnAct`) is removed; one that is not (ResNet's) becomes
    /// an exact identity (`gamma 1, beta 0, mean 0, var 1 - eps`). Returns the number folded.
    fn fold_bn(&mut self) -> usize {
        0
    }

    /// After structured pruning: sets the `groups` of every depthwise convolution (Burn keeps it
    /// as a plain field that parameter mappers cannot reach) to its new channel count.
    fn sync_groups(&mut self) {}

    /// Gives every batch norm its own running statistics. Burn's `RunningState` is shared between
    /// clones of a module and parameter mappers write into it in place, so a transformation of a
    /// clone (channel pruning) would otherwise also change the original's statistics.
    fn unshare_running_stats(&mut self) {}

    /// Whether the model has a dropout layer whose probability `ModelOptions::dropout` sets
    /// ([`Registry::build`] refuses the option otherwise).
    fn has_dropout(&self) -> bool {
        false
    }

    /// What the model is trained to do; `None` keeps the default of its output kind
    /// (class scores: classification; maps: dense prediction).
    fn task_override(&self) -> Option<Task> {
        None
    }

    /// An autoencoder's code `[N, code]` (clustered against the labels after training).
    fn encode(&self, _x: Tensor<4>) -> Option<Tensor<2>> {
        None
    }
}

/// A model the zoo can build by name: it runs ([`ZooModel::forward`]), describes itself to the
/// analyzer ([`Trace`]), has the [`Hooks`] training and compression call, and is a Burn module
/// behind a trait object ([`ErasedModule`], implemented for every Burn module; see
/// [`AnyModel`]). Implement it with [`zoo_model!`].
pub trait ZooModel: Trace + Hooks + ErasedModule + Send + Sync + std::fmt::Debug {
    /// Runs the model (inference mode unless the device is an autodiff device).
    fn forward(&self, x: Tensor<4>) -> Output;
    /// Class scores `[N, classes]` (a map output is flattened).
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x).into_logits()
    }
    /// What the model is trained to do ([`Hooks::task_override`], or the default of its output kind).
    fn task(&self) -> Task;
    /// Burn's `num_params()`: trainable parameters plus BatchNorm running statistics.
    fn num_params(&self) -> usize;
    /// Loads a torchvision / timm `state_dict` file (see [`weights::load_pytorch`]); `input` is
    /// any input shape the model accepts, e.g. `[1, 3, 224, 224]`.
    fn load_pytorch(&mut self, path: &std::path::Path, input: &[usize]) -> Result<LoadReport, WeightError>;
    /// Saves the parameters (and BatchNorm statistics) to a Burn burnpack file (what
    /// `cargo xtask train` writes as `model.bpk`). Written to a temporary file, then renamed.
    fn save_file(&self, path: &std::path::Path) -> Result<(), WeightError>;
    /// Loads a burnpack file written by [`ZooModel::save_file`] from a model built with the same
    /// options; shape mismatches are errors.
    fn load_file(&mut self, path: &std::path::Path) -> Result<(), WeightError>;
    /// The concrete model, for code that needs its type.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// Implements [`ZooModel`] for a Burn module with `fn forward(&self, Tensor<4>) -> Tensor<2>`
/// (`logits`) or `-> Tensor<4>` (`map`) that implements [`Hooks`] (an empty `impl Hooks for
/// X {}` takes every default).
#[macro_export]
macro_rules! zoo_model {
    ($ty:ty, logits) => {
        $crate::zoo_model!(@impl $ty, Logits, Classification);
    };
    ($ty:ty, map) => {
        $crate::zoo_model!(@impl $ty, Map, Dense);
    };
    (@impl $ty:ty, $variant:ident, $task:ident) => {
        impl $crate::ZooModel for $ty {
            fn forward(&self, x: burn::tensor::Tensor<4>) -> $crate::Output {
                $crate::Output::$variant(<$ty>::forward(self, x))
            }
            fn task(&self) -> $crate::Task {
                $crate::Hooks::task_override(self).unwrap_or($crate::Task::$task)
            }
            fn num_params(&self) -> usize {
                burn::module::Module::num_params(self)
            }
            fn load_pytorch(
                &mut self,
                path: &std::path::Path,
                input: &[usize],
            ) -> Result<$crate::LoadReport, $crate::WeightError> {
                $crate::weights::load_pytorch(self, path, input)
            }
            fn save_file(&self, path: &std::path::Path) -> Result<(), $crate::WeightError> {
                $crate::weights::save_burnpack(self, path)
            }
            fn load_file(&mut self, path: &std::path::Path) -> Result<(), $crate::WeightError> {
                *self = $crate::weights::load_burnpack(self.clone(), path)?;
                Ok(())
            }
            fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
                self
            }
        }
    };
}

/// Builds a registered model by name (aliases accepted) from the built-in registry.
pub fn build(name: &str, options: &ModelOptions, device: &Device) -> Result<Box<dyn ZooModel>, ZooError> {
    Registry::builtin().build(name, options, device)
}
