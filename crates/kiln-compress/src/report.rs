//! The before / after report: one row per compression stage.

use std::collections::HashSet;

use burn::tensor::Device;
use kiln_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::eval::{accuracy, latency_ms};
use crate::graph::{Graph, param_values};
use crate::model::Compressible;

/// One stage of a compression pipeline, measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageRow {
    /// Stage name (`baseline`, `prune-unstructured`, `fold-bn`, `quantize-int8`...).
    pub stage: String,
    /// Trainable parameters (the analyzer's count: the tensors' sizes).
    pub params: u64,
    /// Trainable parameters that are not zero.
    pub nonzero_params: u64,
    /// Bytes of the stage's model file(s) on disk.
    pub file_bytes: u64,
    /// Dense multiply-accumulates of one forward pass at batch 1 (the analyzer's count; zeros
    /// left by unstructured pruning are still counted, since dense kernels still multiply them).
    pub macs: u64,
    /// Multiply-accumulates with a nonzero weight: each convolution's and linear layer's MACs
    /// scaled by the fraction of its weights that are not zero (what a sparse kernel would
    /// compute; equal to `macs` without unstructured pruning).
    #[serde(default)]
    pub sparse_macs: u64,
    /// Top-1 accuracy on the test split, in `[0, 1]`.
    pub accuracy: f64,
    /// Median latency of a batch-1 forward pass, milliseconds.
    pub latency_ms: f64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompressReport {
    /// Model name.
    pub model: String,
    /// Input `[C, H, W]`.
    pub input: Vec<usize>,
    /// Backend the latency was measured on.
    pub backend: String,
    /// Stages, first the baseline.
    pub stages: Vec<StageRow>,
    /// Per-layer quantization error, when a quantization stage ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sqnr: Vec<crate::quantize::LayerSqnr>,
    /// What each number means.
    pub notes: Vec<String>,
}

impl CompressReport {
    /// Markdown: the stage table, ratios against the baseline and the per-layer SQNR.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Compression of {} (input {:?}, latency on {})\n\n| stage | params | nonzero | file bytes | MACs | MACs (nonzero weights) | accuracy | latency (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
            self.model, self.input, self.backend
        );
        for r in &self.stages {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {:.2} % | {:.3} |\n",
                r.stage,
                r.params,
                r.nonzero_params,
                r.file_bytes,
                r.macs,
                r.sparse_macs,
                100.0 * r.accuracy,
                r.latency_ms
            );
        }
        if let (Some(b), Some(l)) = (self.stages.first(), self.stages.last()) {
            let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
            s += &format!(
                "\nFirst -> last stage: nonzero params {:.2}x fewer, file {:.2}x smaller, MACs {:.2}x fewer ({:.2}x counting nonzero weights only), accuracy {:+.2} points, latency {:.2}x.\n",
                ratio(b.nonzero_params, l.nonzero_params),
                ratio(b.file_bytes, l.file_bytes),
                ratio(b.macs, l.macs),
                ratio(b.sparse_macs, l.sparse_macs),
                100.0 * (l.accuracy - b.accuracy),
                if b.latency_ms > 0.0 { l.latency_ms / b.latency_ms } else { f64::NAN },
            );
        }
        if !self.sqnr.is_empty() {
            s += "\n## Per-layer SQNR (dB)\n\n| layer | weights | activations |\n|---|---:|---:|\n";
            for q in &self.sqnr {
                s += &format!("| {} | {:.1} | {:.1} |\n", q.layer, q.weight_db, q.activation_db);
            }
        }
        if !self.notes.is_empty() {
            s += "\n";
            for n in &self.notes {
                s += &format!("- {n}\n");
            }
        }
        s
    }
}

/// Parameter counts from the trace: `(params, nonzero params)` (running statistics excluded).
pub fn count_params<M: Compressible>(model: &M, input: &[usize]) -> Result<(u64, u64), CompressError> {
    let m = model.clone().materialize();
    let graph = Graph::of(&m, input)?;
    let ids: HashSet<u64> = graph
        .ops
        .iter()
        .flat_map(|o| o.tensors.iter().filter(|(s, _)| !s.starts_with("running")).map(|(_, id)| *id))
        .collect();
    let (mut total, mut nonzero) = (0u64, 0u64);
    for (id, v) in param_values(&m) {
        if ids.contains(&id) {
            total += v.values.len() as u64;
            nonzero += v.values.iter().filter(|x| **x != 0.0).count() as u64;
        }
    }
    Ok((total, nonzero))
}

/// MACs with a nonzero weight: the analyzer's MACs of every convolution and linear layer times
/// the nonzero fraction of its weight; other layers' MACs unchanged.
pub fn sparse_macs<M: Compressible>(
    model: &M,
    report: &kiln_analyze::Report,
    input: &[usize],
) -> Result<u64, CompressError> {
    let m = model.clone().materialize();
    let graph = Graph::of(&m, input)?;
    let values = param_values(&m);
    let mut density: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for op in graph.weighted() {
        if let Some(v) = op.tensor("weight").and_then(|id| values.get(&id)) {
            let nz = v.values.iter().filter(|x| **x != 0.0).count();
            density.insert(op.path.as_str(), nz as f64 / v.values.len().max(1) as f64);
        }
    }
    let mut total = 0f64;
    for l in &report.layers {
        let macs = l.macs.unwrap_or(0) as f64;
        let is_weighted = l.op.is_weighted();
        total += match density.get(l.name.as_str()) {
            Some(d) if is_weighted => macs * d,
            _ => macs,
        };
    }
    Ok(total.round() as u64)
}

/// How a stage is measured.
#[derive(Clone, Debug)]
pub struct Measure<'a> {
    /// Test data.
    pub test: &'a ImageDataset,
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    /// Latency runs (median reported), after 3 warm-up runs.
    pub runs: usize,
}

/// Measures one stage of an inference-mode model (`model.valid()`).
pub fn measure<M: Compressible>(
    stage: &str,
    model: &M,
    file_bytes: u64,
    m: &Measure<'_>,
    device: &Device,
) -> Result<StageRow, CompressError> {
    let [c, h, w] = m.input;
    let input = [1, c, h, w];
    let (params, nonzero_params) = count_params(model, &input)?;
    let report = kiln_analyze::analyze(model, stage, &input)?;
    let macs = report.total.macs;
    let sparse_macs = sparse_macs(model, &report, &input)?;
    Ok(StageRow {
        stage: stage.to_string(),
        params,
        nonzero_params,
        file_bytes,
        macs,
        sparse_macs,
        accuracy: accuracy(model, m.test, 250, device),
        latency_ms: latency_ms(model, input, 3, m.runs, device),
    })
}
