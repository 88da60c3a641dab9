//! Per-epoch bookkeeping inside the training loop: losses, accuracies, timings and gradient
//! probes, gathered from the steps themselves (burn-train calls every training step of an epoch,
//! then every validation step, so a training step after validation steps starts a new epoch).

use std::time::Instant;

use burn::module::{Module, ParamId};
use burn::tensor::{Gradients, Tensor};
use kiln_metrics::{GradNormMonitor, GradNormReport, GradientLookup};
use serde::{Deserialize, Serialize};

use crate::model::StepOutput;

/// One epoch of a run (the `epochs` entries of `metrics.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch (data loss, without the L1 penalty; dropout active).
    pub train_loss: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Training accuracy over the epoch (classification), as a fraction.
    pub train_accuracy: Option<f64>,
    /// Validation accuracy (classification), as a fraction.
    pub val_accuracy: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// Gradient norms probed on the first batch of an epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GradProbe {
    /// 1-based epoch.
    pub epoch: usize,
    /// Per-parameter and per-layer norms with vanishing / exploding flags.
    pub report: GradNormReport,
}

#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    loss_sum: f64,
    correct: u64,
    has_accuracy: bool,
    n: u64,
}

impl Acc {
    fn add(&mut self, item: &StepOutput, n: usize) -> f64 {
        let loss = item.loss.clone().into_scalar::<f32>() as f64;
        self.loss_sum += loss * n as f64;
        self.n += n as u64;
        if let Some(logits) = &item.logits {
            let pred = logits.clone().argmax(1).flatten::<1>(0, 1);
            let correct = pred.equal(item.targets.clone()).int().sum().into_scalar::<i64>();
            self.correct += correct as u64;
            self.has_accuracy = true;
        }
        loss
    }
    fn loss(&self) -> f64 {
        if self.n == 0 { f64::NAN } else { self.loss_sum / self.n as f64 }
    }
    fn accuracy(&self) -> Option<f64> {
        (self.has_accuracy && self.n > 0).then(|| self.correct as f64 / self.n as f64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Train,
    Valid,
}

/// Called with every finished epoch (printing, saving the history for `--resume`).
pub type EpochListener = Box<dyn FnMut(&EpochRecord, &[EpochRecord], &[GradProbe]) + Send>;

/// The run's per-epoch state; shared with the steps through the trainee's context.
pub struct Recorder {
    phase: Phase,
    train: Acc,
    valid: Acc,
    started: Option<Instant>,
    probe_pending: bool,
    lr: f64,
    /// Finished epochs (with those of a resumed run first).
    pub epochs: Vec<EpochRecord>,
    /// Gradient probes, one per epoch.
    pub probes: Vec<GradProbe>,
    monitor: GradNormMonitor,
    listener: Option<EpochListener>,
    /// Training steps of the epoch in progress.
    steps: u64,
    /// The first step whose training loss was not finite.
    pub diverged: Option<Divergence>,
}

/// Where the training loss stopped being finite.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: u64,
    /// The loss (NaN or infinite).
    pub loss: f64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("epochs", &self.epochs.len()).finish()
    }
}

impl Recorder {
    /// A recorder continuing after `history` (empty for a fresh run).
    pub fn new(history: Vec<EpochRecord>, lr: f64, listener: Option<EpochListener>) -> Self {
        Self {
            phase: Phase::Idle,
            train: Acc::default(),
            valid: Acc::default(),
            started: None,
            probe_pending: true,
            lr,
            epochs: history,
            probes: Vec::new(),
            monitor: GradNormMonitor::new(1e-7, 1e3),
            listener,
            steps: 0,
            diverged: None,
        }
    }

    /// Continues after the gradient probes of a resumed run's finished epochs.
    pub fn with_probes(mut self, probes: Vec<GradProbe>) -> Self {
        self.probes = probes;
        self
    }

    pub(crate) fn on_train_step(&mut self, item: &StepOutput, n: usize) {
        if self.phase == Phase::Valid {
            self.close_epoch();
        }
        if self.phase != Phase::Train {
            self.phase = Phase::Train;
            self.steps = 0;
            self.started = Some(Instant::now());
            self.probe_pending = true;
        }
        self.steps += 1;
        let loss = self.train.add(item, n);
        if !loss.is_finite() && self.diverged.is_none() {
            self.diverged = Some(Divergence { epoch: self.epochs.len() + 1, step: self.steps, loss });
        }
    }

    pub(crate) fn on_valid_step(&mut self, item: &StepOutput, n: usize) {
        if self.phase == Phase::Idle {
            self.started = Some(Instant::now());
        }
        self.phase = Phase::Valid;
        self.valid.add(item, n);
    }

    /// The validation loss of the epoch whose validation just ran (for early stopping).
    pub fn current_val_loss(&self) -> Option<f64> {
        (self.phase == Phase::Valid && self.valid.n > 0).then(|| self.valid.loss())
    }

    pub(crate) fn wants_grad_probe(&self) -> bool {
        self.probe_pending
    }

    pub(crate) fn probe_gradients<M: Module>(&mut self, model: &M, grads: &Gradients) {
        self.probe_pending = false;
        if let Ok(report) = self.monitor.report(model, &Lookup(grads)) {
            self.probes.push(GradProbe { epoch: self.epochs.len() + 1, report });
        }
    }

    /// Closes the epoch in progress, if any (call after training returns).
    pub fn finish(&mut self) {
        if self.phase != Phase::Idle && (self.train.n > 0 || self.valid.n > 0) {
            self.close_epoch();
        }
        self.phase = Phase::Idle;
    }

    fn close_epoch(&mut self) {
        let record = EpochRecord {
            epoch: self.epochs.len() + 1,
            train_loss: self.train.loss(),
            val_loss: self.valid.loss(),
            train_accuracy: self.train.accuracy(),
            val_accuracy: self.valid.accuracy(),
            lr: self.lr,
            seconds: self.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0),
        };
        self.epochs.push(record.clone());
        self.train = Acc::default();
        self.valid = Acc::default();
        self.phase = Phase::Idle;
        if let Some(listener) = self.listener.as_mut() {
            listener(&record, &self.epochs, &self.probes);
        }
    }
}

struct Lookup<'a>(&'a Gradients);

impl GradientLookup for Lookup<'_> {
    fn grad<const D: usize>(&self, _id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>> {
        param.grad(self.0)
    }
}
