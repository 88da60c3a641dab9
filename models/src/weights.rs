//! Loading torchvision / timm `state_dict`s (saved with `torch.save`) into zoo models.
//!
//! No model has a key table. The model's own trace names every Conv2d / BatchNorm / Linear by its
//! PyTorch module path (`features.3.conv.1.0`) and reports the Burn param ids of its tensors; Burn's
//! collector gives each param id's path in the Burn module (`blocks.2.dw.conv.weight`). Joining
//! the two maps every PyTorch key to its Burn tensor. burn-store's `PytorchStore` then reads the
//! file, transposes linear weights and renames norm parameters. Missing, unexpected or
//! mis-shaped keys are an error that lists them: never a silent partial load.

use kiln_analyze::printable;
use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot, PytorchStore};
use kiln_layers::trace::{Node, OpCost, Trace, Tracer};

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors loaded.
    pub applied: usize,
    /// Keys in the file that were ignored on purpose (`num_batches_tracked`).
    pub ignored: Vec<String>,
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file does not exist.
    #[error("weights file {0} not found")]
    NotFound(String),
    /// The file is not a readable PyTorch checkpoint.
    #[error("{path} is not a readable PyTorch state_dict (saved with torch.save): {}", printable(.reason))]
    NotPyTorch {
        /// The file.
        path: String,
        /// The reader's message, on one line.
        reason: String,
    },
    /// The file's pickle asks for something a torch.save state_dict never contains (a global
    /// other than the tensor rebuilders, a pickle bomb, a size larger than the file): refused
    /// before anything is read from it (see [`crate::pickle_guard`]).
    #[error(
        "{path} is refused: {}; kiln reads only the tensors of a state_dict saved with torch.save and runs no code from the file",
        printable(.reason)
    )]
    Refused {
        /// The file.
        path: String,
        /// What it asked for, on one line.
        reason: String,
    },
    /// Keys missing, unexpected or of the wrong shape.
    #[error("{path} does not match the model: {}", printable(&describe(.missing, .unexpected, .mismatched)))]
    Mismatch {
        /// The file.
        path: String,
        /// PyTorch keys the model needs that the file lacks.
        missing: Vec<String>,
        /// Keys in the file the model has no place for.
        unexpected: Vec<String>,
        /// Shape or dtype mismatches, one line each.
        mismatched: Vec<String>,
    },
    /// The model could not be traced (a bug in the model's `Trace`).
    #[error("cannot name the model's tensors: {0}")]
    Trace(String),
    /// A burnpack file could not be written or read, or does not fit the model.
    #[error("{path}: {}", printable(.reason))]
    Burnpack {
        /// The file.
        path: String,
        /// What went wrong, on one line.
        reason: String,
    },
}

/// Saves `model`'s parameters and buffers to the burnpack file `path`, through a temporary file in
/// the same folder that is renamed into place (no partial file on failure).
pub fn save_burnpack<M: burn::module::Module>(model: &M, path: &Path) -> Result<(), WeightError> {
    let err = |reason: String| WeightError::Burnpack { path: path.display().to_string(), reason };
    let tmp = path.with_extension("bpk.partial");
    model.clone().save_file(&tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(one_line(&e.to_string()))
    })?;
    // kiln's one commit path: synced, renamed, folder synced (a crash leaves the old file or the
    // new one); on failure the temporary file is removed.
    kiln_data::fsutil::commit_atomic(&tmp, path).map_err(|e| err(e.to_string()))
}

/// Loads a burnpack file written by [`save_burnpack`] into `model` (built with the same options).
pub fn load_burnpack<M: burn::module::Module>(model: M, path: &Path) -> Result<M, WeightError> {
    if !path.is_file() {
        return Err(WeightError::NotFound(path.display().to_string()));
    }
    let err = |reason: String| WeightError::Burnpack { path: path.display().to_string(), reason };
    check_burnpack_header(path).map_err(err)?;
    let record = burn::store::ModuleRecord::load(path)
        .map_err(|e| err(format!("not a readable Burn burnpack file ({})", one_line(&e.to_string()))))?;
    model.try_load_record(record).map_err(|e| {
        err(format!(
            "does not fit the model ({}); was it saved from the same model and options?",
            one_line(&e.to_string())
        ))
    })
}

/// Burn's burnpack reader allocates the metadata length the file's header claims (up to
/// `MAX_METADATA_SIZE`, 100 MiB) before it looks at the file's size, so the claim is checked
/// against the file first (found by kiln-fuzz: a 230 KB file whose mutated header made the reader
/// allocate 96 MiB). The header is read with burn-pack's own `Header`.
pub fn check_burnpack_header(path: &Path) -> Result<(), String> {
    use burn::store::burn_pack::{HEADER_SIZE, Header};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot be read ({e})"))?;
    let len = f.metadata().map_err(|e| format!("cannot be read ({e})"))?.len();
    let mut bytes = [0u8; HEADER_SIZE];
    f.read_exact(&mut bytes).map_err(|_| format!("is {len} bytes long, shorter than a burnpack header"))?;
    let header = Header::from_bytes(&bytes).map_err(|e| format!("has no burnpack header ({e})"))?;
    let metadata = header.metadata_size as u64;
    if HEADER_SIZE as u64 + metadata > len {
        return Err(format!(
            "claims {metadata} bytes of metadata but holds {len} bytes in all: the file is truncated or damaged"
        ));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe(missing: &[String], unexpected: &[String], mismatched: &[String]) -> String {
    let list = |v: &[String]| {
        let mut s = v.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 8 {
            s += &format!(", ... ({} in all)", v.len());
        }
        s
    };
    let mut parts = vec![];
    if !missing.is_empty() {
        parts.push(format!("missing keys [{}]", list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected keys [{}]", list(unexpected)));
    }
    if !mismatched.is_empty() {
        parts.push(format!("mismatched [{}]", list(mismatched)));
    }
    parts.join("; ")
}

/// Collects `(PyTorch key, Burn param id)` from a trace.
#[derive(Default)]
struct KeyCollector {
    scopes: Vec<String>,
    keys: Vec<(String, u64)>,
    next: usize,
}

impl Tracer for KeyCollector {
    fn enter(&mut self, name: &str) {
        self.scopes.push(name.to_string());
    }
    fn exit(&mut self) {
        self.scopes.pop();
    }
    fn op(&mut self, name: Option<&str>, _inputs: &[&Node], output: Vec<usize>, cost: OpCost) -> Node {
        let mut path = self.scopes.join(".");
        if let Some(n) = name {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(n);
        }
        for (suffix, id) in cost.tensors {
            self.keys.push((format!("{path}.{suffix}"), id));
        }
        self.next += 1;
        Node { id: self.next, shape: output }
    }
}

/// The PyTorch `state_dict` key of every tensor of `model`, with its path in the Burn module:
/// `[("features.0.0.weight", "stem.conv.weight"), ...]`. `input` is any shape the model accepts.
pub fn torch_keys<M: Module + Trace>(model: &M, input: &[usize]) -> Result<Vec<(String, String)>, WeightError> {
    let mut c = KeyCollector::default();
    model.trace(&mut c, Node { id: 0, shape: input.to_vec() }).map_err(|e| WeightError::Trace(e.to_string()))?;
    let burn_paths: HashMap<u64, String> = model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|t| t.param_id.map(|id| (id, t.name.clone())))
        .collect();
    c.keys
        .into_iter()
        .map(|(torch, id)| {
            let burn = burn_paths
                .get(&id)
                .ok_or_else(|| WeightError::Trace(format!("{torch}: param not found in the module")))?;
            // Keep PyTorch's parameter name (weight/bias): burn-store renames norm params itself.
            let prefix = burn.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            let suffix = torch.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
            Ok((torch.clone(), format!("{prefix}.{suffix}")))
        })
        .collect()
}

/// Loads a torchvision / timm `state_dict` into `model`. `input` is any input shape the model
/// accepts (used to trace it).
pub fn load_pytorch<M: Module + Trace>(model: &mut M, path: &Path, input: &[usize]) -> Result<LoadReport, WeightError> {
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(WeightError::NotFound(shown));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| WeightError::NotPyTorch { path: shown.clone(), reason: format!("cannot read it ({e})") })?;
    crate::pickle_guard::check_bytes(&bytes).map_err(|e| match e {
        crate::pickle_guard::GuardError::Malformed(reason) => WeightError::NotPyTorch { path: shown.clone(), reason },
        crate::pickle_guard::GuardError::Refused(reason) => WeightError::Refused { path: shown.clone(), reason },
    })?;
    drop(bytes);
    let keys = torch_keys(model, input)?;
    let expected: Vec<String> = keys.iter().map(|(t, _)| t.clone()).collect();
    let remapper = KeyRemapper::from_patterns(
        keys.iter().map(|(torch, burn)| (format!("^{}$", regex_escape(torch)), burn.clone())).collect::<Vec<_>>(),
    )
    .map_err(|e| WeightError::Trace(e.to_string()))?;

    // Read the file's keys first: a truncated or foreign file fails here, in one line.
    let mut probe = PytorchStore::from_file(path).map_indices_contiguous(false);
    let file_keys = burn::store::ModuleStore::keys(&mut probe).map_err(|e| WeightError::NotPyTorch {
        path: shown.clone(),
        reason: e.to_string().lines().next().unwrap_or("").to_string(),
    })?;
    let ignored: Vec<String> = file_keys.iter().filter(|k| k.ends_with("num_batches_tracked")).cloned().collect();
    let missing: Vec<String> = expected.iter().filter(|k| !file_keys.contains(k)).cloned().collect();
    let unexpected: Vec<String> =
        file_keys.iter().filter(|k| !k.ends_with("num_batches_tracked") && !expected.contains(k)).cloned().collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(WeightError::Mismatch { path: shown, missing, unexpected, mismatched: vec![] });
    }

    let mut store =
        PytorchStore::from_file(path).map_indices_contiguous(false).remap(remapper).allow_partial(true).validate(false);
    // Apply to a copy so a failed load leaves the caller's model untouched.
    let mut candidate = model.clone();
    let result = candidate.load_from(&mut store).map_err(|e| WeightError::NotPyTorch {
        path: shown.clone(),
        reason: e.to_string().lines().next().unwrap_or("").to_string(),
    })?;
    let mismatched: Vec<String> = result.errors.iter().map(|e| e.to_string().replace('\n', " ")).collect();
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    if !mismatched.is_empty() || !missing.is_empty() {
        return Err(WeightError::Mismatch { path: shown, missing, unexpected: vec![], mismatched });
    }
    *model = candidate;
    Ok(LoadReport { applied: result.applied.len(), ignored })
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why [`run_pretrained`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Unknown model or bad option.
    #[error(transparent)]
    Zoo(#[from] crate::ZooError),
    /// Weights could not be loaded.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// Input / output file problems.
    #[error(transparent)]
    Npy(#[from] crate::npy::NpyError),
    /// The input does not fit the model.
    #[error("input of shape {shape:?} does not fit {model}: {reason}")]
    Shape {
        /// Model.
        model: String,
        /// Input shape.
        shape: Vec<usize>,
        /// Why.
        reason: String,
    },
}

/// Builds `name` from `registry`, loads a PyTorch `state_dict` into it, and runs it in inference
/// mode on `input` (NCHW float32). What `cargo xtask run` does, as a library call.
pub fn run_pretrained(
    registry: &crate::Registry,
    name: &str,
    options: &crate::ModelOptions,
    weights: &Path,
    input: &crate::npy::NpyArray,
    device: &burn::tensor::Device,
) -> Result<crate::npy::NpyArray, RunError> {
    let mut model = registry.build(name, options, device)?;
    let shape_err = |reason: String| RunError::Shape { model: name.to_string(), shape: input.shape.clone(), reason };
    if input.shape.len() != 4 {
        return Err(shape_err("expected a rank-4 NCHW array".into()));
    }
    // Check the shape by tracing before touching any tensor: a bad shape is an error, not a panic.
    kiln_analyze::analyze(model.as_ref(), name, &input.shape).map_err(|e| shape_err(e.to_string()))?;
    model.load_pytorch(weights, &input.shape)?;
    let shape: [usize; 4] = input.shape.clone().try_into().expect("rank 4");
    let x = burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(input.data.clone(), shape), device);
    let (out_shape, data) = match model.forward(x) {
        crate::Output::Logits(t) => (t.dims().to_vec(), t.into_data()),
        crate::Output::Map(t) => (t.dims().to_vec(), t.into_data()),
    };
    let data = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| shape_err(format!("{e:?}")))?;
    Ok(crate::npy::NpyArray { shape: out_shape, data })
}
