//! The workloads kiln is timed on: a serde description ([`Workload`], also what the PyTorch script
//! receives) and its kiln implementation ([`Workload::prepare`]).

use burn::module::Module;
use burn::nn::conv::ConvTranspose2dConfig;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use kiln_layers::{
    ActKind, ChannelShuffleConfig, ConvBnActConfig, MaxPoolWithIndicesConfig, MaxUnpool2dConfig, UpsampleConfig,
    UpsampleMode,
};
use kiln_models::{ModelOptions, Output, ZooModel};
use serde::Serialize;

use crate::BenchError;

/// A single op timed by an [`Spec::Op`] workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Depthwise `k x k` convolution (`groups = C`), no bias.
    Depthwise,
    /// `1 x 1` convolution `C -> out_channels`, no bias.
    Pointwise,
    /// Depthwise `k x k` then pointwise `C -> out_channels` (the pair inside an inverted residual).
    DwPw,
    /// Dense `k x k` convolution with dilation, `C -> out_channels`, "same" padding.
    Dilated,
    /// Transposed convolution `k x k`, stride `stride`, `C -> out_channels`.
    Transposed,
    /// `2 x 2` max pooling with indices, then max unpooling back.
    MaxUnpool,
    /// Bilinear upsampling by `scale` (align_corners = false).
    Upsample,
    /// ShuffleNet's channel shuffle with `groups` groups.
    ChannelShuffle,
}

/// What a workload does.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    /// One op on a random input, forward only or forward + backward (of the sum of the output).
    Op {
        /// The op.
        op: OpKind,
        /// Input `[N, C, H, W]`.
        input: [usize; 4],
        /// Whether the backward pass is timed too.
        backward: bool,
        /// Output channels (convolutions).
        out_channels: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Dilation.
        dilation: usize,
        /// Groups (channel shuffle).
        groups: usize,
        /// Scale factor (upsample).
        scale: f64,
    },
    /// Model inference (eval mode) on a random batch.
    ModelFwd {
        /// Registered model name.
        model: String,
        /// Batch size.
        batch: usize,
        /// Input `[C, H, W]`.
        input: [usize; 3],
        /// Classes.
        num_classes: usize,
        /// Width multiplier.
        width_mult: f64,
    },
    /// One SGD (momentum 0.9) training step with cross-entropy on a random batch.
    TrainStep {
        /// Registered model name.
        model: String,
        /// Batch size.
        batch: usize,
        /// Input `[C, H, W]`.
        input: [usize; 3],
        /// Classes.
        num_classes: usize,
        /// Width multiplier.
        width_mult: f64,
        /// Learning rate.
        lr: f64,
    },
    /// One training epoch (SGD, momentum 0.9, in file order) over the mnist-5k training split.
    TrainEpoch {
        /// Registered model name (a 1x28x28, 10-class model).
        model: String,
        /// Batch size.
        batch: usize,
        /// The mnist-5k folder (IDX files), which the PyTorch side reads too.
        dataset_dir: String,
        /// Learning rate.
        lr: f64,
    },
}

/// A named workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Unique name, e.g. `dw3x3+pw fwd+bwd 8x144x56x56`.
    pub name: String,
    /// Group for the report: `op`, `model`, `train`.
    pub group: String,
    /// Whether it is heavy (a whole epoch): timed with fewer repeats.
    pub heavy: bool,
    /// What it does.
    #[serde(flatten)]
    pub spec: Spec,
}

/// A prepared workload: each call runs it once (and waits for the device).
pub type Runner = Box<dyn FnMut()>;

fn op(name: &str, op: OpKind, input: [usize; 4], backward: bool) -> Workload {
    let dims = input.map(|d| d.to_string()).join("x");
    let pass = if backward { "fwd+bwd" } else { "fwd" };
    Workload {
        name: format!("{name} {pass} {dims}"),
        group: "op".into(),
        heavy: false,
        spec: Spec::Op {
            op,
            input,
            backward,
            out_channels: 0,
            kernel: 3,
            stride: 1,
            dilation: 1,
            groups: 2,
            scale: 2.0,
        },
    }
}

fn with(mut w: Workload, f: impl FnOnce(&mut Spec)) -> Workload {
    f(&mut w.spec);
    w
}

fn set_out(out: usize) -> impl FnOnce(&mut Spec) {
    move |s| {
        if let Spec::Op { out_channels, .. } = s {
            *out_channels = out;
        }
    }
}

/// The standard workload list of `cargo xtask bench` (the list): ops forward and
/// forward + backward, model inference at batch 1 and 8 @224, training steps at batch 32 and a
/// LeNet-5 epoch on mnist-5k (`dataset_dir`; `None` leaves the epoch out).
pub fn standard(dataset_dir: Option<&str>) -> Vec<Workload> {
    let mut v = Vec::new();
    for backward in [false, true] {
        v.push(with(op("dw3x3+pw144->24", OpKind::DwPw, [8, 144, 56, 56], backward), set_out(24)));
        v.push(op("depthwise3x3", OpKind::Depthwise, [8, 144, 56, 56], backward));
        v.push(with(op("depthwise3x3 s2", OpKind::Depthwise, [8, 144, 56, 56], backward), |s| {
            if let Spec::Op { stride, .. } = s {
                *stride = 2;
            }
        }));
        v.push(with(op("pointwise144->24", OpKind::Pointwise, [8, 144, 56, 56], backward), set_out(24)));
        v.push(with(op("dilated3x3 d2 64->64", OpKind::Dilated, [8, 64, 28, 28], backward), |s| {
            if let Spec::Op { out_channels, dilation, .. } = s {
                *out_channels = 64;
                *dilation = 2;
            }
        }));
        v.push(with(op("transposed2x2 s2 64->32", OpKind::Transposed, [8, 64, 28, 28], backward), |s| {
            if let Spec::Op { out_channels, kernel, stride, .. } = s {
                *out_channels = 32;
                *kernel = 2;
                *stride = 2;
            }
        }));
        v.push(op("maxpool+unpool", OpKind::MaxUnpool, [8, 64, 56, 56], backward));
        v.push(op("upsample bilinear x2", OpKind::Upsample, [8, 64, 56, 56], backward));
        v.push(op("channel_shuffle g2", OpKind::ChannelShuffle, [8, 116, 28, 28], backward));
    }
    for model in ["mobilenet_v2", "resnet18", "resnet50", "shufflenet_v2_x1_0"] {
        for batch in [1, 8] {
            v.push(Workload {
                name: format!("{model} fwd b{batch} @224"),
                group: "model".into(),
                heavy: model == "resnet50" && batch == 8,
                spec: Spec::ModelFwd {
                    model: model.into(),
                    batch,
                    input: [3, 224, 224],
                    num_classes: 1000,
                    width_mult: 1.0,
                },
            });
        }
    }
    v.push(Workload {
        name: "lenet5 train step b32 28x28".into(),
        group: "train".into(),
        heavy: false,
        spec: Spec::TrainStep {
            model: "lenet5".into(),
            batch: 32,
            input: [1, 28, 28],
            num_classes: 10,
            width_mult: 1.0,
            lr: 0.01,
        },
    });
    v.push(Workload {
        name: "resnet18 train step b8 112x112".into(),
        group: "train".into(),
        heavy: true,
        spec: Spec::TrainStep {
            model: "resnet18".into(),
            batch: 8,
            input: [3, 112, 112],
            num_classes: 1000,
            width_mult: 1.0,
            lr: 0.01,
        },
    });
    v.push(Workload {
        name: "mobilenet_v2 w0.5 train step b32 32x32".into(),
        group: "train".into(),
        heavy: false,
        spec: Spec::TrainStep {
            model: "mobilenet_v2".into(),
            batch: 32,
            input: [3, 32, 32],
            num_classes: 10,
            width_mult: 0.5,
            lr: 0.01,
        },
    });
    v.push(Workload {
        name: "shufflenet_v2_x1_0 train step b32 32x32".into(),
        group: "train".into(),
        heavy: false,
        spec: Spec::TrainStep {
            model: "shufflenet_v2_x1_0".into(),
            batch: 32,
            input: [3, 32, 32],
            num_classes: 10,
            width_mult: 1.0,
            lr: 0.01,
        },
    });
    if let Some(dir) = dataset_dir {
        v.push(Workload {
            name: "lenet5 epoch mnist-5k b32".into(),
            group: "train".into(),
            heavy: true,
            spec: Spec::TrainEpoch { model: "lenet5".into(), batch: 32, dataset_dir: dir.into(), lr: 0.01 },
        });
    }
    v
}

impl Workload {
    /// Whether kiln can run this workload on `backend` with its kernels on or off: burn-ndarray
    /// has no backward for bilinear interpolation (it panics), so without kiln's bilinear kernel
    /// (which supplies one) the upsample forward + backward workload is skipped there.
    pub fn runs_on(&self, backend: &str, kernels: bool) -> bool {
        !(backend == "ndarray"
            && !kernels
            && matches!(self.spec, Spec::Op { op: OpKind::Upsample, backward: true, .. }))
    }

    /// Builds the workload on `device` (its autodiff variant for backward / training) and returns
    /// a closure that runs it once.
    pub fn prepare(&self, device: &Device) -> Result<Runner, BenchError> {
        let err = |reason: String| BenchError::Workload { name: self.name.clone(), reason };
        match &self.spec {
            Spec::Op { .. } => Ok(prepare_op(&self.spec, device)),
            Spec::ModelFwd { model, batch, input, num_classes, width_mult } => {
                let opts = options(*num_classes, *width_mult, input[0]);
                let m = kiln_models::build(model, &opts, device).map_err(|e| err(e.to_string()))?;
                let x = Tensor::<4>::random([*batch, input[0], input[1], input[2]], Distribution::Default, device);
                let device = device.clone();
                Ok(Box::new(move || {
                    let y = m.forward(x.clone());
                    sync(&device);
                    drop(y);
                }))
            }
            Spec::TrainStep { model, batch, input, num_classes, width_mult, lr } => {
                let ad = device.clone().autodiff();
                let opts = options(*num_classes, *width_mult, input[0]);
                let x = Tensor::<4>::random([*batch, input[0], input[1], input[2]], Distribution::Default, &ad);
                let labels: Vec<i64> = (0..*batch).map(|i| (i % num_classes) as i64).collect();
                let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [*batch]), &ad);
                let batches = vec![(x, y)];
                trainer(model, &opts, &ad, batches, *lr).map_err(err)
            }
            Spec::TrainEpoch { model, batch, dataset_dir, lr } => {
                let ad = device.clone().autodiff();
                let data = kiln_data::Dataset::load_path(std::path::Path::new(dataset_dir), None)
                    .map_err(|e| err(e.to_string()))?;
                let train = data.train;
                let idx: Vec<usize> = (0..train.len()).collect();
                // Batches are built once, outside the timed loop (the PyTorch side slices a
                // pre-converted tensor, so neither side times data loading).
                let batches: Vec<_> = idx.chunks(*batch).map(|c| train.batch(c, &ad)).collect();
                let opts = options(10, 1.0, train.channels());
                trainer(model, &opts, &ad, batches, *lr).map_err(err)
            }
        }
    }
}

fn options(num_classes: usize, width_mult: f64, in_channels: usize) -> ModelOptions {
    ModelOptions { num_classes, width_mult, in_channels, dropout: None }
}

fn sync(device: &Device) {
    // CPU backends are eager; wgpu queues work, so wait for it.
    let _ = device.sync();
}

fn prepare_op(spec: &Spec, device: &Device) -> Runner {
    let Spec::Op { op, input, backward, out_channels, kernel, stride, dilation, groups, scale } = spec.clone() else {
        unreachable!("prepare_op is called with Spec::Op")
    };
    let dev = if backward { device.clone().autodiff() } else { device.clone() };
    let c = input[1];
    let f: Box<dyn Fn(Tensor<4>) -> Tensor<4>> = match op {
        OpKind::Depthwise => {
            let m = ConvBnActConfig::depthwise(c, kernel, stride)
                .with_norm(false)
                .with_bias(Some(false))
                .with_act(ActKind::Identity)
                .init(&dev);
            Box::new(move |x| m.forward(x))
        }
        OpKind::Pointwise => {
            let m = ConvBnActConfig::pointwise(c, out_channels)
                .with_norm(false)
                .with_bias(Some(false))
                .with_act(ActKind::Identity)
                .init(&dev);
            Box::new(move |x| m.forward(x))
        }
        OpKind::DwPw => {
            let dw = ConvBnActConfig::depthwise(c, kernel, stride)
                .with_norm(false)
                .with_bias(Some(false))
                .with_act(ActKind::Identity)
                .init(&dev);
            let pw = ConvBnActConfig::pointwise(c, out_channels)
                .with_norm(false)
                .with_bias(Some(false))
                .with_act(ActKind::Identity)
                .init(&dev);
            Box::new(move |x| pw.forward(dw.forward(x)))
        }
        OpKind::Dilated => {
            // kiln's layer (padding `dilation * (kernel / 2)`, torchvision's default), so the
            // convolution takes kiln's dense kernel like the zoo's convolutions do.
            let m = ConvBnActConfig::new(c, out_channels)
                .with_kernel_size(kernel)
                .with_dilation(dilation)
                .with_norm(false)
                .with_bias(Some(false))
                .with_act(ActKind::Identity)
                .init(&dev);
            Box::new(move |x| m.forward(x))
        }
        OpKind::Transposed => {
            let m = ConvTranspose2dConfig::new([c, out_channels], [kernel, kernel])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(&dev);
            Box::new(move |x| kiln_kernels::conv_transpose2d(&m, x))
        }
        OpKind::MaxUnpool => {
            let pool = MaxPoolWithIndicesConfig::new([2, 2], [2, 2]).init();
            let unpool = MaxUnpool2dConfig::new([2, 2], [2, 2]).init();
            Box::new(move |x| {
                let (p, i) = pool.forward(x);
                unpool.forward(p, i, None)
            })
        }
        OpKind::Upsample => {
            let up = UpsampleConfig::new(UpsampleMode::Bilinear).with_scale_factor(Some(scale)).init();
            Box::new(move |x| up.forward(x))
        }
        OpKind::ChannelShuffle => {
            let s = ChannelShuffleConfig::new(groups).init();
            Box::new(move |x| s.forward(x))
        }
    };
    let x = Tensor::<4>::random(input, Distribution::Default, &dev);
    let x = if backward { x.require_grad() } else { x };
    Box::new(move || {
        let y = f(x.clone());
        if backward {
            let grads = y.sum().backward();
            sync(&dev);
            drop(grads);
        } else {
            sync(&dev);
            drop(y);
        }
    })
}

/// A training runner over `batches` (one step per batch per call).
fn trainer(
    model: &str,
    opts: &ModelOptions,
    device: &Device,
    batches: Vec<(Tensor<4>, Tensor<1, Int>)>,
    lr: f64,
) -> Result<Runner, String> {
    // Any registered model trains, behind kiln-models' one erased module type.
    let built = kiln_models::build(model, opts, device).map_err(|e| e.to_string())?;
    Ok(train_runner(kiln_models::AnyModel::new(built), device, batches, lr))
}

fn train_runner<M: Module + ZooModel + 'static>(
    model: M,
    device: &Device,
    batches: Vec<(Tensor<4>, Tensor<1, Int>)>,
    lr: f64,
) -> Runner {
    let mut optim =
        SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_momentum(0.9).with_dampening(0.0))).init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let device = device.clone();
    let mut slot = Some(model);
    Box::new(move || {
        let mut m = slot.take().expect("the model is put back after every step");
        for (x, y) in &batches {
            let logits = match ZooModel::forward(&m, x.clone()) {
                Output::Logits(l) => l,
                Output::Map(_) => unreachable!("training benches use classifiers"),
            };
            let loss = loss_fn.forward(logits, y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(lr, m, grads);
        }
        sync(&device);
        slot = Some(m);
    })
}
