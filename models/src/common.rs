//! Small constructors shared by the zoo's model files.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// The zoo's one convolution constructor: `nn.Conv2d(cin, cout, k, stride, padding=k // 2,
/// groups, bias=False)` with `init` (`None`: Burn's default), as ResNet, DenseNet, ShuffleNetV2 and
/// GhostNet build them. [`conv_with`] takes explicit padding and a zero bias (SqueezeNet); YOLOv5's
/// `Conv` is a `ConvBnAct` block built from its config.
pub(crate) fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    init: Option<Initializer>,
    device: &Device,
) -> Conv2d {
    conv_with(cin, cout, k, stride, k / 2, groups, false, init, device)
}

/// [`conv`] with explicit symmetric padding `pad` and, when `zero_bias`, a bias initialized to
/// zeros (`nn.init.constant_(m.bias, 0)`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_with(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    zero_bias: bool,
    init: Option<Initializer>,
    device: &Device,
) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false);
    if let Some(init) = init {
        c = c.with_initializer(init);
    }
    let mut conv = c.init(device);
    if zero_bias {
        conv.bias = Some(Param::from_tensor(Tensor::zeros([cout], device)));
    }
    conv
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
