//! The trainable wrapper around zoo models: [`AnyModel`] (one Burn module type for every built-in
//! zoo architecture, so burn-train's `Learner` is instantiated once) and [`Trainee`] (the
//! `TrainStep` / `InferenceStep` implementation: loss, L1 penalty, distillation, gradient probes).

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use burn::train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use kiln_models::{Output, ZooModel};
use kiln_regularize::{ParamSelection, l1_penalty, label_smoothing_cross_entropy};

use crate::TrainError;
use crate::recorder::Recorder;

macro_rules! any_model {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every built-in zoo architecture as one Burn module (an enum module), so that the
        /// trainer, its checkpoints and the optimizer work with a single type.
        #[derive(Module, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum AnyModel {
            $(
                #[doc = concat!("`", stringify!($ty), "`.")]
                $variant($ty),
            )*
        }

        impl AnyModel {
            /// Wraps a model built by the registry; plugin models (not built in) are refused.
            pub fn from_zoo(model: Box<dyn ZooModel>, name: &str) -> Result<Self, TrainError> {
                let any = model.into_any();
                $(
                    let any = match any.downcast::<$ty>() {
                        Ok(m) => return Ok(AnyModel::$variant(*m)),
                        Err(other) => other,
                    };
                )*
                drop(any);
                Err(TrainError::Unsupported(format!(
                    "{name} is not a built-in zoo architecture; the trainer trains the built-in models \
                     (plugin models can be trained with burn-train directly)"
                )))
            }

            /// The model as a [`ZooModel`] (forward, trace, save).
            pub fn as_zoo(&self) -> &dyn ZooModel {
                match self {
                    $(AnyModel::$variant(m) => m,)*
                }
            }

            /// The model as a boxed [`ZooModel`].
            pub fn into_zoo(self) -> Box<dyn ZooModel> {
                match self {
                    $(AnyModel::$variant(m) => Box::new(m),)*
                }
            }
        }
    };
}

any_model! {
    LeNet5(kiln_models::lenet::LeNet5),
    Vgg(kiln_models::vgg::Vgg),
    ResNet(kiln_models::resnet::ResNet),
    DenseNet(kiln_models::densenet::DenseNet),
    SqueezeNet(kiln_models::squeezenet::SqueezeNet),
    MobileNetV1(kiln_models::mobilenet_v1::MobileNetV1),
    MobileNetV2(kiln_models::mobilenet_v2::MobileNetV2),
    MobileNetV3(kiln_models::mobilenet_v3::MobileNetV3),
    ShuffleNetV2(kiln_models::shufflenet_v2::ShuffleNetV2),
    GhostNet(kiln_models::ghostnet::GhostNet),
    EfficientNet(kiln_models::efficientnet::EfficientNet),
    SegNet(kiln_models::segnet::SegNet),
    DeepLab(kiln_models::deeplab::DeepLabMobileNetV2),
    UNet(kiln_models::unet::UNet),
    YoloV5(kiln_models::yolov5_focus::YoloV5FocusBackbone),
    ConvAutoencoder(kiln_models::autoencoder::ConvAutoencoder),
    DenseAutoencoder(kiln_models::autoencoder::DenseAutoencoder),
}

impl AnyModel {
    /// Runs the model.
    pub fn forward(&self, x: Tensor<4>) -> Output {
        self.as_zoo().forward(x)
    }
}

/// What the model is trained to do, fixed by its output and the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Class scores against labels: cross-entropy, accuracy.
    Classification,
    /// A map of the input's shape against the input itself: mean squared error.
    Reconstruction,
}

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

/// Hinton's distillation loss (mean over the batch); `teacher` is a constant.
pub fn distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    alpha: f64,
    temperature: f64,
) -> Tensor<1> {
    let hard = label_smoothing_cross_entropy(student.clone(), targets, 0.0);
    let t = temperature;
    let log_p_s = burn::tensor::activation::log_softmax(student / t, 1);
    let log_p_t = burn::tensor::activation::log_softmax(teacher / t, 1);
    let p_t = log_p_t.clone().exp();
    let [n, _] = p_t.dims();
    let kl = (p_t * (log_p_t - log_p_s)).sum().div_scalar(n as f64);
    hard.mul_scalar(alpha) + kl.mul_scalar((1.0 - alpha) * t * t)
}

/// Per-step settings that are not parameters (skipped by the module derive).
#[derive(Clone, Debug)]
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
                let logits = match self.model.forward(images.clone()) {
                    Output::Logits(l) => l,
                    Output::Map(m) => m.flatten::<2>(1, 3),
                };
                let data = label_smoothing_cross_entropy(logits.clone(), targets.clone(), self.ctx.label_smoothing);
                let total = match &self.ctx.distillation {
                    Some(d) => {
                        let t = match d.teacher.forward(images.without_autodiff()) {
                            Output::Logits(l) => l,
                            Output::Map(m) => m.flatten::<2>(1, 3),
                        };
                        distillation_loss(logits.clone(), t, targets.clone(), d.alpha, d.temperature)
                    }
                    None => data.clone(),
                };
                (self.with_penalty(total), StepOutput { loss: data, logits: Some(logits), targets })
            }
            Task::Reconstruction => {
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
            if rec.wants_grad_probe() {
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
