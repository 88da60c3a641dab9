//! Channel shuffle (ShuffleNet): interleaves channels across groups.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::trace::{Node, OpCost, Trace, TraceError, Tracer};

/// Configuration of a [`ChannelShuffle`].
#[derive(Config, Debug)]
pub struct ChannelShuffleConfig {
    /// Number of groups.
    pub groups: usize,
}

impl ChannelShuffleConfig {
    /// Initializes the module.
    pub fn init(&self) -> ChannelShuffle {
        ChannelShuffle { groups: self.groups }
    }
}

/// `[N, g*k, H, W] -> view [N, g, k, H, W] -> transpose(1, 2) -> [N, k*g, H, W]`: output channel
/// `j*g + i` is input channel `i*k + j`.
///
/// - input: `[N, C, H, W]`, `C` divisible by `groups`; output: same shape.
/// - PyTorch: `torch.nn.ChannelShuffle(groups)` / torchvision's `channel_shuffle`.
#[derive(Module, Debug)]
pub struct ChannelShuffle {
    /// Number of groups.
    pub groups: usize,
}

impl ChannelShuffle {
    /// Applies the shuffle.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let g = self.groups;
        x.reshape([n, g, c / g, h, w]).swap_dims(1, 2).reshape([n, c, h, w])
    }
}

impl Trace for ChannelShuffle {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("ChannelShuffle", 4)?;
        if self.groups == 0 || x.shape[1] % self.groups != 0 {
            return Err(TraceError::Invalid {
                op: "ChannelShuffle".into(),
                reason: format!("{} channels are not divisible into {} groups", x.shape[1], self.groups),
            });
        }
        let out = x.shape.clone();
        Ok(t.op(None, &[&x], out, OpCost::new("ChannelShuffle").detail(format!("g{}", self.groups))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn interleaves_channels() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new((0..6).map(|v| v as f32).collect::<Vec<_>>(), [1, 6, 1, 1]),
            &device,
        );
        let y = ChannelShuffleConfig::new(2).init().forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0., 3., 1., 4., 2., 5.]);
        let y = ChannelShuffleConfig::new(3).init().forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0., 2., 4., 1., 3., 5.]);
    }
}
