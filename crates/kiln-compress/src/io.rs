//! Saving and reloading compressed models.
//!
//! A compressed model is a folder with `model.bpk` (Burn's burnpack: weights, and the pruning
//! masks as parameters) and `compress.json` ([`SavedPlan`]: every tensor's shape — channel
//! pruning changes them —, whether batch norms were folded, and which weights carry masks).
//! Loading builds the architecture fresh, replays the structure (fold, reshape, sync depthwise
//! groups, attach masks) and then loads the burnpack, whose own checks catch any mismatch.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::graph::{param_values, replace_params};
use crate::model::Compressible;
use crate::unstructured::{attach_masks, masked_params};

/// The structure of a compressed model, saved next to its weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedPlan {
    /// Registered model name.
    pub model: String,
    /// Input `[C, H, W]`.
    pub input: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
    /// Width multiplier it was built with.
    pub width_mult: f64,
    /// Batch norms folded before the weights were saved.
    pub bn_folded: bool,
    /// Shape of every tensor, by Burn path.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Weights carrying a pruning mask (Burn path, mask length).
    pub masks: Vec<(String, usize)>,
}

impl SavedPlan {
    /// The plan of a model as built: `model` (registered name) with `input` `[C, H, W]`,
    /// `num_classes` and `width_mult`; nothing folded, no masks, and the shapes left for
    /// [`save_compressed`] to fill in from the model it saves.
    pub fn new(model: impl Into<String>, input: Vec<usize>, num_classes: usize, width_mult: f64) -> Self {
        Self {
            model: model.into(),
            input,
            num_classes,
            width_mult,
            bn_folded: false,
            shapes: BTreeMap::new(),
            masks: vec![],
        }
    }
}

/// File names inside a compressed-model folder.
pub const WEIGHTS_FILE: &str = "model.bpk";
/// See [`WEIGHTS_FILE`].
pub const PLAN_FILE: &str = "compress.json";

/// Saves `model` to `dir` (created if needed): `model.bpk` and `compress.json`. Returns the bytes
/// of `model.bpk`.
pub fn save_compressed<M: Compressible>(model: &M, plan: &SavedPlan, dir: &Path) -> Result<u64, CompressError> {
    std::fs::create_dir_all(dir).map_err(|e| CompressError::io(dir, e))?;
    // Batch-norm running statistics updated in training are merged into the stored value lazily
    // (Burn's `RunningState`); `valid()` merges them, in place, so the file holds the same
    // statistics that inference uses.
    let _ = model.valid();
    let mut plan = plan.clone();
    plan.masks = masked_params(model);
    plan.shapes = param_values(model).into_values().map(|p| (p.path, p.shape)).collect();
    let weights = dir.join(WEIGHTS_FILE);
    let tmp = dir.join("model.bpk.tmp");
    model.clone().save_file(&tmp).map_err(|e| CompressError::io(&tmp, e))?;
    kiln_data::fsutil::commit_atomic(&tmp, &weights).map_err(|e| CompressError::io(&weights, e))?;
    let json = serde_json::to_string_pretty(&plan).map_err(|e| CompressError::io(dir, e))?;
    let p = dir.join(PLAN_FILE);
    kiln_data::write_atomic(&p, json.as_bytes()).map_err(|e| CompressError::io(&p, e))?;
    std::fs::metadata(&weights).map(|m| m.len()).map_err(|e| CompressError::io(&weights, e))
}

/// Reads `compress.json` from `dir`.
pub fn read_plan(dir: &Path) -> Result<SavedPlan, CompressError> {
    let p = dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| CompressError::io(&p, format!("{e}; is this a folder written by `cargo xtask compress`?")))?;
    serde_json::from_str(&text).map_err(|e| CompressError::bad_file(&p, e.to_string()))
}

/// Loads a compressed model saved by [`save_compressed`] into `fresh`, a model built with the
/// same architecture and options (uncompressed).
pub fn load_compressed<M: Compressible>(mut fresh: M, dir: &Path) -> Result<M, CompressError> {
    let plan = read_plan(dir)?;
    if plan.bn_folded {
        fresh.fold_bn();
    }
    let current = param_values(&fresh);
    let mut new = HashMap::new();
    for (id, p) in &current {
        let shape = plan.shapes.get(&p.path).ok_or_else(|| {
            CompressError::bad_file(
                dir.join(PLAN_FILE),
                format!("tensor {} of the model is not in the plan; wrong model name or options?", p.path),
            )
        })?;
        if *shape != p.shape {
            new.insert(*id, (shape.clone(), vec![0.0; shape.iter().product()]));
        }
    }
    let mut m = replace_params(fresh, &new);
    m.sync_groups();
    let masks: HashMap<String, Vec<f32>> = plan.masks.iter().map(|(p, n)| (p.clone(), vec![1.0; *n])).collect();
    let m = attach_masks(m, &masks);
    let w = dir.join(WEIGHTS_FILE);
    if !w.exists() {
        return Err(CompressError::io(&w, "not found"));
    }
    m.try_load_file(&w).map_err(|e| CompressError::bad_file(&w, e.to_string()))
}
