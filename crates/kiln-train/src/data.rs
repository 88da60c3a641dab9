//! Feeding a kiln-data split to a model: index datasets for burn's `DataLoader`, a batcher that
//! augments (on the raw `[0, 1]` pixels), scales (with the training split's statistics) and adapts
//! the images to the model's input (channel repeat, resize).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset as BurnDataset;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use kiln_data::{Augment, ImageDataset, Rng, Scaler};
use serde::{Deserialize, Serialize};

use crate::model::ImageBatch;

/// How the data's images are turned into the model's input (saved with the model, applied again by
/// `cargo xtask run`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputAdapter {
    /// The data's image shape `[C, H, W]`.
    pub data_shape: [usize; 3],
    /// The model's input `[C, H, W]` after adaptation.
    pub model_shape: [usize; 3],
    /// The scaling fitted on the training split.
    pub scaler: Scaler,
    /// Repeat the channels (1 -> model channels) before the model.
    pub repeat_channels: bool,
    /// Bilinear resize to the model's `H x W` before the model.
    pub resize: bool,
    /// What was done, in words (for the report).
    pub description: String,
}

impl InputAdapter {
    /// Scales and adapts a batch of raw images `[N, C, H, W]` (pixels as the dataset gives them).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.scaler.apply_batch(x);
        let [n, c, h, w] = x.dims();
        let [mc, mh, mw] = self.model_shape;
        let x = if self.repeat_channels && c != mc { x.expand([n, mc, h, w]) } else { x };
        if self.resize && (h != mh || w != mw) {
            interpolate(x, InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([mh, mw]))
        } else {
            x
        }
    }
}

/// A dataset of indices `0..len` (burn's loader shuffles and batches indices; the batcher reads
/// the images).
#[derive(Clone, Debug)]
pub struct IndexDataset(pub usize);

impl BurnDataset<usize> for IndexDataset {
    fn get(&self, index: usize) -> Result<usize, burn::data::dataset::DatasetError> {
        Ok(index)
    }
    fn len(&self) -> usize {
        self.0
    }
}

/// Builds [`ImageBatch`]es from indices into one split.
pub struct ImageBatcher {
    data: Arc<ImageDataset>,
    adapter: Arc<InputAdapter>,
    augment: Option<Augment>,
    seed: u64,
    calls: AtomicU64,
    epochs: Option<EpochPlan>,
}

/// The training split's order, epoch by epoch: a function of `(seed, epoch)` alone, so that a run
/// resumed at epoch `k` sees the batches (and augmentations, and dropout masks) that the
/// uninterrupted run saw from epoch `k`.
struct EpochPlan {
    /// Batches per epoch (the loader's last batch may be short).
    batches: u64,
    /// The permutation of the epoch being served.
    order: Mutex<(u64, Vec<usize>)>,
}

impl ImageBatcher {
    /// A batcher over `data`; `augment` (training only) is seeded per batch from `seed`, so a run
    /// is reproducible.
    pub fn new(data: Arc<ImageDataset>, adapter: Arc<InputAdapter>, augment: Option<Augment>, seed: u64) -> Self {
        Self { data, adapter, augment, seed, calls: AtomicU64::new(0), epochs: None }
    }

    /// The training batcher: fed the indices `0..len` in order by an unshuffled loader with
    /// `batch_size`, it serves epoch `e`'s batches in the order [`epoch_order`] gives, reseeds the
    /// device's generator at the start of each epoch from `(seed, e)` (dropout), and seeds each
    /// batch's augmentation from its position in the whole run. `first_epoch` is the 1-based epoch
    /// the loader's first batch belongs to (`k + 1` when resuming after `k` epochs).
    pub fn for_training(
        data: Arc<ImageDataset>,
        adapter: Arc<InputAdapter>,
        augment: Option<Augment>,
        seed: u64,
        batch_size: usize,
        first_epoch: usize,
    ) -> Self {
        let batches = data.len().div_ceil(batch_size.max(1)).max(1) as u64;
        let skipped = batches * (first_epoch.max(1) as u64 - 1);
        Self {
            data,
            adapter,
            augment,
            seed,
            calls: AtomicU64::new(skipped),
            epochs: Some(EpochPlan { batches, order: Mutex::new((u64::MAX, Vec::new())) }),
        }
    }
}

/// The order of the training split's `n` images in (1-based) epoch `epoch` of a run seeded with
/// `seed`: a Fisher-Yates shuffle from SplitMix64 seeded by `(seed, epoch)`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::for_item(seed, epoch).shuffle(&mut order);
    order
}

impl Batcher<usize, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<usize>, device: &Device) -> ImageBatch {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let items = match &self.epochs {
            Some(plan) => {
                kiln_data::fsutil::failpoint("train-batch");
                let epoch = call / plan.batches + 1;
                let mut order = plan.order.lock().unwrap_or_else(|e| e.into_inner());
                if order.0 != epoch {
                    *order = (epoch, epoch_order(self.data.len(), self.seed, epoch));
                    kiln_layers::reseed(device, self.seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407));
                }
                items.iter().map(|&i| order.1[i]).collect()
            }
            None => items,
        };
        let (x, y) = match &self.augment {
            Some(aug) => {
                let seed = self.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                self.data.batch_augmented(&items, aug, seed, device)
            }
            None => self.data.batch(&items, device),
        };
        ImageBatch { images: self.adapter.apply(x), targets: y }
    }
}

/// Runs `model` over a whole split in batches (inference mode) and returns what `f` folds.
pub fn for_each_batch<M: ?Sized>(
    model: &M,
    data: &ImageDataset,
    adapter: &InputAdapter,
    batch_size: usize,
    device: &Device,
    mut f: impl FnMut(&M, Tensor<4>, Vec<usize>, Tensor<4>),
) {
    let n = data.len();
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let idx: Vec<usize> = (start..end).collect();
        let (raw, _) = data.batch(&idx, device);
        let labels = idx.iter().map(|&i| data.label(i)).collect();
        let x = adapter.apply(raw.clone());
        f(model, x, labels, raw);
        start = end;
    }
}
