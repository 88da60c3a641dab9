//! # kiln-models
//!
//! kiln's model zoo. Every architecture is written the way torchvision / timm write it — a table
//! of block settings read by a loop — and is registered by name in a [`Registry`], from which the
//! analyzer, the CLI and the trainer build it. Child names in traces follow the PyTorch
//! definitions (`features.3.conv.1`), so reports and weight files line up with torchvision's.
//!
//! Third-party crates add models and ops the same way the built-in ones are added: implement
//! [`ZooModel`] (and `kiln_layers::Trace`), then [`Registry::register`] an entry — see the
//! `examples/custom-op` crate.

use burn::tensor::{Device, Tensor};
use kiln_layers::Trace;

pub mod autoencoder;
mod common;
pub mod deeplab;
pub mod densenet;
pub mod efficientnet;
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
}

/// A model the zoo can build by name: it runs ([`ZooModel::forward`]) and describes itself to the
/// analyzer ([`Trace`]).
pub trait ZooModel: Trace + Send + Sync + std::fmt::Debug {
    /// Runs the model (inference mode unless the device is an autodiff device).
    fn forward(&self, x: Tensor<4>) -> Output;
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
    /// The concrete model, for code that needs its type (the trainer downcasts with it).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// Implements [`ZooModel`] for a Burn module with `fn forward(&self, Tensor<4>) -> Tensor<2>`
/// (`logits`) or `-> Tensor<4>` (`map`).
#[macro_export]
macro_rules! zoo_model {
    ($ty:ty, logits) => {
        $crate::zoo_model!(@impl $ty, Logits);
    };
    ($ty:ty, map) => {
        $crate::zoo_model!(@impl $ty, Map);
    };
    (@impl $ty:ty, $variant:ident) => {
        impl $crate::ZooModel for $ty {
            fn forward(&self, x: burn::tensor::Tensor<4>) -> $crate::Output {
                $crate::Output::$variant(<$ty>::forward(self, x))
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
