//! The whole pipeline behind `cargo xtask compress`, as a library call: measure the baseline,
//! then each requested stage in a fixed order (distillation fine-tune, channel pruning,
//! unstructured pruning, BN folding, int8 quantization), measuring after each, and write
//! `report.json`, `report.md` and the compressed model into the output folder.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::distill::Distill;
use crate::error::CompressError;
use crate::eval::{FinetuneConfig, finetune};
use crate::io::{SavedPlan, save_compressed};
use crate::model::Compressible;
use crate::qat::{QatConfig, qat};
use crate::quantize::{QuantConfig, quantize};
use crate::report::{CompressReport, Measure, StageRow, measure};
use crate::structured::{ChannelPruneConfig, prune_channels};
use crate::unstructured::{Scope, cubic_schedule, prune_magnitude};

/// What to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// Structured channel pruning.
    pub prune_channels: Option<ChannelPruneConfig>,
    /// Unstructured sparsity (global magnitude, cubic schedule of `prune_steps` steps).
    pub prune_unstructured: Option<f64>,
    /// Steps of the unstructured schedule (each followed by `finetune_epochs / steps`, at least 1
    /// epoch when fine-tuning).
    pub prune_steps: usize,
    /// Fold batch norms.
    pub fold_bn: bool,
    /// int8 quantization.
    pub quantize: Option<QuantConfig>,
    /// Quantization-aware training after int8 PTQ (needs `quantize`): adds a
    /// `quantize-int8-qat` stage, which becomes the final model.
    #[serde(default)]
    pub qat: Option<QatConfig>,
    /// Fine-tuning after each pruning stage (and the distillation epochs).
    pub finetune: FinetuneConfig,
    /// Distillation weights `(alpha, temperature, hint weight)` when a teacher is given.
    pub distill: (f64, f64, f64),
    /// Latency runs per stage (median reported).
    pub latency_runs: usize,
    /// Name of the latency backend, for the report.
    pub backend: String,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            prune_channels: None,
            prune_unstructured: None,
            prune_steps: 3,
            fold_bn: false,
            quantize: None,
            qat: None,
            finetune: FinetuneConfig { epochs: 0, ..FinetuneConfig::default() },
            distill: (0.1, 4.0, 0.0),
            latency_runs: 100,
            backend: "flex".into(),
        }
    }
}

/// The data a pipeline needs.
#[derive(Clone, Debug)]
pub struct PipelineData<'a> {
    /// Fine-tuning and calibration images.
    pub train: &'a ImageDataset,
    /// Evaluation images.
    pub test: &'a ImageDataset,
}

/// Runs the pipeline on `model` (on the autodiff `train_device`); `eval_device` measures.
/// `plan` names the architecture (saved with the model). Writes into `out`.
#[allow(clippy::too_many_arguments)]
pub fn compress<M: Compressible, T: Compressible>(
    model: M,
    plan: &SavedPlan,
    teacher: Option<T>,
    data: PipelineData<'_>,
    cfg: &PipelineConfig,
    train_device: &Device,
    eval_device: &Device,
    out: &Path,
) -> Result<CompressReport, CompressError> {
    let [c, h, w]: [usize; 3] = plan
        .input
        .clone()
        .try_into()
        .map_err(|_| CompressError::InvalidOption(format!("input must be [C, H, W], got {:?}", plan.input)))?;
    let input = [1, c, h, w];
    let meas = Measure { test: data.test, input: [c, h, w], runs: cfg.latency_runs };
    let mut plan = plan.clone();
    let mut stages: Vec<StageRow> = vec![];
    let mut notes = vec![
        "params / nonzero_params: trainable tensors from the trace (BatchNorm running statistics excluded)".to_string(),
        "macs: the analyzer's dense count at batch 1; zeros from unstructured pruning are still counted (dense kernels multiply them)".to_string(),
        "sparse_macs: each conv / linear layer's MACs times the nonzero fraction of its weight (what a sparse kernel would compute; kiln runs dense kernels, so latency does not follow it)".to_string(),
        format!(
            "latency_ms: median of {} batch-1 forward passes on {}, after 3 warm-up passes",
            cfg.latency_runs, cfg.backend
        ),
        "file_bytes: the stage's saved model (burnpack + plan; .kq8 for int8)".to_string(),
    ];
    let stage_dir = |i: usize, name: &str| -> PathBuf { out.join("stages").join(format!("{i}-{name}")) };
    let record = |name: &str, m: &M, plan: &SavedPlan, stages: &mut Vec<StageRow>| -> Result<(), CompressError> {
        let dir = stage_dir(stages.len(), name);
        let bytes = save_compressed(m, plan, &dir)?;
        let row = measure(name, &m.valid(), bytes, &meas, eval_device)?;
        stages.push(row);
        Ok(())
    };
    let mut model = model;
    if let Some(t) = &teacher
        && cfg.distill.2 > 0.0
    {
        crate::distill::check_hint(&model.valid(), &t.valid(), [c, h, w], eval_device)?;
    }
    record("baseline", &model, &plan, &mut stages)?;
    let ft = |m: M, t: Option<&Distill<T>>, epochs: usize| -> M {
        if epochs == 0 {
            return m;
        }
        let cfg = FinetuneConfig { epochs, ..cfg.finetune.clone() };
        finetune(m, data.train, &cfg, t, train_device).0
    };
    let distill = teacher.map(|t| Distill {
        teacher: t.valid(),
        alpha: cfg.distill.0,
        temperature: cfg.distill.1,
        hint_weight: cfg.distill.2,
    });
    if let Some(d) = &distill {
        model = ft(model, Some(d), cfg.finetune.epochs.max(1));
        record("distill", &model, &plan, &mut stages)?;
        notes.push(format!("distill: alpha {}, T {}, hint weight {}", d.alpha, d.temperature, d.hint_weight));
    }
    if let Some(pc) = &cfg.prune_channels {
        let (m, p) = prune_channels(model, &input, pc)?;
        model = ft(m, distill.as_ref(), cfg.finetune.epochs);
        notes.push(format!(
            "prune-channels: {} groups pruned, {} left whole (network input/output, concat, split, grouped convs)",
            p.groups.len(),
            p.skipped
        ));
        record("prune-channels", &model, &plan, &mut stages)?;
    }
    if let Some(s) = cfg.prune_unstructured {
        let steps = cubic_schedule(s, cfg.prune_steps.max(1));
        let per = if cfg.finetune.epochs == 0 { 0 } else { (cfg.finetune.epochs / steps.len()).max(1) };
        for target in steps {
            model = prune_magnitude(model, &input, target, Scope::Global)?;
            model = ft(model, distill.as_ref(), per);
        }
        // Saved with the zeros baked in (no masks: half the bytes of the masked model).
        model = model.materialize();
        record("prune-unstructured", &model, &plan, &mut stages)?;
    }
    if cfg.fold_bn {
        let n = model.fold_bn();
        plan.bn_folded = true;
        notes.push(format!("fold-bn: {n} batch norms folded into their convolutions"));
        record("fold-bn", &model, &plan, &mut stages)?;
    }
    let mut sqnr = vec![];
    if let Some(qc) = &cfg.quantize {
        let valid = model.valid();
        let q = quantize(&valid, [c, h, w], data.train, qc, eval_device)?;
        let dir = stage_dir(stages.len(), "quantize-int8");
        std::fs::create_dir_all(&dir).map_err(|e| CompressError::io(&dir, e))?;
        let bytes = q.save(&dir.join("model.kq8"))?;
        let deq = q.dequantized_model(valid);
        let mut row = measure("quantize-int8", &deq, bytes, &meas, eval_device)?;
        if qc.activations {
            row.accuracy = q.accuracy(data.test, eval_device)?;
        }
        stages.push(row);
        sqnr = q.sqnr.clone();
        notes.push(format!(
            "quantize-int8: {:?} weights, {:?} calibration, activations {}; accuracy with int8 weights{}; latency of the dequantized f32 model (Burn's CPU backends have no int8 kernels)",
            qc.granularity,
            qc.calibration,
            if qc.activations { "quantized (uint8 affine)" } else { "f32" },
            if qc.activations { " and fake-quantized activations" } else { "" },
        ));
        if let Some(qa) = cfg.qat.as_ref().filter(|qa| qa.epochs > 0) {
            let out = qat(model, [c, h, w], data.train, qc, qa, train_device)?;
            let dir = stage_dir(stages.len(), "quantize-int8-qat");
            std::fs::create_dir_all(&dir).map_err(|e| CompressError::io(&dir, e))?;
            let bytes = out.quantized.save(&dir.join("model.kq8"))?;
            let deq = out.quantized.dequantized_model(out.model.valid());
            let mut row = measure("quantize-int8-qat", &deq, bytes, &meas, eval_device)?;
            if qc.activations {
                row.accuracy = out.quantized.accuracy(data.test, eval_device)?;
            }
            stages.push(row);
            sqnr = out.quantized.sqnr.clone();
            notes.push(format!(
                "quantize-int8-qat: {} epochs of quantization-aware training (Adam lr {}, fake-quant with a straight-through estimator, EMA activation observers {}) from the model before quantize-int8, exported with min-max weight scales; the SQNR table is this stage's",
                qa.epochs, qa.lr, qa.ema
            ));
        }
    }
    // The final model: the last stage's folder, copied to `out/model`.
    let last = stages.len() - 1;
    let src = stage_dir(last, &stages[last].stage);
    // Written beside it, then swapped in whole: out/model is always a complete model (the
    // previous run's or this one's).
    let dst = out.join("model");
    let new = out.join(format!(".model.new-{}", std::process::id()));
    kiln_data::fsutil::remove_temporaries(out);
    std::fs::create_dir_all(&new).map_err(|e| CompressError::io(&new, e))?;
    for e in std::fs::read_dir(&src).map_err(|e| CompressError::io(&src, e))? {
        let e = e.map_err(|e| CompressError::io(&src, e))?;
        let bytes = std::fs::read(e.path()).map_err(|err| CompressError::io(e.path(), err))?;
        write_atomic(&new.join(e.file_name()), &bytes)?;
    }
    kiln_data::fsutil::replace_dir(&new, &dst).map_err(|e| CompressError::io(&dst, e))?;
    let report = CompressReport {
        model: plan.model.clone(),
        input: plan.input.clone(),
        backend: cfg.backend.clone(),
        stages,
        sqnr,
        notes,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| CompressError::io(out, e))?;
    write_atomic(&out.join("report.json"), json.as_bytes())?;
    write_atomic(&out.join("report.md"), report.to_markdown().as_bytes())?;
    Ok(report)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CompressError> {
    kiln_data::write_atomic(path, bytes).map_err(|e| CompressError::io(path, e))
}
