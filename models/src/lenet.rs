//! LeNet-5 (LeCun et al. 1998) for 28x28 MNIST digits, in its common modern form: ReLU instead of
//! the scaled tanh, max pooling instead of trainable sub-sampling, and a zero-padded first
//! convolution so that 28x28 inputs reach the 5x5x16 map the classifier expects.
//!
//! The PyTorch twin (child names = `state_dict` paths):
//!
//! ```python
//! class LeNet5(nn.Module):
//!     def __init__(self, in_channels=1, num_classes=10):
//!         super().__init__()
//!         self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
//!         self.conv2 = nn.Conv2d(6, 16, 5)
//!         self.fc1 = nn.Linear(16 * 5 * 5, 120)
//!         self.fc2 = nn.Linear(120, 84)
//!         self.fc3 = nn.Linear(84, num_classes)
//!     def forward(self, x):
//!         x = F.max_pool2d(F.relu(self.conv1(x)), 2)
//!         x = F.max_pool2d(F.relu(self.conv2(x)), 2)
//!         x = torch.flatten(x, 1)
//!         x = F.relu(self.fc1(x))
//!         x = F.relu(self.fc2(x))
//!         return self.fc3(x)
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, trace_in};
use kiln_layers::{Act, ActKind};

use crate::registry::{ModelEntry, ModelOptions};

/// Channels of the two convolutions and widths of the three linear layers (the last is
/// replaced by `num_classes`).
pub const CONV_CHANNELS: [usize; 2] = [6, 16];
/// Hidden widths of the classifier.
pub const FC_WIDTHS: [usize; 2] = [120, 84];

/// Configuration of a [`LeNet5`].
#[derive(Config, Debug)]
pub struct LeNet5Config {
    /// Output classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Input channels (1 for MNIST).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Dropout before each fully connected layer (0 = none, the classic LeNet-5).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LeNet5Config {
    /// Builds the network (PyTorch's default initialization for every layer).
    pub fn init(&self, device: &Device) -> LeNet5 {
        let [c1, c2] = CONV_CHANNELS;
        let [f1, f2] = FC_WIDTHS;
        LeNet5 {
            conv1: Conv2dConfig::new([self.in_channels, c1], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([c1, c2], [5, 5]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Act::new(ActKind::Relu),
            fc1: LinearConfig::new(c2 * 5 * 5, f1).init(device),
            fc2: LinearConfig::new(f1, f2).init(device),
            fc3: LinearConfig::new(f2, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// LeNet-5.
///
/// - input: `[N, C, 28, 28]` (exactly: the classifier takes 16x5x5 features); output:
///   `[N, num_classes]`
/// - PyTorch: the `LeNet5` module in this file's docs (`conv1`, `conv2`, `fc1`, `fc2`, `fc3`).
#[derive(Module, Debug)]
pub struct LeNet5 {
    /// 5x5 conv, `in_channels -> 6`, padding 2.
    pub conv1: Conv2d,
    /// 5x5 conv, `6 -> 16`.
    pub conv2: Conv2d,
    /// 2x2 max pool (used after each conv).
    pub pool: MaxPool2d,
    /// ReLU (used after each conv and hidden linear layer).
    pub relu: Act,
    /// `400 -> 120`.
    pub fc1: Linear,
    /// `120 -> 84`.
    pub fc2: Linear,
    /// `84 -> num_classes`.
    pub fc3: Linear,
    /// Dropout before `fc1`, `fc2` and `fc3` (probability 0 by default: the identity).
    pub dropout: Dropout,
}

impl LeNet5 {
    /// Class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = kiln_kernels::max_pool2d(&self.pool, self.relu.forward(kiln_kernels::conv2d(&self.conv1, x)));
        let x = kiln_kernels::max_pool2d(&self.pool, self.relu.forward(kiln_kernels::conv2d(&self.conv2, x)));
        let x = self.dropout.forward(x.flatten::<2>(1, 3));
        let x = self.dropout.forward(self.relu.forward(self.fc1.forward(x)));
        let x = self.dropout.forward(self.relu.forward(self.fc2.forward(x)));
        self.fc3.forward(x)
    }
}

impl LeNet5 {
    /// Dropout appears in the trace only when it is on, so the classic LeNet-5 reads as before.
    fn trace_dropout(&self, t: &mut dyn Tracer, name: &str, x: Node) -> Result<Node, TraceError> {
        if self.dropout.prob > 0.0 { trace_in(t, name, &self.dropout, x) } else { Ok(x) }
    }
}

impl Trace for LeNet5 {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "conv1", &self.conv1, x)?;
        let x = trace_in(t, "relu1", &self.relu, x)?;
        let x = trace_in(t, "pool1", &self.pool, x)?;
        let x = trace_in(t, "conv2", &self.conv2, x)?;
        let x = trace_in(t, "relu2", &self.relu, x)?;
        let x = trace_in(t, "pool2", &self.pool, x)?;
        let x = ops::flatten(t, Some("flatten"), &x)?;
        let x = self.trace_dropout(t, "drop1", x)?;
        let x = trace_in(t, "fc1", &self.fc1, x)?;
        let x = trace_in(t, "relu3", &self.relu, x)?;
        let x = self.trace_dropout(t, "drop2", x)?;
        let x = trace_in(t, "fc2", &self.fc2, x)?;
        let x = trace_in(t, "relu4", &self.relu, x)?;
        let x = self.trace_dropout(t, "drop3", x)?;
        trace_in(t, "fc3", &self.fc3, x)
    }
}

impl crate::Hooks for LeNet5 {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        Some(self.pool.forward(self.relu.forward(self.conv2.forward(x))))
    }

    fn has_dropout(&self) -> bool {
        true
    }
}

crate::zoo_model!(LeNet5, logits);

pub(crate) fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "lenet5".into(),
        aliases: vec!["lenet".into()],
        summary: "LeNet-5 for 1x28x28 MNIST (conv5-pool-conv5-pool-fc120-fc84-fc)".into(),
        default_input: [1, 28, 28],
        num_classes: 10,
        build: |o: &ModelOptions, d| {
            o.no_width("lenet5")?;
            Ok(Box::new(
                LeNet5Config::new()
                    .with_num_classes(o.num_classes)
                    .with_in_channels(o.in_channels)
                    .with_dropout(o.dropout.unwrap_or(0.0))
                    .init(d),
            ))
        },
    }]
}
