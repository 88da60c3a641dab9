//! The name registry of models and ops.

use burn::tensor::Device;
use kiln_layers::Trace;

use crate::ZooModel;

/// Options every zoo model accepts (models reject the ones they do not support).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOptions {
    /// Number of output classes; 0 (the default) means the model's own (its entry's
    /// `num_classes`). [`Registry::build`] resolves it.
    pub num_classes: usize,
    /// Channel width multiplier (MobileNets, GhostNet, DeepLab and YOLOv5 widths; ShuffleNet widths
    /// are separate registered names).
    pub width_mult: f64,
    /// Input channels; 0 (the default) means the model's own (its entry's `default_input[0]`:
    /// 3 for ImageNet nets, 1 for the MNIST nets). [`Registry::build`] resolves it.
    pub in_channels: usize,
    /// Dropout probability of the model's dropout layers; `None` keeps the model's default
    /// (torchvision's). [`Registry::build`] rejects it for models without a dropout layer.
    pub dropout: Option<f64>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { num_classes: 0, width_mult: 1.0, in_channels: 0, dropout: None }
    }
}

impl ModelOptions {
    /// Errors unless `width_mult` is 1 (for models without a width option).
    pub fn no_width(&self, model: &str) -> Result<(), ZooError> {
        if (self.width_mult - 1.0).abs() > 1e-12 {
            return Err(ZooError::InvalidOption(format!("{model} has no width multiplier (got {})", self.width_mult)));
        }
        Ok(())
    }

    /// Validates the generic ranges.
    pub fn validate(&self) -> Result<(), ZooError> {
        if !(self.width_mult > 0.0 && self.width_mult <= 8.0) {
            return Err(ZooError::InvalidOption(format!("width_mult must be in (0, 8], got {}", self.width_mult)));
        }
        if let Some(p) = self.dropout
            && !(0.0..1.0).contains(&p)
        {
            return Err(ZooError::InvalidOption(format!("dropout must be in [0, 1), got {p}")));
        }
        Ok(())
    }
}

/// Builds a model.
pub type BuildModel = fn(&ModelOptions, &Device) -> Result<Box<dyn ZooModel>, ZooError>;
/// Builds an op instance for standalone analysis.
pub type BuildOp = fn(&Device) -> Box<dyn Trace>;

/// A registered model.
#[derive(Clone)]
pub struct ModelEntry {
    /// Canonical name (`mobilenet_v2`).
    pub name: String,
    /// Other accepted names (`mobilenet`).
    pub aliases: Vec<String>,
    /// One line: what it is and which definition it matches.
    pub summary: String,
    /// Default input `[C, H, W]` (batch is separate).
    pub default_input: [usize; 3],
    /// Default number of classes (1000 for ImageNet nets, 10 for MNIST nets, 21 for the
    /// VOC-style segmentation nets); used when [`ModelOptions::num_classes`] is 0.
    pub num_classes: usize,
    /// Constructor.
    pub build: BuildModel,
}

/// A registered op, analyzable on its own at an example input.
#[derive(Clone)]
pub struct OpEntry {
    /// Name (`focus`).
    pub name: String,
    /// One line.
    pub summary: String,
    /// PyTorch twin.
    pub pytorch: String,
    /// Example input `[C, H, W]`.
    pub example_input: [usize; 3],
    /// Constructor of an example instance.
    pub build: BuildOp,
}

/// Registry errors.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// No model (or op) of that name.
    #[error("unknown model '{name}'; registered: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names accepted.
        known: Vec<String>,
    },
    /// A name registered twice.
    #[error("'{0}' is already registered")]
    Duplicate(String),
    /// A model option out of range or unsupported.
    #[error("invalid model option: {0}")]
    InvalidOption(String),
}

/// Models and ops by name.
#[derive(Clone, Default)]
pub struct Registry {
    models: Vec<ModelEntry>,
    ops: Vec<OpEntry>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in model and op.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        let families = [
            crate::lenet::entries,
            crate::vgg::entries,
            crate::resnet::entries,
            crate::densenet::entries,
            crate::squeezenet::entries,
            crate::mobilenet_v1::entries,
            crate::mobilenet_v2::entries,
            crate::mobilenet_v3::entries,
            crate::shufflenet_v2::entries,
            crate::ghostnet::entries,
            crate::efficientnet::entries,
            crate::segnet::entries,
            crate::deeplab::entries,
            crate::unet::entries,
            crate::yolov5_focus::entries,
            crate::autoencoder::entries,
        ];
        for e in families.iter().flat_map(|f| f()) {
            r.register(e).expect("built-in names are unique");
        }
        for op in builtin_ops() {
            r.register_op(op).expect("built-in op names are unique");
        }
        r
    }

    fn taken(&self, name: &str) -> bool {
        self.models.iter().any(|m| m.name == name || m.aliases.iter().any(|a| a == name))
    }

    /// Registers a model; its name and aliases must be new.
    pub fn register(&mut self, entry: ModelEntry) -> Result<(), ZooError> {
        for n in std::iter::once(&entry.name).chain(&entry.aliases) {
            if self.taken(n) {
                return Err(ZooError::Duplicate(n.clone()));
            }
        }
        self.models.push(entry);
        Ok(())
    }

    /// Registers an op.
    pub fn register_op(&mut self, op: OpEntry) -> Result<(), ZooError> {
        if self.ops.iter().any(|o| o.name == op.name) {
            return Err(ZooError::Duplicate(op.name));
        }
        self.ops.push(op);
        Ok(())
    }

    /// Builder-style [`Self::register`].
    pub fn with(mut self, entry: ModelEntry) -> Result<Self, ZooError> {
        self.register(entry)?;
        Ok(self)
    }

    /// All model entries, in registration order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// All op entries.
    pub fn ops(&self) -> &[OpEntry] {
        &self.ops
    }

    /// Looks a model up by name or alias.
    pub fn get(&self, name: &str) -> Result<&ModelEntry, ZooError> {
        self.models.iter().find(|m| m.name == name || m.aliases.iter().any(|a| a == name)).ok_or_else(|| {
            ZooError::Unknown {
                name: name.to_string(),
                known: self
                    .models
                    .iter()
                    .flat_map(|m| {
                        std::iter::once(m.name.clone()).chain(m.aliases.iter().map(|a| format!("{a} (= {})", m.name)))
                    })
                    .collect(),
            }
        })
    }

    /// Looks an op up by name.
    pub fn get_op(&self, name: &str) -> Result<&OpEntry, ZooError> {
        self.ops.iter().find(|o| o.name == name).ok_or_else(|| ZooError::Unknown {
            name: format!("op:{name}"),
            known: self.ops.iter().map(|o| format!("op:{}", o.name)).collect(),
        })
    }

    /// Builds a model by name.
    pub fn build(&self, name: &str, options: &ModelOptions, device: &Device) -> Result<Box<dyn ZooModel>, ZooError> {
        options.validate()?;
        let entry = self.get(name)?;
        let mut options = options.clone();
        if options.in_channels == 0 {
            options.in_channels = entry.default_input[0];
        }
        if options.num_classes == 0 {
            options.num_classes = entry.num_classes;
        }
        let model = (entry.build)(&options, device)?;
        if let Some(p) = options.dropout
            && p > 0.0
            && !model.has_dropout()
        {
            // A dropout option on a model without a dropout layer would otherwise be silently ignored.
            return Err(ZooError::InvalidOption(format!(
                "{} has no dropout layer, so --dropout cannot apply; drop the flag",
                entry.name
            )));
        }
        Ok(model)
    }
}

fn builtin_ops() -> Vec<OpEntry> {
    use kiln_layers::*;
    fn e(name: &str, summary: &str, pytorch: &str, example_input: [usize; 3], build: BuildOp) -> OpEntry {
        OpEntry { name: name.into(), summary: summary.into(), pytorch: pytorch.into(), example_input, build }
    }
    vec![
        e("conv_bn_act", "3x3 conv + BN + ReLU, 32->64", "torchvision.ops.Conv2dNormActivation", [32, 112, 112], |d| {
            Box::new(ConvBnActConfig::new(32, 64).init(d))
        }),
        e(
            "depthwise_separable",
            "depthwise 3x3 + pointwise 1x1, 32->64",
            "timm DepthwiseSeparableConv",
            [32, 112, 112],
            |d| Box::new(DepthwiseSeparableConfig::new(32, 64).init(d)),
        ),
        e(
            "inverted_residual",
            "MobileNetV2 block 24->24, expansion 6",
            "torchvision InvertedResidual",
            [24, 56, 56],
            |d| Box::new(InvertedResidualConfig::new(24, 144, 24).init(d)),
        ),
        e(
            "squeeze_excite",
            "SE gate on 96 channels, bottleneck 24",
            "torchvision.ops.SqueezeExcitation",
            [96, 14, 14],
            |d| Box::new(SqueezeExciteConfig::new(96, 24).init(d)),
        ),
        e("focus", "space-to-depth + 1x1 conv, 3->32", "yolov5 models.common.Focus", [3, 64, 64], |d| {
            Box::new(FocusConfig::new(3, 32).init(d))
        }),
        e("channel_shuffle", "channel shuffle, 2 groups", "nn.ChannelShuffle", [116, 28, 28], |_| {
            Box::new(ChannelShuffleConfig::new(2).init())
        }),
        e("upsample_bilinear", "bilinear x2", "nn.Upsample(scale_factor=2, mode='bilinear')", [16, 32, 32], |_| {
            Box::new(UpsampleConfig::new(UpsampleMode::Bilinear).with_scale_factor(Some(2.0)).init())
        }),
    ]
}
