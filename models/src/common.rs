//! Small constructors shared by the zoo's model files.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::Device;

/// The zoo's one plain convolution: `nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups,
/// bias=False)` with `init` (`None`: Burn's default), as ResNet, DenseNet, ShuffleNetV2 and
/// GhostNet build them. (SqueezeNet's convs carry a zero bias and explicit padding, YOLOv5's
/// `Conv` is a `ConvBnAct` block: both keep their own constructors.)
pub(crate) fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    init: Option<Initializer>,
    device: &Device,
) -> Conv2d {
    let p = k / 2;
    let mut c = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_groups(groups)
        .with_bias(false);
    if let Some(init) = init {
        c = c.with_initializer(init);
    }
    c.init(device)
}

/// torchvision's `nn.init.kaiming_normal_(w, mode)` with the ReLU gain: `fan_out` (ResNet) or
/// `fan_in` (DenseNet).
pub(crate) fn kaiming_normal(fan_out: bool) -> Option<Initializer> {
    Some(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: fan_out })
}

/// `nn.BatchNorm2d(c)` with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub(crate) fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}
