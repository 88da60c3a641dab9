//! `cargo xtask compress`: loads a model folder written by `cargo xtask train`, runs the requested
//! compression stages through [`kiln_compress::compress`] and prints the stage table. The library
//! does the work; this file parses flags and picks the backend. Any registered classifier is
//! compressed through [`AnyModel`] (a plugin's too): no list of model types here.

use std::path::PathBuf;

use kiln_compress::io::SavedPlan;
use kiln_compress::{
    Calibration, ChannelPruneConfig, FinetuneConfig, Granularity, Importance, PipelineConfig, PipelineData, QatConfig,
    QuantConfig,
};
use kiln_models::{AnyModel, Registry, Task};

use crate::args::{CalibrationArg, ImportanceArg, QuantizeArg};
use crate::{Backend, CliError};

/// Arguments of `compress`.
#[derive(clap::Args, Debug)]
pub(crate) struct CompressArgs {
    /// Model name (the architecture of `--from`; any registered classifier).
    model: String,
    /// Folder written by `cargo xtask train --out` (model.json + model.bpk).
    #[arg(long)]
    from: PathBuf,
    /// Unstructured global magnitude pruning to this sparsity (0..1), cubic schedule.
    #[arg(long)]
    prune_unstructured: Option<f64>,
    /// Steps of the unstructured schedule.
    #[arg(long, default_value_t = 3)]
    prune_steps: usize,
    /// Structured channel pruning: fraction of each channel group removed (0..1).
    #[arg(long)]
    prune_channels: Option<f64>,
    /// Channel importance.
    #[arg(long, value_enum, default_value_t = ImportanceArg::L1)]
    importance: ImportanceArg,
    /// Keep a multiple of N channels per group.
    #[arg(long, default_value_t = 1)]
    round_to: usize,
    /// Fold batch norms into the convolutions.
    #[arg(long)]
    fold_bn: bool,
    /// Quantization.
    #[arg(long, value_enum)]
    quantize: Option<QuantizeArg>,
    /// Range calibration.
    #[arg(long, value_enum, default_value_t = CalibrationArg::Minmax)]
    calibration: CalibrationArg,
    /// Weight scales per tensor instead of per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// Keep activations in f32 (quantize weights only).
    #[arg(long)]
    weights_only: bool,
    /// Calibration images (from the training split).
    #[arg(long, default_value_t = 256)]
    calibration_images: usize,
    /// Bits of the symmetric weight integers (2..=8; stored as int8 either way).
    #[arg(long, default_value_t = 8)]
    weight_bits: u32,
    /// Quantization-aware training after int8 PTQ: epochs of fine-tuning through fake-quantized
    /// weights and activations (adds a `quantize-int8-qat` stage; 0: off).
    #[arg(long, default_value_t = 0)]
    qat_epochs: usize,
    /// Quantization-aware training learning rate (Adam).
    #[arg(long, default_value_t = 1e-4)]
    qat_lr: f64,
    /// Teacher folder (`cargo xtask train --out`) for distillation.
    #[arg(long)]
    distill_from: Option<PathBuf>,
    /// Distillation: weight of the hard-label loss.
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// Distillation temperature.
    #[arg(long, default_value_t = 4.0)]
    temperature: f64,
    /// FitNets hint weight (0: off).
    #[arg(long, default_value_t = 0.0)]
    hint: f64,
    /// Fine-tuning epochs after each pruning stage (and for distillation).
    #[arg(long, default_value_t = 0)]
    finetune_epochs: usize,
    /// Fine-tuning learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Fine-tuning batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed of the fine-tuning shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latency runs per stage (median reported).
    #[arg(long, default_value_t = 100)]
    latency_runs: usize,
    /// Backend (training and measuring).
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Output folder: report.json, report.md, model/ and stages/.
    #[arg(long)]
    out: PathBuf,
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

fn ratio(name: &str, v: Option<f64>) -> Result<(), CliError> {
    match v {
        Some(s) if !(0.0..1.0).contains(&s) => Err(usage(format!("--{name} must be in [0, 1), got {s}"))),
        _ => Ok(()),
    }
}

pub(crate) fn run(registry: &Registry, args: &CompressArgs) -> Result<(), CliError> {
    ratio("prune-unstructured", args.prune_unstructured)?;
    ratio("prune-channels", args.prune_channels)?;
    if args.qat_epochs > 0 && args.quantize.is_none() {
        return Err(usage("--qat-epochs needs --quantize int8"));
    }
    if !(2..=8).contains(&args.weight_bits) {
        return Err(usage(format!("--weight-bits must be in 2..=8, got {}", args.weight_bits)));
    }
    let calibration: Calibration = args.calibration.into();
    let importance: Importance = args.importance.into();
    let eval_device = args.backend.device()?;
    let train_device = eval_device.clone().autodiff();
    let cfg = PipelineConfig {
        prune_channels: args.prune_channels.map(|ratio| ChannelPruneConfig {
            ratio,
            importance,
            round_to: args.round_to,
        }),
        prune_unstructured: args.prune_unstructured,
        prune_steps: args.prune_steps,
        fold_bn: args.fold_bn,
        quantize: args.quantize.as_ref().map(|_| QuantConfig {
            granularity: if args.per_tensor { Granularity::PerTensor } else { Granularity::PerChannel },
            calibration,
            activations: !args.weights_only,
            calibration_images: args.calibration_images,
            weight_bits: args.weight_bits,
        }),
        qat: (args.qat_epochs > 0).then(|| QatConfig {
            epochs: args.qat_epochs,
            batch: args.batch_size,
            lr: args.qat_lr,
            seed: args.seed,
            ..QatConfig::default()
        }),
        finetune: FinetuneConfig { epochs: args.finetune_epochs, batch: args.batch_size, lr: args.lr, seed: args.seed },
        distill: (args.alpha, args.temperature, args.hint),
        latency_runs: args.latency_runs,
        backend: args.backend.name().to_string(),
    };
    let canonical = registry.get(&args.model).map_err(usage)?.name.clone();
    for (flag, dir) in
        std::iter::once(("--from", &args.from)).chain(args.distill_from.iter().map(|d| ("--distill-from", d)))
    {
        if !dir.join("model.json").is_file() {
            return Err(usage(format!(
                "{flag} {}: no model.json there; pass a folder written by `cargo xtask train --out DIR`",
                dir.display()
            )));
        }
    }
    let saved = kiln_train::saved::load(registry, &args.from, &train_device).map_err(failed)?;
    if saved.spec.model != canonical {
        return Err(usage(format!(
            "{} holds a {} model, not {}; pass `{}` as the model name",
            args.from.display(),
            saved.spec.model,
            canonical,
            saved.spec.model
        )));
    }
    let adapter = &saved.spec.input;
    if adapter.resize || (adapter.repeat_channels && adapter.data_shape[0] != adapter.model_shape[0]) {
        return Err(usage(format!(
            "{} was trained with input adaptation ({}); compress supports models trained on the data's own shape",
            args.from.display(),
            adapter.description
        )));
    }
    let data = kiln_data::Dataset::load(&saved.spec.dataset, None).map_err(failed)?;
    let mut train = data.train.clone();
    let mut test = data.test().map_err(failed)?.clone();
    adapter.scaler.apply_in_place(&mut train).map_err(failed)?;
    adapter.scaler.apply_in_place(&mut test).map_err(failed)?;
    let plan =
        SavedPlan::new(canonical.clone(), adapter.model_shape.to_vec(), saved.spec.num_classes, saved.spec.width_mult);
    if saved.spec.task != Task::Classification {
        return Err(usage(format!(
            "{} holds a {:?} model; compress measures accuracy, so it takes classifiers only",
            args.from.display(),
            saved.spec.task
        )));
    }
    let teacher = match &args.distill_from {
        Some(dir) => {
            let t = kiln_train::saved::load(registry, dir, &train_device).map_err(failed)?;
            if t.spec.task != Task::Classification {
                return Err(usage(format!("--distill-from {}: the teacher must be a classifier", dir.display())));
            }
            Some(AnyModel::new(t.model))
        }
        None => None,
    };
    let model = AnyModel::new(saved.model);
    let d = PipelineData { train: &train, test: &test };
    let report = kiln_compress::compress(model, &plan, teacher, d, &cfg, &train_device, &eval_device, &args.out)
        .map_err(|e| match e {
            // Bad flags, and an output folder that cannot be written (read-only, full, not a folder).
            kiln_compress::CompressError::InvalidOption(_) | kiln_compress::CompressError::Io { .. } => usage(e),
            e => failed(e),
        })?;
    print!("{}", report.to_markdown());
    println!("\nwrote {}/report.json, report.md and model/", args.out.display());
    Ok(())
}
