//! Small constructors shared by the zoo's model files.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::Device;

/// A plain `nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups, bias=False)` (Burn's default
/// init), as ShuffleNetV2 and GhostNet build them.
pub(crate) fn conv(cin: usize, cout: usize, k: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

/// `nn.BatchNorm2d(c)` with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub(crate) fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}
