//! # kiln-layers
//!
//! The building blocks of modern CNNs that Burn lacks, and the blocks kiln's model zoo is made
//! of. Every layer is a `Config` + `Module` pair that runs on any Burn device (flex, ndarray,
//! wgpu) and under autodiff, documents its shapes and its PyTorch twin, and implements
//! [`trace::Trace`] so that `kiln-analyze` can report its exact cost without running it.
//!
//! Burn's own layers are reused, not rewritten: `Conv2d` (dilation, groups, 1x1, depthwise),
//! `ConvTranspose2d`, pooling, `BatchNorm`, `Dropout`, `Linear`, `PixelUnshuffle` — kiln adds
//! [`trace::Trace`] for them in [`burn_impls`].
//!
//! It also defines [`OpKind`] (what a traced op is, shared by the analyzer, pruning, quantization
//! and the reports) and the blocks' compression rules ([`hooks`]: BN folding, group sync, running
//! statistics unsharing).
//!
//! Dependencies: Burn, `kiln-kernels` (the convolutions, pooling and batch norm run through its
//! CPU kernels on flex / ndarray, Burn's ops elsewhere) and serde (an [`OpKind`] serializes as its
//! name); no analyzer, trainer or GPU backend is pulled in.

pub mod activation;
pub mod burn_impls;
pub mod channel_shuffle;
pub mod conv_bn_act;
pub mod depthwise_separable;
pub mod focus;
pub mod hooks;
pub mod inverted_residual;
pub mod max_unpool;
pub mod op_kind;
pub mod seeded;
pub mod shortcut;
pub mod squeeze_excite;
pub mod trace;
pub mod upsample;

pub use activation::{Act, ActKind};
pub use channel_shuffle::{ChannelShuffle, ChannelShuffleConfig};
pub use conv_bn_act::{ConvBnAct, ConvBnActConfig, bn_act, fold_bn_into_conv};
pub use depthwise_separable::{DepthwiseSeparable, DepthwiseSeparableConfig};
pub use focus::{Focus, FocusConfig, space_to_depth};
pub use hooks::{fold_bn_keep, sync_depthwise, unshare_bn};
pub use inverted_residual::{InvertedResidual, InvertedResidualConfig, IrStyle};
pub use max_unpool::{MaxPoolWithIndices, MaxPoolWithIndicesConfig, MaxUnpool2d, MaxUnpool2dConfig};
pub use op_kind::OpKind;
pub use seeded::{materialize, reseed, seeded, seeded_with};
pub use shortcut::{Add, Concat};
pub use squeeze_excite::{SqueezeExcite, SqueezeExciteConfig};
pub use trace::{Node, OpCost, Spatial, Trace, TraceError, Tracer};
pub use upsample::{Upsample, UpsampleConfig, UpsampleMode};

/// torchvision's `_make_divisible`: rounds `v` to the nearest multiple of `divisor` (at least
/// `divisor`), never going below 90 % of `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = ((v + d / 2.0) as usize / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}
