//! Measuring a model: test accuracy, batch-1 latency, and a short fine-tuning loop (with optional
//! distillation) used between compression steps.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use kiln_data::{ImageDataset, Rng};

use crate::distill::{Distill, distillation_loss, hint_loss};
use crate::model::Compressible;

/// Top-1 accuracy (in `[0, 1]`) of `model` on `data`, in batches of `batch`.
pub fn accuracy<M: Compressible>(model: &M, data: &ImageDataset, batch: usize, device: &Device) -> f64 {
    let n = data.len();
    let mut correct = 0usize;
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (x, y) = data.batch(chunk, device);
        let pred = model.logits(x).argmax(1).reshape([chunk.len()]);
        let eq = pred.equal(y).int().sum().into_scalar::<i64>();
        correct += eq as usize;
    }
    if n == 0 { 0.0 } else { correct as f64 / n as f64 }
}

/// Median wall-clock latency in milliseconds of `runs` forward passes at `input` (batch 1:
/// `[1, C, H, W]`), after `warmup` passes. Each pass reads its output back, so the time includes
/// the whole computation on asynchronous backends.
pub fn latency_ms<M: Compressible>(model: &M, input: [usize; 4], warmup: usize, runs: usize, device: &Device) -> f64 {
    let x = Tensor::<4>::random(input, burn::tensor::Distribution::Uniform(0.0, 1.0), device);
    for _ in 0..warmup {
        let _ = model.logits(x.clone()).into_data();
    }
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            let _ = model.logits(x.clone()).into_data();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// Options of [`finetune`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FinetuneConfig {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self { epochs: 1, batch: 64, lr: 1e-3, seed: 0 }
    }
}

/// The one fine-tuning loop of kiln-compress (pruning, distillation and QAT all run it): `cfg.epochs`
/// of Adam at `cfg.lr` over `data`, shuffled by `cfg.seed` each epoch, in batches of `cfg.batch`
/// on the autodiff `device`; `batch_loss` gives each batch's loss from the current model. Returns the
/// trained model and the mean loss of each epoch. (Training from scratch is kiln-train's
/// `Learner`.)
pub fn train_epochs<M: Module, E>(
    mut model: M,
    data: &ImageDataset,
    cfg: &FinetuneConfig,
    device: &Device,
    mut batch_loss: impl FnMut(&M, Tensor<4>, Tensor<1, Int>) -> Result<Tensor<1>, E>,
) -> Result<(M, Vec<f64>), E> {
    let mut optim = AdamConfig::new().init();
    let mut rng = Rng::new(cfg.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut losses = vec![];
    for _ in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in order.chunks(cfg.batch.max(1)) {
            kiln_data::fsutil::failpoint("finetune-batch");
            let (x, y): (Tensor<4>, Tensor<1, Int>) = data.batch(chunk, device);
            let loss = batch_loss(&model, x, y)?;
            sum += loss.clone().into_scalar::<f32>() as f64;
            count += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.lr, model, grads);
        }
        losses.push(sum / count.max(1) as f64);
    }
    Ok((model, losses))
}

/// Trains `model` (on an autodiff `device`) with Adam on cross-entropy, or on the distillation
/// loss when `distill` is given ([`train_epochs`]). Masks attached by pruning keep pruned weights
/// at zero. Returns the trained model and the mean loss of each epoch.
pub fn finetune<M: Compressible, T: Compressible>(
    model: M,
    data: &ImageDataset,
    cfg: &FinetuneConfig,
    distill: Option<&Distill<T>>,
    device: &Device,
) -> (M, Vec<f64>) {
    let ce = CrossEntropyLossConfig::new().init(device);
    let run = train_epochs(model, data, cfg, device, |model, x, y| {
        Ok::<_, std::convert::Infallible>(match distill {
            None => ce.forward(model.logits(x), y),
            Some(d) => {
                // The teacher runs in inference mode without autodiff; its outputs are constants.
                let t_logits = d.teacher.logits(x.clone().inner()).autodiff();
                let s_logits = model.logits(x.clone());
                let mut loss = distillation_loss(s_logits, t_logits, y, d.alpha, d.temperature);
                // A model without a feature map has no hint (the pipeline refuses the weight
                // up front; see `crate::distill::check_hint`).
                if d.hint_weight > 0.0
                    && let (Some(s), Some(t)) = (model.hint(x.clone()), d.teacher.hint(x.inner()))
                {
                    loss = loss + hint_loss(s, t.autodiff()).mul_scalar(d.hint_weight);
                }
                loss
            }
        })
    });
    match run {
        Ok(out) => out,
        Err(never) => match never {},
    }
}
