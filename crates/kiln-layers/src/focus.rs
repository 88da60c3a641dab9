//! Focus (YOLOv5): space-to-depth followed by a convolution.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::activation::ActKind;
use crate::conv_bn_act::{ConvBnAct, ConvBnActConfig};
use crate::trace::{Node, OpCost, Spatial, Trace, TraceError, Tracer, trace_in};

/// Space-to-depth by 2 in YOLOv5's order: the output channels are the four pixel offsets
/// `(row, col) = (0,0), (1,0), (0,1), (1,1)` concatenated, each holding all input channels —
/// `torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)`.
///
/// - input: `[N, C, H, W]` with even `H`, `W`; output: `[N, 4C, H/2, W/2]`.
///
/// Note: this is not PyTorch's `pixel_unshuffle` order (which interleaves channels as
/// `c * 4 + offset`); weights trained with one do not work with the other.
pub fn space_to_depth(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    // [N, C, H/2, dy, W/2, dx] -> [N, dx, dy, C, H/2, W/2]: channel = (dx*2 + dy) * C + c
    x.reshape([n, c, h / 2, 2, w / 2, 2]).permute([0, 5, 3, 1, 2, 4]).reshape([n, 4 * c, h / 2, w / 2])
}

/// Traces [`space_to_depth`].
pub fn trace_space_to_depth(t: &mut dyn Tracer, name: Option<&str>, x: &Node) -> Result<Node, TraceError> {
    x.expect_rank("SpaceToDepth", 4)?;
    if x.shape[2] % 2 != 0 || x.shape[3] % 2 != 0 {
        return Err(TraceError::Invalid {
            op: "SpaceToDepth".into(),
            reason: format!("needs an even height and width, got {:?}; pad or resize the input", &x.shape[2..]),
        });
    }
    let out = vec![x.shape[0], x.shape[1] * 4, x.shape[2] / 2, x.shape[3] / 2];
    Ok(t.op(name, &[x], out, OpCost::new("SpaceToDepth").spatial(Spatial::SpaceToDepth { factor: 2 })))
}

/// Configuration of a [`Focus`].
#[derive(Config, Debug)]
pub struct FocusConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size of the convolution.
    #[config(default = 1)]
    pub kernel_size: usize,
    /// Activation (YOLOv5: SiLU).
    #[config(default = "ActKind::Swish")]
    pub act: ActKind,
}

impl FocusConfig {
    /// Initializes the module.
    pub fn init(&self, device: &Device) -> Focus {
        Focus {
            conv: ConvBnActConfig::new(4 * self.in_channels, self.out_channels)
                .with_kernel_size(self.kernel_size)
                .with_bn_eps(1e-3)
                .with_bn_momentum(0.03)
                .with_act(self.act)
                .init(device),
        }
    }
}

/// YOLOv5's Focus stem: [`space_to_depth`] then conv + BN + activation.
///
/// - input: `[N, C, H, W]`; output: `[N, C_out, H/2, W/2]`
/// - PyTorch: `models.common.Focus` in ultralytics/yolov5.
#[derive(Module, Debug)]
pub struct Focus {
    /// The convolution after space-to-depth.
    pub conv: ConvBnAct,
}

impl Focus {
    /// Applies the module.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(space_to_depth(x))
    }
}

impl Trace for Focus {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let y = trace_space_to_depth(t, Some("space_to_depth"), &x)?;
        trace_in(t, "conv", &self.conv, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn yolov5_offset_order() {
        let device = Device::flex();
        // One channel, 4x4, values 0..16 row-major.
        let x = Tensor::<4>::from_data(
            TensorData::new((0..16).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 4, 4]),
            &device,
        );
        let y = space_to_depth(x).into_data().try_to_vec::<f32>().unwrap();
        // x[::2, ::2] = 0 2 8 10; x[1::2, ::2] = 4 6 12 14; x[::2, 1::2] = 1 3 9 11; x[1::2, 1::2] = 5 7 13 15
        assert_eq!(y, vec![0., 2., 8., 10., 4., 6., 12., 14., 1., 3., 9., 11., 5., 7., 13., 15.]);
    }

    #[test]
    fn multi_channel_groups_by_offset() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new((0..8).map(|v| v as f32).collect::<Vec<_>>(), [1, 2, 2, 2]),
            &device,
        );
        let y = space_to_depth(x).into_data().try_to_vec::<f32>().unwrap();
        // offset (0,0): c0=0, c1=4; (1,0): 2, 6; (0,1): 1, 5; (1,1): 3, 7
        assert_eq!(y, vec![0., 4., 2., 6., 1., 5., 3., 7.]);
        let f = FocusConfig::new(2, 8).init(&device);
        assert_eq!(f.forward(Tensor::zeros([1, 2, 6, 6], &device)).dims(), [1, 8, 3, 3]);
    }
}
