//! # kiln-compress
//!
//! Making zoo models small, with a report that tells the truth about what was gained: params,
//! nonzero params, bytes on disk, MACs (the analyzer's), accuracy and measured batch-1 latency,
//! one row per stage ([`StageRow`]).
//!
//! - **Unstructured magnitude pruning** ([`unstructured`]): per-layer or global threshold, cubic
//!   iterative schedule, persistent masks (a Burn `Reparameterization`, kept through saving,
//!   loading and fine-tuning), and [`unstructured::materialize`] to bake the zeros in.
//! - **Structured channel pruning** ([`structured`]): removes whole filters and the matching
//!   inputs downstream, with dependency groups read from the model's trace (residual adds tie
//!   channels together, depthwise convolutions pass them through); importance by L1, L2 or BN
//!   scale; `round_to` a multiple of N. The result is a genuinely smaller model of the same Rust
//!   type, saved with its channel plan and reloaded.
//! - **BN folding** ([`Compressible::fold_bn`]).
//! - **int8 quantization** ([`quantize`]): per-tensor / per-channel weights, activation
//!   observers, min-max / percentile / MSE calibration, per-layer SQNR, a `.kq8` file ~4x smaller.
//! - **Quantization-aware training** ([`qat`]): fine-tuning through fake-quantized weights and
//!   activations (straight-through estimator, EMA activation observers), exported as PTQ is.
//! - **Distillation** ([`distill`]): Hinton's soft-target loss and a FitNets hint, used by
//!   [`finetune`].
//!
//! Library code takes a `&Device`; the CLI (`cargo xtask compress`) picks the backend.

pub mod distill;
pub mod error;
pub mod eval;
pub mod graph;
pub mod interpret;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod qat;
pub mod quantize;
pub mod report;
pub mod structured;
pub mod unstructured;

pub use distill::{Distill, distillation_loss, hint_loss};
pub use error::CompressError;
pub use eval::{FinetuneConfig, accuracy, finetune, latency_ms, train_epochs};
pub use graph::{Graph, OpNode};
pub use io::{SavedPlan, load_compressed, save_compressed};
pub use model::Compressible;
pub use pipeline::{PipelineConfig, PipelineData, compress};
pub use qat::{QatConfig, QatOutcome, qat};
pub use quantize::{Calibration, Granularity, QuantConfig, Quantized, quantize};
pub use report::{CompressReport, Measure, StageRow, measure};
pub use structured::{ChannelPlan, ChannelPruneConfig, Importance, prune_channels, zero_channels};
pub use unstructured::{Scope, prune_magnitude};
