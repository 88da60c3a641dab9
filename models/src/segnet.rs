//! SegNet (Badrinarayanan et al. 2017), a small configurable version: an encoder of conv-BN-ReLU
//! stages each ended by a 2x2 max pool that remembers where its maxima were, and a mirrored
//! decoder that puts values back at those positions with max *unpooling* (no learned upsampling)
//! before its own convolutions. A final 3x3 convolution gives per-pixel class scores.
//!
//! The PyTorch twin (child names = `state_dict` paths), for `widths = [16, 32, 64]` and two convs
//! per stage (`cbr(i, o)` = `nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False),
//! nn.BatchNorm2d(o), nn.ReLU())`):
//!
//! ```python
//! class SegNet(nn.Module):
//!     def __init__(self, in_channels=3, num_classes=21, widths=(16, 32, 64)):
//!         super().__init__()
//!         ins = [in_channels] + list(widths[:-1])
//!         self.encoders = nn.ModuleList(
//!             nn.Sequential(cbr(i, w), cbr(w, w)) for i, w in zip(ins, widths))
//!         outs = [widths[0]] + list(widths[:-1])
//!         self.decoders = nn.ModuleList(
//!             nn.Sequential(cbr(w, w), cbr(w, o)) for w, o in reversed(list(zip(widths, outs))))
//!         self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)
//!     def forward(self, x):
//!         stack = []
//!         for enc in self.encoders:
//!             x = enc(x)
//!             size = x.shape[-2:]
//!             x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
//!             stack.append((idx, size))
//!         for dec in self.decoders:
//!             idx, size = stack.pop()
//!             x = dec(F.max_unpool2d(x, idx, 2, 2, output_size=size))
//!         return self.classifier(x)
//! ```
//!
//! Unpooling to the size recorded before each pool makes any input size work, odd ones included.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, scoped, trace_in};
use kiln_layers::{
    ConvBnAct, ConvBnActConfig, MaxPoolWithIndices, MaxPoolWithIndicesConfig, MaxUnpool2d, MaxUnpool2dConfig,
};

use crate::registry::{ModelEntry, ModelOptions};

/// Default channel width of each encoder stage (the decoder mirrors it).
pub const SEGNET_WIDTHS: [usize; 3] = [16, 32, 64];

/// Configuration of a [`SegNet`].
#[derive(Config, Debug)]
pub struct SegNetConfig {
    /// Output classes (channels of the score map).
    #[config(default = 21)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Width of each encoder stage; its length is the depth (number of pool / unpool pairs).
    #[config(default = "SEGNET_WIDTHS.to_vec()")]
    pub widths: Vec<usize>,
    /// 3x3 conv-BN-ReLU layers per stage (encoder and decoder alike), at least 1.
    #[config(default = 2)]
    pub convs_per_stage: usize,
}

impl SegNetConfig {
    /// Builds the network.
    ///
    /// # Panics
    /// If `widths` is empty or `convs_per_stage` is 0.
    pub fn init(&self, device: &Device) -> SegNet {
        assert!(!self.widths.is_empty(), "SegNet needs at least one stage");
        assert!(self.convs_per_stage >= 1, "SegNet needs at least one conv per stage");
        let cbr = |i: usize, o: usize| ConvBnActConfig::new(i, o).init(device);
        let mut encoders = vec![];
        let mut c_in = self.in_channels;
        for &w in &self.widths {
            let stage = (0..self.convs_per_stage).map(|j| cbr(if j == 0 { c_in } else { w }, w)).collect();
            encoders.push(stage);
            c_in = w;
        }
        let mut decoders = vec![];
        for i in (0..self.widths.len()).rev() {
            let w = self.widths[i];
            let out = if i == 0 { w } else { self.widths[i - 1] };
            let n = self.convs_per_stage;
            let stage = (0..n).map(|j| cbr(w, if j + 1 == n { out } else { w })).collect();
            decoders.push(stage);
        }
        let classifier = Conv2dConfig::new([self.widths[0], self.num_classes], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        SegNet {
            encoders,
            pool: MaxPoolWithIndicesConfig::new([2, 2], [2, 2]).init(),
            unpool: MaxUnpool2dConfig::new([2, 2], [2, 2]).init(),
            decoders,
            classifier,
        }
    }
}

/// SegNet.
///
/// - input: `[N, C, H, W]` with `H, W >= 2^depth`; output: `[N, num_classes, H, W]`
/// - PyTorch: the `SegNet` module in this file's docs. Rows: `encoders.{i}.{j}.{0,1,2}`
///   (conv, bn, relu), `pool{i}`, `unpool{i}`, `decoders.{k}.{j}.{0,1,2}`, `classifier`.
#[derive(Module, Debug)]
pub struct SegNet {
    /// Encoder stages (conv-BN-ReLU each), each followed by [`Self::pool`].
    pub encoders: Vec<Vec<ConvBnAct>>,
    /// 2x2 stride-2 max pool returning indices.
    pub pool: MaxPoolWithIndices,
    /// 2x2 max unpool, fed the indices of the matching encoder pool.
    pub unpool: MaxUnpool2d,
    /// Decoder stages, deepest first, each preceded by [`Self::unpool`].
    pub decoders: Vec<Vec<ConvBnAct>>,
    /// 3x3 conv to class scores (with bias).
    pub classifier: Conv2d,
}

impl SegNet {
    /// Per-pixel class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = x;
        let mut stack = vec![];
        for stage in &self.encoders {
            for c in stage {
                x = c.forward(x);
            }
            let [_, _, h, w] = x.dims();
            let (pooled, indices) = self.pool.forward(x);
            stack.push((indices, [h, w]));
            x = pooled;
        }
        for stage in &self.decoders {
            let (indices, size) = stack.pop().expect("one pool per decoder stage");
            x = self.unpool.forward(x, indices, Some(size));
            for c in stage {
                x = c.forward(x);
            }
        }
        self.classifier.forward(x)
    }
}

impl Trace for SegNet {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let mut x = x;
        let mut sizes = vec![];
        for (i, stage) in self.encoders.iter().enumerate() {
            x = scoped(t, "encoders", |t| trace_in(t, &i.to_string(), stage, x))?;
            sizes.push([x.shape[2], x.shape[3]]);
            x = trace_in(t, &format!("pool{i}"), &self.pool, x)?;
        }
        for (k, stage) in self.decoders.iter().enumerate() {
            let i = sizes.len() - 1 - k;
            x = scoped(t, &format!("unpool{i}"), |t| self.unpool.trace_unpool(t, x, Some(sizes[i])))?;
            x = scoped(t, "decoders", |t| trace_in(t, &k.to_string(), stage, x))?;
        }
        trace_in(t, "classifier", &self.classifier, x)
    }
}

impl crate::Hooks for SegNet {}

crate::zoo_model!(SegNet, map);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "segnet".into(),
        aliases: vec![],
        summary: "SegNet encoder-decoder (widths 16/32/64, max-unpool with pooling indices), per-pixel scores".into(),
        default_input: [3, 64, 64],
        num_classes: 21,
        build: |o: &ModelOptions, d| {
            o.no_width("segnet")?;
            Ok(Box::new(SegNetConfig::new().with_num_classes(o.num_classes).with_in_channels(o.in_channels).init(d)))
        },
    }]
}
