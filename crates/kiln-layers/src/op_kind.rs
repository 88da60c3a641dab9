//! [`OpKind`]: what a traced op is, as a type. The analyzer prints it, pruning and quantization
//! match on it, the compression reports group by it; a plugin's op (or an ONNX op kiln has no
//! variant for) is [`OpKind::Other`] with its own name.

use std::fmt;

macro_rules! op_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The kind of a primitive op in a trace. Its printed name ([`OpKind::as_str`]) is
        /// PyTorch's module name where there is one (`Conv2d`, `BatchNorm`, `ReLU6`); parsing a
        /// name ([`OpKind::from`]) gives the variant back, and any other name is
        /// [`OpKind::Other`].
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum OpKind {
            $($(#[$doc])* $variant,)*
            /// An op without a variant of its own (a plugin's, an ONNX op), by name.
            Other(String),
        }

        impl OpKind {
            /// The printed name: the analyzer's `op` column and JSON field.
            pub fn as_str(&self) -> &str {
                match self {
                    $(OpKind::$variant => $name,)*
                    OpKind::Other(name) => name,
                }
            }
        }

        impl From<&str> for OpKind {
            fn from(name: &str) -> Self {
                match name {
                    $($name => OpKind::$variant,)*
                    other => OpKind::Other(other.to_string()),
                }
            }
        }
    };
}

op_kinds! {
    /// A dense or grouped 2-D convolution.
    Conv2d => "Conv2d",
    /// A depthwise 2-D convolution (groups = input channels, one filter per channel).
    DepthwiseConv2d => "Conv2d(depthwise)",
    /// A transposed 2-D convolution.
    ConvTranspose2d => "ConvTranspose2d",
    /// A fully connected layer.
    Linear => "Linear",
    /// Batch normalization (inference: a per-channel affine map).
    BatchNorm => "BatchNorm",
    /// Max pooling.
    MaxPool2d => "MaxPool2d",
    /// Average pooling.
    AvgPool2d => "AvgPool2d",
    /// Adaptive average pooling to a fixed size.
    AdaptiveAvgPool2d => "AdaptiveAvgPool2d",
    /// Global average pooling to 1x1.
    GlobalAvgPool => "GlobalAvgPool",
    /// Max unpooling (SegNet).
    MaxUnpool2d => "MaxUnpool2d",
    /// Dropout (the identity in inference).
    Dropout => "Dropout",
    /// Flatten to `[N, features]` (a view).
    Flatten => "Flatten",
    /// Element-wise sum of same-shaped tensors (residual shortcuts).
    Add => "Add",
    /// Element-wise product (squeeze-excite scaling).
    Mul => "Mul",
    /// Channel concatenation.
    Concat => "Concat",
    /// A slice along one dimension (a view).
    Split => "Split",
    /// ShuffleNet's channel shuffle.
    ChannelShuffle => "ChannelShuffle",
    /// Space-to-depth (YOLOv5's Focus).
    SpaceToDepth => "SpaceToDepth",
    /// Pixel unshuffle.
    PixelUnshuffle => "PixelUnshuffle",
    /// Zero padding.
    Pad => "Pad",
    /// The identity activation.
    Identity => "Identity",
    /// ReLU.
    Relu => "ReLU",
    /// ReLU6.
    Relu6 => "ReLU6",
    /// Leaky ReLU.
    LeakyRelu => "LeakyReLU",
    /// Sigmoid.
    Sigmoid => "Sigmoid",
    /// Tanh.
    Tanh => "Tanh",
    /// SiLU / swish.
    Silu => "SiLU",
    /// PyTorch's hard sigmoid, `relu6(x + 3) / 6`.
    HardSigmoid => "Hardsigmoid",
    /// The legacy hard sigmoid, `clamp(0.2 x + 0.5, 0, 1)`.
    HardSigmoidLegacy => "HardSigmoid(legacy)",
    /// Hard swish.
    HardSwish => "Hardswish",
    /// Stochastic depth (EfficientNet; the identity in inference).
    StochasticDepth => "StochasticDepth",
}

impl OpKind {
    /// A convolution with a weight kiln prunes and quantizes (dense, grouped or depthwise).
    pub fn is_conv(&self) -> bool {
        matches!(self, OpKind::Conv2d | OpKind::DepthwiseConv2d)
    }

    /// An op whose weight is a matrix of output x input units: a convolution or a linear layer
    /// (what pruning and quantization act on, what the reports count as weighted).
    pub fn is_weighted(&self) -> bool {
        self.is_conv() || *self == OpKind::Linear
    }

    /// An op that maps each channel to the same channel (activations, dropout, pooling,
    /// padding): channel pruning follows a channel straight through it.
    pub fn keeps_channels(&self) -> bool {
        use OpKind::*;
        match self {
            Relu | Relu6 | LeakyRelu | Sigmoid | Tanh | Silu | HardSigmoid | HardSigmoidLegacy | HardSwish
            | Dropout | StochasticDepth | MaxPool2d | AvgPool2d | AdaptiveAvgPool2d | GlobalAvgPool | Identity
            | Pad => true,
            // ONNX's spelling of the hard sigmoid.
            Other(name) => name == "HardSigmoid",
            _ => false,
        }
    }
}

impl From<String> for OpKind {
    fn from(name: String) -> Self {
        match OpKind::from(name.as_str()) {
            OpKind::Other(_) => OpKind::Other(name),
            known => known,
        }
    }
}

/// An op kind reads as its printed name where a `&str` is expected (`kind.starts_with("Conv")`
/// in a filter); code that decides what to do with an op matches on the variants instead.
impl std::ops::Deref for OpKind {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<str> for OpKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for OpKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<OpKind> for &str {
    fn eq(&self, other: &OpKind) -> bool {
        *self == other.as_str()
    }
}

impl serde::Serialize for OpKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for OpKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OpKind::from(String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for kind in [OpKind::Conv2d, OpKind::DepthwiseConv2d, OpKind::Linear, OpKind::HardSigmoidLegacy, OpKind::Silu] {
            assert_eq!(OpKind::from(kind.as_str()), kind);
            assert_eq!(OpKind::from(kind.to_string()), kind);
        }
        assert_eq!(OpKind::from("Conv2d(depthwise)"), OpKind::DepthwiseConv2d);
        assert_eq!(OpKind::from("BlurPool2d"), OpKind::Other("BlurPool2d".into()));
        assert_eq!(OpKind::from("BlurPool2d").as_str(), "BlurPool2d");
        assert!(OpKind::DepthwiseConv2d.is_conv() && OpKind::Linear.is_weighted());
        assert!(!OpKind::BatchNorm.is_weighted() && !OpKind::ConvTranspose2d.is_conv());
        assert!(OpKind::Relu6.keeps_channels() && OpKind::from("HardSigmoid").keeps_channels());
        assert!(!OpKind::Concat.keeps_channels() && !OpKind::from("BlurPool2d").keeps_channels());
        assert_eq!(format!("{:<8}|", OpKind::Add), "Add     |");
    }
}
