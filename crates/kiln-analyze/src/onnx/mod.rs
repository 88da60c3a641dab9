//! Analysis of ONNX files: the same [`Report`] as for zoo models, for any model exported from
//! PyTorch (either exporter), read at run time.
//!
//! ```ignore
//! let report = kiln_analyze::onnx::analyze_file("resnext50.onnx".as_ref(), Some(&[1, 3, 224, 224]), 1)?;
//! println!("{}", report.to_table(None));
//! ```
//!
//! ## Why a hand-written protobuf reader, not `onnx-ir` or a protobuf crate
//!
//! - **No weights are materialized.** Analysis needs the dims and element type of every
//!   initializer, never its values. The reader borrows the file's bytes and skips each tensor's
//!   `raw_data` by its length; `onnx-ir` converts every initializer into a tensor, so a 100 MB
//!   model costs 100 MB more and the copy. External data (`model.onnx.data`, which the default
//!   exporter writes beside the graph) is opened only for the few small integer shape constants
//!   that live there, at the recorded offset, with the range checked against the file.
//! - **No build-time code generation** (`prost-build` / `protoc`) and no new dependency: the
//!   subset of `onnx.proto` read here (model, graph, node, attribute, tensor, value info, type and
//!   shape, opset, external-data entries) is ~300 lines.
//! - **Safe on hostile input.** Every length is checked against the bytes that remain before
//!   it is used; varints are at most 10 bytes; the nesting is fixed (sub-graphs of control-flow
//!   ops are skipped by length, not parsed, so nothing recurses); nothing is allocated beyond what
//!   the file's own bytes account for; external data paths must be plain names inside the model's
//!   folder. A file that is not ONNX, or is truncated, is one error, never a panic.
//!
//! ## What the analysis does
//!
//! Shape inference runs over every node in order, starting from the graph input's shape (dynamic
//! dims bound from `input`); the shape arithmetic exporters emit (`Shape`, `Gather`, `Concat`,
//! `Unsqueeze`, `Slice`, `Cast`, `Reshape` with `0` / `-1`, `ConstantOfShape`, `Range`, ...) is
//! folded to constants. Each op that touches the input becomes a row with kiln's cost formulas
//! (those of `kiln_layers::trace::cost`, the zoo's), recorded on the same [`crate::Analyzer`]
//! that analyzes zoo models, so receptive fields, effective stride and padding along every path,
//! memory and the JSON schema are the zoo's. An op without a formula (or of an unknown domain) is
//! a `partial` row naming it; its output shape is taken from the file's `value_info` when given.

mod graph;
mod proto;
mod tensor;
mod wire;

use std::path::Path;

use crate::report::Report;

use crate::printable;
pub use graph::MAX_OPSET;

/// Why an ONNX file could not be analyzed.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file (or its external data) could not be read.
    #[error("{}", printable(.0))]
    Io(String),
    /// Not an ONNX model, truncated, or inconsistent.
    #[error("not a valid ONNX model: {}", printable(.0))]
    Malformed(String),
    /// The input shape is dynamic and was not given.
    #[error("{}", printable(.0))]
    Dynamic(String),
    /// The given input shape does not fit the model.
    #[error("{}", printable(.0))]
    Input(String),
    /// Shapes do not fit an op.
    #[error("shape inference failed at {}", printable(.0))]
    Shape(String),
}

/// Analyzes ONNX bytes. `name` is the report's model name; `dir` is where external data files
/// are looked up (`None`: the model must not need any). `input` is the first graph input's shape,
/// with or without the batch dim (then `batch` is prepended); `None` uses the file's static
/// shape.
pub fn analyze_bytes(
    bytes: &[u8],
    name: &str,
    dir: Option<&Path>,
    input: Option<&[usize]>,
    batch: usize,
) -> Result<Report, OnnxError> {
    let model = proto::model(bytes)?;
    if !model.has_graph || model.graph.nodes.is_empty() {
        return Err(OnnxError::Malformed("the file holds no graph (is it an ONNX model?)".into()));
    }
    if model.ir_version <= 0 {
        return Err(OnnxError::Malformed("no ir_version (is it an ONNX model?)".into()));
    }
    graph::analyze_model(&model, name, dir, input, batch.max(1))
}

/// Reads and analyzes an ONNX file (see [`analyze_bytes`]); external data is looked up beside it.
pub fn analyze_file(path: &Path, input: Option<&[usize]>, batch: usize) -> Result<Report, OnnxError> {
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Io(format!("{}: {e}", path.display())))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let dir = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    analyze_bytes(&bytes, name, dir, input, batch)
}
