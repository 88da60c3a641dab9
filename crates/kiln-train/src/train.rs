//! The training run: data preparation, model adaptation, burn-train's Learner, evaluation and the
//! files in `--out`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdaGradConfig, AdamConfig, ModuleOptimizer, RmsPropConfig, SgdConfig};
use burn::tensor::{Device, Tensor};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::store::EventStoreClient;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{EarlyStoppingStrategy, Interrupter, Learner, SupervisedTraining};
use kiln_data::{Dataset, ImageDataset, ScaleKind, Scaler};
use kiln_metrics::{ConfusionMatrix, OverfittingDetector};
use kiln_models::{Output, Registry, ZooModel};
use kiln_regularize::{EarlyStopping, Mode};

use crate::TrainError;
use crate::checkpoint::AtomicCheckpointer;
use crate::config::{ChannelAdapt, Display, OptimizerKind, TrainConfig};
use crate::data::{ImageBatcher, IndexDataset, InputAdapter, for_each_batch};
use crate::init::initialize;
use crate::model::{AnyModel, Distillation, StepContext, Task, Trainee};
use crate::recorder::{EpochRecord, GradProbe, Recorder};
use crate::renderer::SilentRenderer;
use crate::report::TrainReport;
use crate::saved::{self, ModelSpec};

/// The three splits a run uses, unscaled (pixels as the dataset gives them).
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training images (after the validation hold-out and `--train-limit`).
    pub train: Arc<ImageDataset>,
    /// Validation images (held out from the training split).
    pub val: Arc<ImageDataset>,
    /// Test images (the dataset's test split; 20 % of the training split when it has none).
    pub test: Arc<ImageDataset>,
    /// A note when the test split had to be carved out of the training split.
    pub note: Option<String>,
}

/// Loads `cfg.dataset` and splits it (seeded).
pub fn load_splits(cfg: &TrainConfig) -> Result<Splits, TrainError> {
    let ds = Dataset::load(&cfg.dataset, cfg.format)?;
    let (train_full, test, note) = match ds.test {
        Some(test) => (ds.train, test, None),
        None => {
            let (train, test) = ds.train.split_validation(0.2, cfg.seed ^ 0x7E57)?;
            (
                train,
                test,
                Some("the dataset has no test split: 20 % of its training images are held out as test".into()),
            )
        }
    };
    let (mut train, val) = train_full.split_validation(cfg.val_fraction, cfg.seed)?;
    if let Some(limit) = cfg.train_limit {
        let idx: Vec<usize> = (0..limit.min(train.len())).collect();
        train = train.subset(&idx)?;
    }
    Ok(Splits { train: Arc::new(train), val: Arc::new(val), test: Arc::new(test), note })
}

/// A model ready to train: built, initialized, its input adapter and spec decided.
#[derive(Debug)]
pub struct Prepared {
    /// The model (on the autodiff version of the run's device).
    pub model: AnyModel,
    /// Its spec (saved as `model.json`).
    pub spec: ModelSpec,
    /// The data.
    pub splits: Splits,
}

/// Builds `cfg.model` for `cfg.dataset` on `device`: decides the task and the input adaptation
/// (stem channels or channel repeat, resize), fits the scaler on the training split and
/// initializes the weights.
pub fn prepare(registry: &Registry, cfg: &TrainConfig, device: &Device) -> Result<Prepared, TrainError> {
    cfg.validate()?;
    let entry = registry.get(&cfg.model)?.clone();
    let splits = load_splits(cfg)?;
    let data_shape = splits.train.image_shape();
    let [dc, dh, dw] = data_shape;
    let [nc, nh, nw] = entry.default_input;

    let (in_channels, repeat, channel_note) = if dc == nc {
        (nc, false, None)
    } else {
        match cfg.channels {
            ChannelAdapt::Stem => {
                (dc, false, Some(format!("first convolution built for {dc} channel(s) (native {nc})")))
            }
            ChannelAdapt::Repeat if dc == 1 => (nc, true, Some(format!("1-channel images repeated to {nc} channels"))),
            ChannelAdapt::Repeat => {
                return Err(TrainError::Mismatch(format!(
                    "{} takes {nc} channels and the data has {dc}: channel repeat only applies to 1-channel \
                     images; use --channels stem",
                    entry.name
                )));
            }
        }
    };
    let (mh, mw) = match cfg.resize {
        Some(r) => (r, r),
        None => (dh, dw),
    };
    let size_note = if (mh, mw) != (dh, dw) {
        format!("resized bilinearly from {dh}x{dw} to {mh}x{mw} (native {nh}x{nw})")
    } else if (mh, mw) != (nh, nw) {
        format!("fed at {mh}x{mw} (native {nh}x{nw}; the network's global pooling adapts)")
    } else {
        format!("{mh}x{mw} (native)")
    };
    let num_classes = if cfg.num_classes > 0 { cfg.num_classes } else { splits.train.num_classes() };
    let options =
        kiln_models::ModelOptions { num_classes, width_mult: cfg.width_mult, in_channels, dropout: cfg.dropout };
    let input = [1, in_channels, mh, mw];
    // Seeded under kiln's process-wide lock: the backends keep one random generator per process, so
    // a run's initial weights depend on its seed alone, not on runs in other threads.
    let (report, model) = kiln_layers::seeded_with(device, cfg.seed, || -> Result<_, TrainError> {
        // Built on the autodiff device so that its parameters are tracked when the Learner trains it.
        let zoo = registry.build(&entry.name, &options, &device.clone().autodiff())?;
        // The trace checks that the model takes this input (a one-line error instead of a panic
        // in the first batch).
        let report = kiln_analyze::analyze(&*zoo, &entry.name, &input).map_err(|e| {
            TrainError::Mismatch(format!(
                "{} cannot take {}x{}x{} inputs ({e}); try --resize {nh}",
                entry.name, in_channels, mh, mw
            ))
        })?;
        let model = initialize(AnyModel::new(zoo), cfg.init);
        kiln_layers::materialize(&model);
        Ok((report, model))
    })?;
    let out_shape = report.layers.last().map(|l| l.output_shape.clone()).unwrap_or_default();
    let task = model.task();
    if task == Task::Dense || (task == Task::Reconstruction && out_shape != input) {
        return Err(TrainError::Unsupported(format!(
            "{} outputs {:?} maps (dense prediction); training it needs per-pixel masks, which the supported \
             dataset formats (IDX, CIFAR-10, image folders) do not have",
            entry.name, out_shape
        )));
    }
    // One class (or a forced --num-classes 1): cross-entropy over one logit is 0 for every input,
    // so the run would "train" to nothing and report a meaningless score.
    if task == Task::Classification && num_classes < 2 {
        return Err(TrainError::Mismatch(format!(
            "{}: a classifier needs at least two classes, and this run has {num_classes} ({}); add another class \
             (an image folder: one sub-folder per class) or train an autoencoder on it",
            cfg.dataset,
            splits.train.class_names().join(", ")
        )));
    }
    let scale = match (cfg.scale, task) {
        (Some(k), _) => k,
        (None, Task::Classification) => ScaleKind::MinMax,
        (None, Task::Reconstruction | Task::Dense) => ScaleKind::Identity,
    };
    let scaler = Scaler::fit(scale, &splits.train)?;
    let mut notes: Vec<String> = channel_note.into_iter().collect();
    notes.push(size_note);
    notes.push(format!("{} scaling fitted on the training split", scale.name()));
    let adapter = InputAdapter {
        data_shape,
        model_shape: [in_channels, mh, mw],
        scaler,
        repeat_channels: repeat,
        resize: (mh, mw) != (dh, dw),
        description: notes.join("; "),
    };
    let spec = ModelSpec {
        format: saved::SPEC_FORMAT,
        model: entry.name.clone(),
        num_classes,
        width_mult: cfg.width_mult,
        in_channels,
        dropout: cfg.dropout,
        task,
        input: adapter,
        class_names: splits.train.class_names().to_vec(),
        dataset: cfg.dataset.clone(),
    };
    Ok(Prepared { model, spec, splits })
}

/// What a finished run returns.
#[derive(Debug)]
pub struct TrainOutcome {
    /// Its report (also written as `metrics.json` / `report.md`).
    pub report: TrainReport,
    /// The trained model (inference mode).
    pub model: AnyModel,
    /// Its spec.
    pub spec: ModelSpec,
}

/// Builds, trains, evaluates and saves `cfg.model`: the `cargo xtask train` pipeline.
/// `backend` names `device`'s backend in the report.
pub fn train(
    registry: &Registry,
    cfg: &TrainConfig,
    backend: &str,
    device: &Device,
) -> Result<TrainOutcome, TrainError> {
    let prepared = prepare(registry, cfg, device)?;
    let distillation = match &cfg.teacher {
        Some(dir) => Some(load_teacher(registry, dir, &prepared.spec, cfg.kd_alpha, cfg.kd_temperature, device)?),
        None => None,
    };
    fit(prepared, cfg, distillation, backend, device)
}

/// Loads a trained model folder as a distillation teacher for a student with spec `student`
/// (both must read the same images the same way and predict the same classes).
pub fn load_teacher(
    registry: &Registry,
    dir: &Path,
    student: &ModelSpec,
    alpha: f64,
    temperature: f64,
    device: &Device,
) -> Result<Distillation, TrainError> {
    let saved = saved::load(registry, dir, device)?;
    let t = &saved.spec;
    if t.task != Task::Classification || student.task != Task::Classification {
        return Err(TrainError::Mismatch("distillation needs a classifier teacher and student".into()));
    }
    if t.num_classes != student.num_classes {
        return Err(TrainError::Mismatch(format!(
            "the teacher in {} predicts {} classes, the student {}",
            dir.display(),
            t.num_classes,
            student.num_classes
        )));
    }
    if t.input != student.input {
        return Err(TrainError::Mismatch(format!(
            "the teacher in {} reads its input differently ({}) from the student ({}); train both on the same \
             dataset, split seed and input adaptation",
            dir.display(),
            t.input.description,
            student.input.description
        )));
    }
    let teacher = AnyModel::new(saved.model);
    Ok(Distillation { teacher: Arc::new(teacher), alpha, temperature })
}

/// Early stopping as burn-train asks for it, decided by kiln-regularize's [`EarlyStopping`] on
/// the validation loss the steps recorded.
#[derive(Clone)]
struct ValLossStopping {
    state: Arc<Mutex<EarlyStopping>>,
    recorder: Arc<Mutex<Recorder>>,
}

impl EarlyStoppingStrategy for ValLossStopping {
    fn should_stop(&mut self, _epoch: usize, _store: &EventStoreClient) -> bool {
        let val = self.recorder.lock().expect("recorder").current_val_loss();
        match val {
            Some(v) => self.state.lock().expect("early stopping").step(v).should_stop(),
            None => false,
        }
    }
}

fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    let momentum = |nesterov| MomentumConfig::new().with_momentum(0.9).with_dampening(0.0).with_nesterov(nesterov);
    match cfg.optimizer {
        OptimizerKind::Gd | OptimizerKind::Sgd => SgdConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::Momentum => {
            SgdConfig::new().with_weight_decay(decay).with_momentum(Some(momentum(false))).init()
        }
        OptimizerKind::Nesterov => SgdConfig::new().with_weight_decay(decay).with_momentum(Some(momentum(true))).init(),
        OptimizerKind::Adam => AdamConfig::new().with_epsilon(1e-8).with_weight_decay(decay).init(),
        OptimizerKind::AdaGrad => AdaGradConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::RmsProp => {
            RmsPropConfig::new().with_alpha(0.99).with_momentum(0.0).with_epsilon(1e-8).with_weight_decay(decay).init()
        }
    }
}

const HISTORY_FILE: &str = "history.json";
/// Written last: its presence marks a finished run.
const METRICS_FILE: &str = "metrics.json";
/// What `--resume` reads: the finished epochs and their gradient probes, in MessagePack, whose
/// f64s are the 8 bytes themselves (serde_json's parser can return a float one ulp away from the
/// one it printed, and a resumed run must report exactly what the uninterrupted one would).
const STATE_FILE: &str = "resume.mpk";

/// The finished epochs of a run, as `--resume` continues from them.
#[derive(serde::Serialize, serde::Deserialize)]
struct ResumeState {
    epochs: Vec<EpochRecord>,
    probes: Vec<GradProbe>,
}

fn read_state(out: &Path) -> Result<ResumeState, TrainError> {
    let path = out.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|_| {
        TrainError::InvalidOption(format!(
            "--resume: {} holds no previous run ({STATE_FILE} missing); drop --resume to start one",
            out.display()
        ))
    })?;
    rmp_serde::from_slice(&bytes).map_err(|e| {
        TrainError::Saved(format!(
            "--resume: {} is damaged ({}); start the run again without --resume",
            path.display(),
            e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
        ))
    })
}

/// The newest complete checkpoint (all three records written) that the history covers.
fn last_checkpoint(dir: &Path, max_epoch: usize) -> Option<usize> {
    crate::checkpoint::complete_epochs(&dir.join("checkpoint")).into_iter().filter(|&n| n <= max_epoch).max()
}

/// Reads the three records of `epoch`'s checkpoint, so that a damaged file is a one-line error
/// here rather than a panic inside burn-train.
fn check_checkpoint(dir: &Path, epoch: usize) -> Result<(), TrainError> {
    crate::checkpoint::check_epoch(&dir.join("checkpoint"), epoch).map_err(|e| {
        TrainError::Saved(format!("--resume: {e}; delete that file to resume from the checkpoint before it"))
    })
}

/// Trains a prepared model with `cfg`'s optimizer and regularization (optionally distilling from
/// a teacher), evaluates it on the test split and writes the outputs into `cfg.out`.
pub fn fit(
    prepared: Prepared,
    cfg: &TrainConfig,
    distillation: Option<Distillation>,
    backend: &str,
    device: &Device,
) -> Result<TrainOutcome, TrainError> {
    let Prepared { model, spec, splits } = prepared;
    let out = cfg.out.clone();
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let augment = cfg.augmentation()?;

    // Resume: the history of the finished epochs and the matching checkpoint.
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut probes: Vec<GradProbe> = Vec::new();
    let mut checkpoint = None;
    if cfg.resume {
        let state = read_state(&out)?;
        history = state.epochs;
        probes = state.probes;
        let epoch = last_checkpoint(&out, history.len()).ok_or_else(|| {
            TrainError::InvalidOption(format!("--resume: no checkpoint in {}/checkpoint", out.display()))
        })?;
        history.truncate(epoch);
        probes.retain(|p| p.epoch <= epoch);
        // A run killed after its last epoch but before its outputs were all written (metrics.json
        // is written last) resumes into evaluation and writing, with no epoch to train.
        let finished = out.join(METRICS_FILE).is_file();
        if epoch > cfg.epochs || (epoch == cfg.epochs && finished) {
            return Err(TrainError::InvalidOption(format!(
                "--resume: the run in {} already has {epoch} epochs; ask for more with --epochs",
                out.display()
            )));
        }
        check_checkpoint(&out, epoch)?;
        checkpoint = Some(epoch);
    } else {
        // A fresh run must not mix with an old one's checkpoints.
        let _ = std::fs::remove_dir_all(out.join("checkpoint"));
        let _ = std::fs::remove_file(out.join(HISTORY_FILE));
        let _ = std::fs::remove_file(out.join(STATE_FILE));
    }
    // A resumed run's outputs are rewritten: none of an interrupted attempt's may stay behind.
    let _ = std::fs::remove_file(out.join(METRICS_FILE));
    kiln_data::fsutil::remove_temporaries(&out);
    kiln_data::fsutil::remove_temporaries(&out.join("checkpoint"));

    let lr = cfg.lr();
    let use_tui = cfg.display == Display::Auto && std::io::IsTerminal::is_terminal(&std::io::stdout());
    // One line per epoch unless quiet or burn-train's dashboard owns the terminal.
    let print = cfg.display != Display::Quiet && !use_tui;
    let history_path = out.join(HISTORY_FILE);
    let state_path = out.join(STATE_FILE);
    let total_epochs = cfg.epochs;
    let listener: crate::recorder::EpochListener =
        Box::new(move |e: &EpochRecord, all: &[EpochRecord], p: &[GradProbe]| {
            if print {
                let acc = |a: Option<f64>| a.map_or(String::new(), |v| format!(" acc {v:.4}"));
                eprintln!(
                    "epoch {:>3}/{total_epochs}  train loss {:.4}{}  val loss {:.4}{}  ({:.1} s)",
                    e.epoch,
                    e.train_loss,
                    acc(e.train_accuracy),
                    e.val_loss,
                    acc(e.val_accuracy),
                    e.seconds
                );
            }
            // The exact state first (what --resume reads), then the readable history.
            let state = ResumeState { epochs: all.to_vec(), probes: p.to_vec() };
            let _ = saved::write_atomic(&state_path, &rmp_serde::to_vec_named(&state).expect("resume state"));
            let _ = saved::write_atomic(&history_path, serde_json::to_string_pretty(all).expect("history").as_bytes());
        });
    let recorder = Arc::new(Mutex::new(Recorder::new(history.clone(), lr, Some(listener)).with_probes(probes)));
    let interrupter = Interrupter::new();
    let ctx = StepContext {
        task: spec.task,
        l1: cfg.l1,
        label_smoothing: cfg.label_smoothing,
        distillation,
        recorder: recorder.clone(),
        interrupter: interrupter.clone(),
    };
    let trainee = Trainee::new(model, ctx);

    let adapter = Arc::new(spec.input.clone());
    let batch = if cfg.optimizer == OptimizerKind::Gd { splits.train.len() } else { cfg.batch_size };
    // Unshuffled indices: the batcher orders each epoch from (seed, epoch), so a resumed run
    // trains on the batches the uninterrupted run would have.
    let first_epoch = checkpoint.unwrap_or(0) + 1;
    let train_loader = DataLoaderBuilder::new(ImageBatcher::for_training(
        splits.train.clone(),
        adapter.clone(),
        augment,
        cfg.seed,
        batch,
        first_epoch,
    ))
    .batch_size(batch)
    .set_device(device.clone())
    .build(IndexDataset(splits.train.len()));
    let valid_loader = DataLoaderBuilder::new(ImageBatcher::new(splits.val.clone(), adapter.clone(), None, cfg.seed))
        .batch_size(cfg.batch_size.max(64))
        .set_device(device.clone())
        .build(IndexDataset(splits.val.len()));

    let stopping = cfg.early_stopping.map(|patience| {
        let mut es = EarlyStopping::new(Mode::Min, patience);
        for e in &history {
            es.step(e.val_loss);
        }
        ValLossStopping { state: Arc::new(Mutex::new(es)), recorder: recorder.clone() }
    });

    let ckpt_dir = out.join("checkpoint");
    let mut training = SupervisedTraining::new(&out, train_loader, valid_loader)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .with_custom_checkpointers(
            AtomicCheckpointer::new(&ckpt_dir, "model"),
            AtomicCheckpointer::new(&ckpt_dir, "optim"),
            AtomicCheckpointer::new(&ckpt_dir, "scheduler"),
        )
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
        .with_interrupter(interrupter.clone())
        .num_epochs(cfg.epochs)
        .with_application_logger(None);
    if spec.task == Task::Classification {
        training = training.metric_train_numeric(AccuracyMetric::new()).metric_valid_numeric(AccuracyMetric::new());
    }
    if !use_tui {
        training = training.renderer(Box::new(SilentRenderer));
    }
    if let Some(s) = &stopping {
        training = training.early_stopping(s.clone());
    }
    if let Some(epoch) = checkpoint {
        training = training.checkpoint(epoch);
        if print {
            eprintln!("resuming {} from epoch {epoch}", out.display());
        }
    }
    let learner = Learner::new(trainee, optimizer(cfg), lr);
    let result = training.launch(learner);
    if let Some(e) = &result.error {
        // A checkpoint that could not be written (full disk, read-only folder) stopped the run.
        let reason = match &**e {
            burn::train::TrainingError::Checkpoint(burn::train::checkpoint::CheckpointerError::Unknown(m)) => m.clone(),
            other => other.to_string(),
        };
        return Err(TrainError::io(&ckpt_dir, format!("training stopped: {reason}")));
    }
    let (epochs, probes) = {
        let mut rec = recorder.lock().expect("recorder");
        if let Some(d) = rec.diverged.clone() {
            // The weights in memory took that step: nothing of them is written, and the
            // checkpoints and history.json stay those of the last finished epoch.
            let last = last_checkpoint(&out, rec.epochs.len());
            return Err(TrainError::Diverged(format!(
                "the training loss became {} at epoch {} of {}, step {}: the run stopped and wrote no model; {}; \
                 lower the learning rate (--lr) or add --weight-decay / --label-smoothing",
                d.loss,
                d.epoch,
                cfg.epochs,
                d.step,
                match last {
                    Some(e) => format!(
                        "the last good checkpoint is epoch {e} in {} (resume from it with --resume)",
                        ckpt_dir.display()
                    ),
                    None => "no epoch finished, so there is no checkpoint".into(),
                }
            )));
        }
        rec.finish();
        (rec.epochs.clone(), rec.probes.clone())
    };
    let model = result.model.model;

    // Evaluation on the test split.
    let test = &splits.test;
    let mut loss_sum = 0.0;
    let mut cm = ConfusionMatrix::new(spec.num_classes.max(2))?;
    let mut classification = spec.task == Task::Classification;
    for_each_batch(&model, test, &spec.input, 256, device, |m, x, labels, _raw| {
        let n = labels.len() as f64;
        match (m.forward(x.clone()), spec.task) {
            (Output::Logits(logits), Task::Classification) => {
                let y = Tensor::<1, burn::tensor::Int>::from_data(
                    burn::tensor::TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [labels.len()]),
                    device,
                );
                let loss = kiln_regularize::label_smoothing_cross_entropy(logits.clone(), y.clone(), 0.0);
                loss_sum += loss.into_scalar::<f32>() as f64 * n;
                if cm.add_logits(&logits, &y).is_err() {
                    classification = false;
                }
            }
            (Output::Map(map), _) => {
                let mse = (map - x).powi_scalar(2).mean().into_scalar::<f32>() as f64;
                loss_sum += mse * n;
            }
            (Output::Logits(_), _) => {}
        }
    });
    let test_loss = loss_sum / test.len().max(1) as f64;
    let (test_accuracy, test_mse, confusion) = if classification {
        // Names are decoration: a dataset whose names do not match the class count keeps the
        // counts, unnamed (the old fallback replaced them with an empty matrix).
        let cm = cm.clone().with_class_names(spec.class_names.clone()).unwrap_or(cm);
        (Some(cm.accuracy()), None, Some(cm))
    } else {
        (None, Some(test_loss), None)
    };

    let ran = epochs.len();
    let stopped_early = stopping.is_some() && ran < cfg.epochs;
    let stop_reason = if stopped_early {
        let best = epochs
            .iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
            .map(|e| (e.epoch, e.val_loss))
            .unwrap_or((0, f64::NAN));
        Some(format!(
            "stopped after epoch {ran} of {}: the validation loss had not improved for {} epoch(s) since its best, {:.4} at epoch {}",
            cfg.epochs,
            cfg.early_stopping.unwrap_or(0),
            best.1,
            best.0
        ))
    } else {
        None
    };
    let overfitting = overfitting_verdict(&epochs);
    let gradient_probes = match (probes.first(), probes.last()) {
        (Some(a), Some(b)) if probes.len() > 1 => vec![a.clone(), b.clone()],
        (Some(a), _) => vec![a.clone()],
        _ => vec![],
    };
    let code_clusters = if spec.task == Task::Reconstruction {
        crate::autoencoder::save_reconstructions(
            &out.join("reconstructions.png"),
            &model,
            test,
            &spec.input,
            16,
            device,
        )?;
        crate::autoencoder::cluster_codes(&model, test, &spec.input, cfg.seed, device)?
    } else {
        None
    };
    let input_shape = spec.input_shape(1);
    let analysis = kiln_analyze::analyze(model.as_zoo(), &spec.model, &input_shape)
        .map_err(|e| TrainError::Mismatch(e.to_string()))?;
    let report = TrainReport {
        model: spec.model.clone(),
        backend: backend.to_string(),
        dataset: cfg.dataset.clone(),
        task: spec.task,
        epochs,
        test_accuracy,
        test_loss,
        test_mse,
        stopped_early,
        stop_reason,
        overfitting,
        gradient_probes,
        weight_sparsity: weight_sparsity(&model, 1e-3),
        params: analysis.total.params,
        macs: analysis.total.macs,
        input_adaptation: spec.input.description.clone()
            + &splits.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default(),
        split_sizes: [splits.train.len(), splits.val.len(), splits.test.len()],
        confusion,
        code_clusters,
        config: cfg.clone(),
    };
    saved::save(&out, &spec, model.as_zoo())?;
    saved::write_atomic(&out.join("curves.svg"), report.to_svg().as_bytes())?;
    saved::write_atomic(&out.join("report.md"), report.to_markdown().as_bytes())?;
    saved::write_atomic(&out.join(METRICS_FILE), report.to_json().as_bytes())?;
    Ok(TrainOutcome { report, model, spec })
}

/// The overfitting verdict of a run: kiln-metrics' detector on the loss curves (validation loss
/// worse for 3 epochs after its best while the training loss keeps falling, or a widening gap).
/// For classifiers a rising validation loss alone is not enough: the model must also fit its
/// training data clearly better than it generalizes (training accuracy more than 5 points above
/// validation accuracy at the last epoch). A validation loss that creeps up while both accuracies
/// stay within a point or two is a model growing over-confident on a few examples, and the
/// verdict says that instead.
pub fn overfitting_verdict(epochs: &[EpochRecord]) -> Option<kiln_metrics::OverfittingVerdict> {
    const ACCURACY_GAP: f64 = 0.05;
    let train: Vec<f64> = epochs.iter().map(|e| e.train_loss).collect();
    let val: Vec<f64> = epochs.iter().map(|e| e.val_loss).collect();
    let mut v = OverfittingDetector::new(3).with_min_delta(1e-3).check_losses(&train, &val).ok()?;
    // kiln-metrics counts epochs from 0; the run's records (and report.md) from 1.
    v.reason = one_based_epochs(&v.reason);
    if v.overfitting
        && let Some(last) = epochs.last()
        && let (Some(ta), Some(va)) = (last.train_accuracy, last.val_accuracy)
    {
        let gap = ta - va;
        if gap <= ACCURACY_GAP {
            v.reason = format!(
                "the validation loss rose slightly ({}), but training and validation accuracy are only {:.1} points \
                 apart ({ta:.4} vs {va:.4}): over-confidence on a few examples, not overfitting",
                v.reason,
                100.0 * gap
            );
            v.overfitting = false;
            v.began_at_epoch = None;
        } else {
            v.reason = format!("{}; training accuracy {ta:.4} vs validation {va:.4}", v.reason);
        }
    }
    Some(v)
}

/// Rewrites "epoch N" (0-based) as "epoch N+1".
fn one_based_epochs(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("epoch ") {
        out.push_str(&rest[..i + 6]);
        rest = &rest[i + 6..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<usize>() {
            out.push_str(&(n + 1).to_string());
            rest = &rest[digits.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// Fraction of conv / linear weights (rank >= 2) whose magnitude is below `threshold`.
pub fn weight_sparsity<M: Module>(model: &M, threshold: f64) -> f64 {
    struct V {
        threshold: f64,
        small: u64,
        total: u64,
    }
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D >= 2 {
                let t = param.val();
                self.total += t.shape().num_elements() as u64;
                let small = t.abs().lower_elem(self.threshold).int().sum().into_scalar::<i64>();
                self.small += small as u64;
            }
        }
    }
    let mut v = V { threshold, small: 0, total: 0 };
    model.visit(&mut v);
    if v.total == 0 { 0.0 } else { v.small as f64 / v.total as f64 }
}
