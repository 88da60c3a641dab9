//! A convolutional autoencoder for 28x28 images (MNIST): two stride-2 convolutions, a linear
//! bottleneck to a small code, and the mirror image back with transposed convolutions and a
//! sigmoid. [`ConvAutoencoder::encode`] gives the codes (e.g. for clustering),
//! [`ConvAutoencoder::decode`] turns codes back into images.
//!
//! The PyTorch twin (child names = `state_dict` paths), for the defaults (widths 16 / 32,
//! code 16):
//!
//! ```python
//! class ConvAutoencoder(nn.Module):
//!     def __init__(self, in_channels=1, code_size=16):
//!         super().__init__()
//!         self.encoder = nn.Sequential(
//!             nn.Conv2d(in_channels, 16, 3, stride=2, padding=1), nn.ReLU(),   # 28 -> 14
//!             nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),            # 14 -> 7
//!             nn.Flatten(), nn.Linear(32 * 7 * 7, code_size))
//!         self.decoder = nn.Sequential(
//!             nn.Linear(code_size, 32 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (32, 7, 7)),
//!             nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
//!             nn.ConvTranspose2d(16, in_channels, 3, stride=2, padding=1, output_padding=1),
//!             nn.Sigmoid())
//!     def forward(self, x):
//!         return self.decoder(self.encoder(x))
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, OpCost, Trace, TraceError, Tracer, ops, scoped, trace_in};
use kiln_layers::{Act, ActKind};

use crate::registry::{ModelEntry, ModelOptions};

/// Channels of the two encoder convolutions (the decoder mirrors them).
pub const AE_WIDTHS: [usize; 2] = [16, 32];

/// Configuration of a [`ConvAutoencoder`].
#[derive(Config, Debug)]
pub struct ConvAutoencoderConfig {
    /// Image channels (input and reconstruction).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Side of the square input images; a multiple of 4.
    #[config(default = 28)]
    pub image_size: usize,
    /// Length of the code.
    #[config(default = 16)]
    pub code_size: usize,
}

impl ConvAutoencoderConfig {
    /// Builds the network (PyTorch's default initialization).
    ///
    /// # Panics
    /// If `image_size` is not a positive multiple of 4.
    pub fn init(&self, device: &Device) -> ConvAutoencoder {
        assert!(
            self.image_size >= 4 && self.image_size % 4 == 0,
            "image_size must be a multiple of 4, got {}",
            self.image_size
        );
        let [c1, c2] = AE_WIDTHS;
        let s = self.image_size / 4;
        let down = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let up = |i, o| {
            ConvTranspose2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_padding_out([1, 1])
                .init(device)
        };
        ConvAutoencoder {
            conv1: down(self.in_channels, c1),
            conv2: down(c1, c2),
            to_code: LinearConfig::new(c2 * s * s, self.code_size).init(device),
            from_code: LinearConfig::new(self.code_size, c2 * s * s).init(device),
            deconv1: up(c2, c1),
            deconv2: up(c1, self.in_channels),
            relu: Act::new(ActKind::Relu),
            sigmoid: Act::new(ActKind::Sigmoid),
            feature_channels: c2,
            feature_size: s,
        }
    }
}

/// Convolutional autoencoder.
///
/// - input: `[N, C, S, S]` (`S = image_size`, 28 by default); output: the reconstruction
///   `[N, C, S, S]` in `(0, 1)`; code: `[N, code_size]`
/// - PyTorch: the `ConvAutoencoder` in this file's docs. Rows: `encoder.0` conv, `encoder.1`
///   ReLU, `encoder.2` conv, `encoder.3` ReLU, `encoder.4` flatten, `encoder.5` linear,
///   `decoder.0` linear, `decoder.1` ReLU, `decoder.2` unflatten, `decoder.3` transposed conv,
///   `decoder.4` ReLU, `decoder.5` transposed conv, `decoder.6` sigmoid.
#[derive(Module, Debug)]
pub struct ConvAutoencoder {
    /// `encoder.0`: 3x3 stride-2 conv, `C -> 16`.
    pub conv1: Conv2d,
    /// `encoder.2`: 3x3 stride-2 conv, `16 -> 32`.
    pub conv2: Conv2d,
    /// `encoder.5`: `32 x S/4 x S/4 -> code_size`.
    pub to_code: Linear,
    /// `decoder.0`: `code_size -> 32 x S/4 x S/4`.
    pub from_code: Linear,
    /// `decoder.3`: 3x3 stride-2 transposed conv, `32 -> 16`.
    pub deconv1: ConvTranspose2d,
    /// `decoder.5`: 3x3 stride-2 transposed conv, `16 -> C`.
    pub deconv2: ConvTranspose2d,
    /// ReLU after each hidden layer.
    pub relu: Act,
    /// Output sigmoid.
    pub sigmoid: Act,
    /// Channels of the map fed to / produced from the code.
    pub feature_channels: usize,
    /// Side of that map (`S / 4`).
    pub feature_size: usize,
}

impl ConvAutoencoder {
    /// Encodes images `[N, C, S, S]` to codes `[N, code_size]`.
    pub fn encode(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.conv1.forward(x));
        let x = self.relu.forward(self.conv2.forward(x));
        self.to_code.forward(x.flatten::<2>(1, 3))
    }

    /// Decodes codes `[N, code_size]` to images `[N, C, S, S]`.
    pub fn decode(&self, code: Tensor<2>) -> Tensor<4> {
        let [n, _] = code.dims();
        let (c, s) = (self.feature_channels, self.feature_size);
        let x = self.relu.forward(self.from_code.forward(code)).reshape([n, c, s, s]);
        let x = self.relu.forward(self.deconv1.forward(x));
        self.sigmoid.forward(self.deconv2.forward(x))
    }

    /// Reconstructs the input.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.decode(self.encode(x))
    }

    /// Traces [`Self::encode`].
    pub fn trace_encode(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        scoped(t, "encoder", |t| {
            let x = trace_in(t, "0", &self.conv1, x)?;
            let x = trace_in(t, "1", &self.relu, x)?;
            let x = trace_in(t, "2", &self.conv2, x)?;
            let x = trace_in(t, "3", &self.relu, x)?;
            let x = ops::flatten(t, Some("4"), &x)?;
            trace_in(t, "5", &self.to_code, x)
        })
    }

    /// Traces [`Self::decode`].
    pub fn trace_decode(&self, t: &mut dyn Tracer, code: Node) -> Result<Node, TraceError> {
        code.expect_rank("ConvAutoencoder.decode", 2)?;
        let (c, s) = (self.feature_channels, self.feature_size);
        scoped(t, "decoder", |t| {
            let x = trace_in(t, "0", &self.from_code, code)?;
            let x = trace_in(t, "1", &self.relu, x)?;
            let out = vec![x.shape[0], c, s, s];
            let x = t.op(Some("2"), &[&x], out, OpCost::new("Unflatten").detail(format!("->{c}x{s}x{s}")).view());
            let x = trace_in(t, "3", &self.deconv1, x)?;
            let x = trace_in(t, "4", &self.relu, x)?;
            let x = trace_in(t, "5", &self.deconv2, x)?;
            trace_in(t, "6", &self.sigmoid, x)
        })
    }
}

impl Trace for ConvAutoencoder {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let code = self.trace_encode(t, x)?;
        self.trace_decode(t, code)
    }
}

impl crate::Hooks for ConvAutoencoder {
    fn task_override(&self) -> Option<crate::Task> {
        Some(crate::Task::Reconstruction)
    }

    fn encode(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        Some(ConvAutoencoder::encode(self, x))
    }
}

crate::zoo_model!(ConvAutoencoder, map);

/// Hidden width of the [`DenseAutoencoder`] (each side of the code).
pub const DENSE_AE_HIDDEN: usize = 256;

/// Configuration of a [`DenseAutoencoder`].
#[derive(Config, Debug)]
pub struct DenseAutoencoderConfig {
    /// Image channels.
    #[config(default = 1)]
    pub in_channels: usize,
    /// Side of the square input images.
    #[config(default = 28)]
    pub image_size: usize,
    /// Length of the code.
    #[config(default = 16)]
    pub code_size: usize,
}

impl DenseAutoencoderConfig {
    /// Builds the network (PyTorch's default initialization).
    pub fn init(&self, device: &Device) -> DenseAutoencoder {
        let pixels = self.in_channels * self.image_size * self.image_size;
        DenseAutoencoder {
            enc1: LinearConfig::new(pixels, DENSE_AE_HIDDEN).init(device),
            to_code: LinearConfig::new(DENSE_AE_HIDDEN, self.code_size).init(device),
            from_code: LinearConfig::new(self.code_size, DENSE_AE_HIDDEN).init(device),
            dec2: LinearConfig::new(DENSE_AE_HIDDEN, pixels).init(device),
            relu: Act::new(ActKind::Relu),
            sigmoid: Act::new(ActKind::Sigmoid),
            image: [self.in_channels, self.image_size, self.image_size],
        }
    }
}

/// Fully connected autoencoder: `pixels -> 256 -> code -> 256 -> pixels`, sigmoid output.
///
/// - input `[N, C, S, S]`, output the reconstruction `[N, C, S, S]` in `(0, 1)`, code
///   `[N, code_size]`
/// - PyTorch: `encoder = Sequential(Flatten(), Linear(C*S*S, 256), ReLU(), Linear(256, code))`,
///   `decoder = Sequential(Linear(code, 256), ReLU(), Linear(256, C*S*S), Sigmoid(),
///   Unflatten(1, (C, S, S)))`.
#[derive(Module, Debug)]
pub struct DenseAutoencoder {
    /// `encoder.1`.
    pub enc1: Linear,
    /// `encoder.3`.
    pub to_code: Linear,
    /// `decoder.0`.
    pub from_code: Linear,
    /// `decoder.2`.
    pub dec2: Linear,
    /// ReLU.
    pub relu: Act,
    /// Output sigmoid.
    pub sigmoid: Act,
    /// `[C, S, S]`.
    pub image: [usize; 3],
}

impl DenseAutoencoder {
    /// Encodes images to codes `[N, code_size]`.
    pub fn encode(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.enc1.forward(x.flatten::<2>(1, 3)));
        self.to_code.forward(x)
    }

    /// Decodes codes to images.
    pub fn decode(&self, code: Tensor<2>) -> Tensor<4> {
        let [n, _] = code.dims();
        let [c, h, w] = self.image;
        let x = self.relu.forward(self.from_code.forward(code));
        self.sigmoid.forward(self.dec2.forward(x)).reshape([n, c, h, w])
    }

    /// Reconstructs the input.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.decode(self.encode(x))
    }
}

impl Trace for DenseAutoencoder {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let code = scoped(t, "encoder", |t| {
            let x = ops::flatten(t, Some("0"), &x)?;
            let x = trace_in(t, "1", &self.enc1, x)?;
            let x = trace_in(t, "2", &self.relu, x)?;
            trace_in(t, "3", &self.to_code, x)
        })?;
        let [c, h, w] = self.image;
        scoped(t, "decoder", |t| {
            let x = trace_in(t, "0", &self.from_code, code)?;
            let x = trace_in(t, "1", &self.relu, x)?;
            let x = trace_in(t, "2", &self.dec2, x)?;
            let x = trace_in(t, "3", &self.sigmoid, x)?;
            let out = vec![x.shape[0], c, h, w];
            Ok(t.op(Some("4"), &[&x], out, OpCost::new("Unflatten").detail(format!("->{c}x{h}x{w}")).view()))
        })
    }
}

impl crate::Hooks for DenseAutoencoder {
    fn task_override(&self) -> Option<crate::Task> {
        Some(crate::Task::Reconstruction)
    }

    fn encode(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        Some(DenseAutoencoder::encode(self, x))
    }
}

crate::zoo_model!(DenseAutoencoder, map);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "conv_autoencoder".into(),
            aliases: vec!["autoencoder".into()],
            summary: "convolutional autoencoder for 1x28x28 (MNIST), 16-number code, sigmoid reconstruction".into(),
            default_input: [1, 28, 28],
            num_classes: 10,
            build: |o: &ModelOptions, d| {
                // num_classes is not used: the output is a reconstruction of the input.
                o.no_width("conv_autoencoder")?;
                Ok(Box::new(ConvAutoencoderConfig::new().with_in_channels(o.in_channels).init(d)))
            },
        },
        ModelEntry {
            name: "dense_autoencoder".into(),
            aliases: vec![],
            summary: "fully connected autoencoder for 1x28x28 (784-256-16-256-784), sigmoid reconstruction".into(),
            default_input: [1, 28, 28],
            num_classes: 10,
            build: |o: &ModelOptions, d| {
                o.no_width("dense_autoencoder")?;
                Ok(Box::new(DenseAutoencoderConfig::new().with_in_channels(o.in_channels).init(d)))
            },
        },
    ]
}
