//! A trained model on disk: `model.json` (what to build and how to feed it) next to `model.bpk`
//! (Burn burnpack weights). `cargo xtask run` and `cargo xtask analyze --from DIR` read both.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_models::{ModelOptions, Registry, ZooModel};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::data::InputAdapter;
use crate::model::Task;

/// File name of the spec inside a model folder.
pub const SPEC_FILE: &str = "model.json";
/// The `format` this kiln writes into `model.json` and reads back.
pub const SPEC_FORMAT: u32 = 1;
/// File name of the weights inside a model folder.
pub const WEIGHTS_FILE: &str = "model.bpk";

/// Everything needed to rebuild a trained model and prepare its input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Format version of this file.
    pub format: u32,
    /// Registry name of the architecture.
    pub model: String,
    /// Output classes.
    pub num_classes: usize,
    /// Width multiplier.
    pub width_mult: f64,
    /// Input channels of the built model (after a stem adaptation).
    pub in_channels: usize,
    /// Dropout option the model was built with.
    pub dropout: Option<f64>,
    /// The task it was trained for.
    pub task: Task,
    /// How raw images become the model's input.
    pub input: InputAdapter,
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// The dataset it was trained on.
    pub dataset: String,
}

impl ModelSpec {
    /// The registry options that rebuild the architecture.
    pub fn options(&self) -> ModelOptions {
        ModelOptions {
            num_classes: self.num_classes,
            width_mult: self.width_mult,
            in_channels: self.in_channels,
            dropout: self.dropout,
        }
    }

    /// The model's input shape `[1, C, H, W]`.
    pub fn input_shape(&self, batch: usize) -> Vec<usize> {
        let [c, h, w] = self.input.model_shape;
        vec![batch, c, h, w]
    }
}

/// A model loaded from a folder.
#[derive(Debug)]
pub struct SavedModel {
    /// The spec.
    pub spec: ModelSpec,
    /// The model with its trained weights.
    pub model: Box<dyn ZooModel>,
}

/// Writes `spec` and `model` into `dir` (created if needed); each file is written to a temporary
/// name and renamed, so a failure leaves no partial file.
pub fn save(dir: &Path, spec: &ModelSpec, model: &dyn ZooModel) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    // Burn writes the weights under a temporary name; one commit puts them in place.
    let weights = dir.join(WEIGHTS_FILE);
    let tmp = dir.join(format!(".{WEIGHTS_FILE}.tmp-{}", std::process::id()));
    model.save_file(&tmp)?;
    kiln_data::fsutil::commit_atomic(&tmp, &weights).map_err(|e| TrainError::io(&weights, e))?;
    let json = serde_json::to_string_pretty(spec).expect("spec serializes");
    write_atomic(&dir.join(SPEC_FILE), json.as_bytes())
}

/// Resolves `path` (a model folder, or its `model.bpk` / `model.json`) to the folder.
pub fn model_dir(path: &Path) -> PathBuf {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(SPEC_FILE) | Some(WEIGHTS_FILE) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        _ => path.to_path_buf(),
    }
}

/// Reads the spec of a model folder.
pub fn load_spec(path: &Path) -> Result<ModelSpec, TrainError> {
    let dir = model_dir(path);
    let spec_path = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&spec_path).map_err(|e| {
        TrainError::Saved(format!(
            "{} cannot be read ({e}); give the folder that `cargo xtask train --out` wrote (it holds {SPEC_FILE} and {WEIGHTS_FILE})",
            spec_path.display()
        ))
    })?;
    // The version first, so that a newer kiln's folder says so instead of naming a missing field.
    let version = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("format")?.as_u64());
    if let Some(v) = version.filter(|&v| v != SPEC_FORMAT as u64) {
        return Err(TrainError::Saved(format!(
            "{} is model format {v}, this kiln reads format {SPEC_FORMAT}; {}",
            spec_path.display(),
            if v > SPEC_FORMAT as u64 {
                "it was written by a newer kiln: update kiln to load it"
            } else {
                "retrain the model with this kiln"
            }
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| TrainError::Saved(format!("{} is not a kiln model spec: {e}", spec_path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_spec_of_another_format_is_refused_by_its_version() {
        let dir = std::env::temp_dir().join(format!("kiln-train-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(super::SPEC_FILE), r#"{"format": 7, "model": "lenet5", "new_field": 1}"#).unwrap();
        let err = super::load_spec(&dir).unwrap_err().to_string();
        assert!(err.contains("model format 7, this kiln reads format 1") && err.contains("newer kiln"), "{err}");
        std::fs::write(dir.join(super::SPEC_FILE), r#"{"format": 1, "model": "lenet5"}"#).unwrap();
        let err = super::load_spec(&dir).unwrap_err().to_string();
        assert!(err.contains("is not a kiln model spec: missing field"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Loads a model folder written by [`save`] (the architecture from `registry`, the weights from
/// `model.bpk`) on `device`.
pub fn load(registry: &Registry, path: &Path, device: &Device) -> Result<SavedModel, TrainError> {
    let spec = load_spec(path)?;
    let dir = model_dir(path);
    let mut model = registry
        .build(&spec.model, &spec.options(), device)
        .map_err(|e| TrainError::Saved(format!("{}: {e}", dir.join(SPEC_FILE).display())))?;
    model.load_file(&dir.join(WEIGHTS_FILE))?;
    Ok(SavedModel { spec, model })
}

/// Writes `bytes` to `path` atomically ([`kiln_data::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    kiln_data::write_atomic(path, bytes).map_err(|e| TrainError::io(path, e))
}
