//! Flag values clap parses into types at the edge (`ValueEnum`), converted into the library's own
//! enums: a bad value is a usage error (exit code 2) before any work starts, and `--help` lists
//! the accepted values.

use clap::ValueEnum;

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OptimizerArg {
    /// Full-batch gradient descent.
    Gd,
    /// Mini-batch SGD.
    Sgd,
    /// SGD with momentum 0.9.
    Momentum,
    /// SGD with Nesterov momentum 0.9.
    Nesterov,
    /// Adam.
    Adam,
    /// AdaGrad.
    Adagrad,
    /// RMSProp.
    Rmsprop,
}

impl From<OptimizerArg> for kiln_train::OptimizerKind {
    fn from(a: OptimizerArg) -> Self {
        use kiln_train::OptimizerKind as K;
        match a {
            OptimizerArg::Gd => K::Gd,
            OptimizerArg::Sgd => K::Sgd,
            OptimizerArg::Momentum => K::Momentum,
            OptimizerArg::Nesterov => K::Nesterov,
            OptimizerArg::Adam => K::Adam,
            OptimizerArg::Adagrad => K::AdaGrad,
            OptimizerArg::Rmsprop => K::RmsProp,
        }
    }
}

/// `--init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum InitArg {
    /// The model's own initialization.
    Default,
    /// Kaiming (He) normal.
    #[value(alias = "he")]
    Kaiming,
    /// Xavier (Glorot) uniform.
    #[value(alias = "glorot")]
    Xavier,
    /// All zeros (to show why initialization matters).
    #[value(alias = "zero")]
    Zeros,
}

impl From<InitArg> for kiln_train::InitKind {
    fn from(a: InitArg) -> Self {
        use kiln_train::InitKind as K;
        match a {
            InitArg::Default => K::Default,
            InitArg::Kaiming => K::Kaiming,
            InitArg::Xavier => K::Xavier,
            InitArg::Zeros => K::Zeros,
        }
    }
}

/// `--channels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ChannelsArg {
    /// Build the first convolution for the data's channels.
    Stem,
    /// Repeat a gray channel to the model's channels.
    Repeat,
}

impl From<ChannelsArg> for kiln_train::ChannelAdapt {
    fn from(a: ChannelsArg) -> Self {
        match a {
            ChannelsArg::Stem => kiln_train::ChannelAdapt::Stem,
            ChannelsArg::Repeat => kiln_train::ChannelAdapt::Repeat,
        }
    }
}

/// `--progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressArg {
    /// burn-train's dashboard on a terminal, one line per epoch otherwise.
    Auto,
    /// One line per epoch.
    Plain,
    /// Nothing.
    Quiet,
}

impl From<ProgressArg> for kiln_train::Display {
    fn from(a: ProgressArg) -> Self {
        match a {
            ProgressArg::Auto => kiln_train::Display::Auto,
            ProgressArg::Plain => kiln_train::Display::Plain,
            ProgressArg::Quiet => kiln_train::Display::Quiet,
        }
    }
}

/// `--importance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportanceArg {
    /// L1 norm of each filter.
    L1,
    /// L2 norm of each filter.
    L2,
    /// |gamma| of the group's batch norms (Network Slimming).
    #[value(alias = "bn")]
    BnScale,
}

impl From<ImportanceArg> for kiln_compress::Importance {
    fn from(a: ImportanceArg) -> Self {
        match a {
            ImportanceArg::L1 => kiln_compress::Importance::L1,
            ImportanceArg::L2 => kiln_compress::Importance::L2,
            ImportanceArg::BnScale => kiln_compress::Importance::BnScale,
        }
    }
}

/// `--calibration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CalibrationArg {
    /// The observed min / max.
    Minmax,
    /// The 99.99th percentile of |x|.
    Percentile,
    /// The clip that minimises the squared quantization error.
    Mse,
}

impl From<CalibrationArg> for kiln_compress::Calibration {
    fn from(a: CalibrationArg) -> Self {
        match a {
            CalibrationArg::Minmax => kiln_compress::Calibration::MinMax,
            CalibrationArg::Percentile => kiln_compress::Calibration::Percentile,
            CalibrationArg::Mse => kiln_compress::Calibration::Mse,
        }
    }
}

/// `--quantize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum QuantizeArg {
    /// Symmetric int8 weights, uint8 affine activations.
    Int8,
}
