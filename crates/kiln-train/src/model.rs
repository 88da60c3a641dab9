//! The trainable wrapper around zoo models: [`AnyModel`] (kiln-models' one Burn module type over
//! every registered model, a plugin's included, so burn-train's `Learner` is instantiated once)
//! and [`Trainee`] (the `TrainStep` / `InferenceStep` implementation: loss, L1 penalty,
//! distillation, gradient probes).

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use burn::train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use kiln_models::{Output, ZooModel};
use kiln_regularize::{ParamSelection, l1_penalty, label_smoothing_cross_entropy};

use crate::recorder::Recorder;

pub use kiln_models::{AnyModel, Task};

/// A batch of images and their labels.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// `[N, C, H, W]`, already scaled and adapted to the model.
    pub images: Tensor<4>,
    /// `[N]` class indices.
    pub targets: Tensor<1, Int>,
}

/// Knowledge distillation (Hinton et al. 2015): the loss becomes
/// `α·CE(y, s) + (1 − α)·T²·KL(softmax(t/T) ‖ softmax(s/T))`.
#[derive(Clone, Debug)]
pub struct Distillation {
    /// The teacher, in inference mode on the plain (non-autodiff) device.
    pub teacher: Arc<AnyModel>,
    /// Weight of the hard-label cross-entropy.
    pub alpha: f64,
    /// Softmax temperature.
    pub temperature: f64,
}

pub use kiln_regularize::distillation_loss;

/// Per-step settings that are not parameters (skipped by the module derive).
#[derive(Clone)]
pub struct StepContext {
    /// The task.
    pub task: Task,
    /// L1 coefficient (0 = off).
    pub l1: f64,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Distillation, when on.
    pub distillation: Option<Distillation>,
    pub(crate) recorder: Arc<Mutex<Recorder>>,
    /// Stops the run when the loss stops being finite.
    pub(crate) interrupter: burn::train::Interrupter,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("task", &self.task)
            .field("l1", &self.l1)
            .field("label_smoothing", &self.label_smoothing)
            .field("distillation", &self.distillation.is_some())
            .finish_non_exhaustive()
    }
}

/// The module burn-train's `Learner` trains: a zoo model plus how to compute its loss.
#[derive(Module, Debug)]
pub struct Trainee {
    /// The model.
    pub model: AnyModel,
    #[module(skip)]
    pub(crate) ctx: StepContext,
}

/// One step's output, as burn-train's metrics read it.
pub struct StepOutput {
    /// The data loss (cross-entropy or MSE), without the penalties.
    pub loss: Tensor<1>,
    /// Class scores (classification only).
    pub logits: Option<Tensor<2>>,
    /// Labels.
    pub targets: Tensor<1, Int>,
}

impl ItemLazy for StepOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        self.loss.device().flush()?;
        Ok(StepOutput {
            loss: self.loss.without_autodiff(),
            logits: self.logits.map(|l| l.without_autodiff()),
            targets: self.targets.without_autodiff(),
        })
    }
}

impl Adaptor<LossInput> for StepOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl Adaptor<AccuracyInput> for StepOutput {
    fn adapt(&self) -> AccuracyInput {
        let logits = self.logits.clone().expect("accuracy is only registered for classification");
        AccuracyInput::new(logits, self.targets.clone())
    }
}

impl Trainee {
    /// Wraps a model for training.
    pub(crate) fn new(model: AnyModel, ctx: StepContext) -> Self {
        Self { model, ctx }
    }

    /// `(total loss for backward, output item)`.
    fn losses(&self, batch: ImageBatch) -> (Tensor<1>, StepOutput) {
        let ImageBatch { images, targets } = batch;
        match self.ctx.task {
            Task::Classification => {
                let logits = self.model.logits(images.clone());
                let data = label_smoothing_cross_entropy(logits.clone(), targets.clone(), self.ctx.label_smoothing);
                let total = match &self.ctx.distillation {
                    Some(d) => {
                        let t = d.teacher.logits(images.without_autodiff());
                        distillation_loss(logits.clone(), t, targets.clone(), d.alpha, d.temperature)
                    }
                    None => data.clone(),
                };
                (self.with_penalty(total), StepOutput { loss: data, logits: Some(logits), targets })
            }
            Task::Reconstruction | Task::Dense => {
                let out = match self.model.forward(images.clone()) {
                    Output::Map(m) => m,
                    Output::Logits(l) => l.reshape(images.dims()),
                };
                let data = (out - images).powi_scalar(2).mean();
                (self.with_penalty(data.clone()), StepOutput { loss: data, logits: None, targets })
            }
        }
    }

    fn with_penalty(&self, loss: Tensor<1>) -> Tensor<1> {
        if self.ctx.l1 > 0.0 {
            loss + l1_penalty(&self.model, &ParamSelection::new()).mul_scalar(self.ctx.l1)
        } else {
            loss
        }
    }
}

impl TrainStep for Trainee {
    type Input = ImageBatch;
    type Output = StepOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<StepOutput> {
        let n = batch.targets.dims()[0];
        let (total, item) = self.losses(batch);
        let grads = total.backward();
        {
            let mut rec = self.ctx.recorder.lock().expect("recorder lock");
            rec.on_train_step(&item, n);
            if rec.diverged.is_some() {
                // burn-train stops before validation and before the epoch's checkpoint.
                self.ctx.interrupter.stop(Some("the training loss is not finite"));
            } else if rec.wants_grad_probe() {
                rec.probe_gradients(&self.model, &grads);
            }
        }
        TrainOutput::new(self, grads, item)
    }
}

impl InferenceStep for Trainee {
    type Input = ImageBatch;
    type Output = StepOutput;

    fn step(&self, batch: ImageBatch) -> StepOutput {
        let n = batch.targets.dims()[0];
        let (_, item) = self.losses(batch);
        self.ctx.recorder.lock().expect("recorder lock").on_valid_step(&item, n);
        item
    }
}
