//! # kiln-analyze
//!
//! Exact, per-layer cost analysis of any module that implements [`kiln_layers::Trace`]:
//! output shapes, trainable parameters and buffers, MACs and FLOPs, weight and activation memory
//! with a peak-memory estimate for inference, and the receptive field, effective stride and
//! effective padding of every output along every path of the graph.
//!
//! The analyzer knows no model and no op by name: each op reports its own cost (the formulas live
//! beside the ops, in `kiln_layers::trace::cost`), and the analyzer aggregates what the model's
//! own `trace` walk reports. A new op or model is analyzed as soon as it implements `Trace`.
//!
//! ```ignore
//! let report = kiln_analyze::analyze(&model, "mobilenet_v2", &[1, 3, 224, 224])?;
//! println!("{}", report.to_table(None));
//! ```
//!
//! Models exported to ONNX (from PyTorch or elsewhere) get the same report from
//! [`onnx::analyze_file`], without Python and without reading their weights.

mod analyzer;
pub mod onnx;
mod report;

pub use analyzer::{Analyzer, analyze};
pub use report::{Conventions, Layer, Report, Rf, Status, Total, printable, thousands};

/// Why an analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The input shape does not fit the model.
    #[error("input {input:?} does not fit the model: {source}")]
    Trace {
        /// The input shape.
        input: Vec<usize>,
        /// What the model rejected.
        source: kiln_layers::TraceError,
    },
    /// The input shape itself is malformed.
    #[error("bad input shape {0:?}: every dimension must be positive")]
    BadInput(Vec<usize>),
}
