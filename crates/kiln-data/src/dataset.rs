//! [`ImageDataset`]: one split of labelled images held in memory, and Burn batches made from it.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::augment::{Augment, Rng};
use crate::error::{DataError, Result};

/// Which part of a dataset an [`ImageDataset`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The training split (what a [`Scaler`](crate::Scaler) is fitted on).
    Train,
    /// A validation split carved out of the training split by
    /// [`ImageDataset::split_validation`].
    Validation,
    /// The test split, read from its own files.
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        })
    }
}

/// The pixel buffer of an [`ImageDataset`]: `N` images of `[C, H, W]`, row-major, image after
/// image (`N * C * H * W` values).
///
/// Readers store the file's bytes (`U8`, 0..=255, read as `v / 255` in `[0, 1]`); scaling a
/// dataset in place ([`Scaler::apply_in_place`](crate::Scaler::apply_in_place)) turns it into
/// `F32`.
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// Raw 8-bit pixels; value `v` means `v / 255`.
    U8(Vec<u8>),
    /// Float pixels, used as they are.
    F32(Vec<f32>),
}

impl Pixels {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `out.len()` values from `start` into `out` as f32 (`u8 / 255` for raw pixels).
    pub(crate) fn copy_f32(&self, start: usize, out: &mut [f32]) {
        match self {
            Pixels::U8(v) => {
                let n = out.len();
                for (o, &b) in out.iter_mut().zip(&v[start..start + n]) {
                    *o = b as f32 / 255.0;
                }
            }
            Pixels::F32(v) => out.copy_from_slice(&v[start..start + out.len()]),
        }
    }

    /// Converts to `F32` in place (no-op when already float) and returns the buffer.
    pub(crate) fn make_f32(&mut self) -> &mut Vec<f32> {
        if let Pixels::U8(v) = self {
            let f: Vec<f32> = v.iter().map(|&b| b as f32 / 255.0).collect();
            *self = Pixels::F32(f);
        }
        match self {
            Pixels::F32(v) => v,
            Pixels::U8(_) => unreachable!("converted above"),
        }
    }
}

/// One split of a labelled image dataset, held in memory.
///
/// Images are `[C, H, W]` (channels first, like Burn's `Conv2d` input), all of the same size;
/// labels are class ids in `0..num_classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageDataset {
    pixels: Pixels,
    labels: Vec<usize>,
    channels: usize,
    height: usize,
    width: usize,
    class_names: Vec<String>,
    split: Split,
}

impl ImageDataset {
    /// Builds a dataset from raw parts.
    ///
    /// `pixels` holds `labels.len()` images of `[channels, height, width]` back to back;
    /// `class_names.len()` is the number of classes and every label must be below it.
    pub fn new(
        pixels: Pixels,
        labels: Vec<usize>,
        [channels, height, width]: [usize; 3],
        class_names: Vec<String>,
        split: Split,
    ) -> Result<Self> {
        if channels == 0 || height == 0 || width == 0 {
            return Err(DataError::InvalidArgument(format!(
                "image shape [{channels}, {height}, {width}] has a zero dimension"
            )));
        }
        let per = channels * height * width;
        if pixels.len() != labels.len() * per {
            return Err(DataError::InvalidArgument(format!(
                "{} pixel values for {} labels of [{channels}, {height}, {width}] images (expected {})",
                pixels.len(),
                labels.len(),
                labels.len() * per
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= class_names.len()) {
            return Err(DataError::InvalidArgument(format!(
                "label {l} of sample {i} is not below the number of classes {}",
                class_names.len()
            )));
        }
        Ok(Self { pixels, labels, channels, height, width, class_names, split })
    }

    /// The same dataset with other class names (e.g. more classes than its labels use). Errors
    /// when a label is not below `names.len()`.
    pub fn with_class_names(mut self, names: Vec<String>) -> Result<Self> {
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, l)| **l >= names.len()) {
            return Err(DataError::InvalidArgument(format!(
                "label {l} of sample {i} is not below the number of classes {}",
                names.len()
            )));
        }
        self.class_names = names;
        Ok(self)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels per image (1 grayscale, 3 RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[C, H, W]` of every image.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Values per image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of classes (`class_names().len()`).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Class names, indexed by class id (digits `"0"`..`"9"` for MNIST, CIFAR-10's names, the
    /// sorted folder names of an image folder).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Which split this is.
    pub fn split(&self) -> Split {
        self.split
    }

    /// All labels, one per image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The pixel buffer (`N * C * H * W` values).
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }

    pub(crate) fn pixels_mut(&mut self) -> &mut Pixels {
        &mut self.pixels
    }

    /// Label of image `i`. Panics when `i >= len()`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    /// Image `i` as `[C, H, W]` f32 values (in `[0, 1]` unless the dataset was scaled) and its
    /// label, or `None` when `i >= len()`.
    pub fn get(&self, i: usize) -> Option<(Vec<f32>, usize)> {
        if i >= self.len() {
            return None;
        }
        let mut img = vec![0.0; self.image_len()];
        self.copy_image(i, &mut img);
        Some((img, self.labels[i]))
    }

    /// Writes image `i` (`[C, H, W]`, `C*H*W` values) into `out`. Panics when `i >= len()` or
    /// `out.len() != image_len()`.
    pub fn copy_image(&self, i: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.image_len(), "output buffer is not one image long");
        assert!(i < self.len(), "image index {i} out of range (len {})", self.len());
        self.pixels.copy_f32(i * self.image_len(), out);
    }

    /// Number of images of each class, indexed by class id.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }

    /// Per-channel mean and (population) standard deviation of all pixel values, accumulated in
    /// f64. For raw pixels the values are `v / 255`.
    pub fn channel_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let (c, hw) = (self.channels, self.height * self.width);
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        match &self.pixels {
            Pixels::U8(v) => {
                // Exact integer sums, converted once.
                let mut s = vec![0u64; c];
                let mut s2 = vec![0u64; c];
                for (k, chunk) in v.chunks_exact(hw).enumerate() {
                    let ch = k % c;
                    for &b in chunk {
                        s[ch] += b as u64;
                        s2[ch] += (b as u64) * (b as u64);
                    }
                }
                for ch in 0..c {
                    sum[ch] = s[ch] as f64 / 255.0;
                    sq[ch] = s2[ch] as f64 / (255.0 * 255.0);
                }
            }
            Pixels::F32(v) => {
                for (k, chunk) in v.chunks_exact(hw).enumerate() {
                    let ch = k % c;
                    for &x in chunk {
                        sum[ch] += x as f64;
                        sq[ch] += (x as f64) * (x as f64);
                    }
                }
            }
        }
        let n = (self.len() * hw) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| if n > 0.0 { s / n } else { 0.0 }).collect();
        let std =
            sq.iter().zip(&mean).map(|(s2, m)| if n > 0.0 { (s2 / n - m * m).max(0.0).sqrt() } else { 0.0 }).collect();
        (mean, std)
    }

    /// Per-channel minimum and maximum of all pixel values.
    pub fn channel_min_max(&self) -> (Vec<f32>, Vec<f32>) {
        let (c, hw) = (self.channels, self.height * self.width);
        let mut lo = vec![f32::INFINITY; c];
        let mut hi = vec![f32::NEG_INFINITY; c];
        let mut img = vec![0.0; hw];
        for k in 0..self.len() * c {
            self.pixels.copy_f32(k * hw, &mut img);
            let ch = k % c;
            for &x in &img {
                lo[ch] = lo[ch].min(x);
                hi[ch] = hi[ch].max(x);
            }
        }
        (lo, hi)
    }

    /// A new dataset of the images at `indices` (in that order; repeats allowed), same split.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        self.subset_as(indices, self.split)
    }

    fn subset_as(&self, indices: &[usize], split: Split) -> Result<Self> {
        let per = self.image_len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::InvalidArgument(format!(
                "index {bad} out of range for a dataset of {} images",
                self.len()
            )));
        }
        let pixels = match &self.pixels {
            Pixels::U8(v) => {
                Pixels::U8(indices.iter().flat_map(|&i| v[i * per..(i + 1) * per].iter().copied()).collect())
            }
            Pixels::F32(v) => {
                Pixels::F32(indices.iter().flat_map(|&i| v[i * per..(i + 1) * per].iter().copied()).collect())
            }
        };
        Ok(Self {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
            split,
        })
    }

    /// Carves a seeded, stratified validation split out of this (training) split.
    ///
    /// For every class, its images are shuffled with a PRNG seeded by `seed` and
    /// `round(fraction * count)` of them go to validation. Returns `(train, validation)`; both
    /// keep the original order of the images they hold. Same seed, same split.
    ///
    /// Errors when `fraction` is not in `(0, 1)`, when this is not the training split, or when
    /// either part would be empty.
    pub fn split_validation(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::InvalidArgument(format!(
                "validation fraction {fraction} must be strictly between 0 and 1 (e.g. 0.1)"
            )));
        }
        if self.split != Split::Train {
            return Err(DataError::InvalidArgument(format!(
                "a validation split is carved from the train split, not from the {} split",
                self.split
            )));
        }
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l].push(i);
        }
        let mut rng = Rng::new(seed);
        let mut is_val = vec![false; self.len()];
        for idx in &mut by_class {
            rng.shuffle(idx);
            let k = (fraction * idx.len() as f64).round() as usize;
            for &i in &idx[..k] {
                is_val[i] = true;
            }
        }
        let val: Vec<usize> = (0..self.len()).filter(|&i| is_val[i]).collect();
        let train: Vec<usize> = (0..self.len()).filter(|&i| !is_val[i]).collect();
        if val.is_empty() || train.is_empty() {
            return Err(DataError::InvalidArgument(format!(
                "validation fraction {fraction} of {} images leaves {} for validation and {} for training; \
                 pick a fraction that leaves both non-empty",
                self.len(),
                val.len(),
                train.len()
            )));
        }
        Ok((self.subset_as(&train, Split::Train)?, self.subset_as(&val, Split::Validation)?))
    }

    /// The images at `indices` as Burn tensors on `device`: images `[N, C, H, W]` f32 (in
    /// `[0, 1]` unless the dataset was scaled) and labels `[N]` Int.
    ///
    /// Panics when an index is `>= len()`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let per = self.image_len();
        let mut buf = vec![0f32; indices.len() * per];
        for (k, &i) in indices.iter().enumerate() {
            self.copy_image(i, &mut buf[k * per..(k + 1) * per]);
        }
        self.to_tensors(buf, indices, device)
    }

    /// Like [`batch`](Self::batch), with every image run through `augment` on the CPU first.
    ///
    /// Image `i` of the dataset is augmented with a PRNG seeded by `(seed, i)`, so a batch is
    /// reproducible for a given seed (use one seed per epoch) whatever the batch composition.
    pub fn batch_augmented(
        &self,
        indices: &[usize],
        augment: &Augment,
        seed: u64,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let per = self.image_len();
        let shape = self.image_shape();
        let mut buf = vec![0f32; indices.len() * per];
        for (k, &i) in indices.iter().enumerate() {
            let out = &mut buf[k * per..(k + 1) * per];
            self.copy_image(i, out);
            let mut rng = Rng::for_item(seed, i as u64);
            let img = augment.apply_image(out, shape, &mut rng);
            out.copy_from_slice(&img);
        }
        self.to_tensors(buf, indices, device)
    }

    fn to_tensors(&self, buf: Vec<f32>, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = indices.len();
        let x = Tensor::<4>::from_data(TensorData::new(buf, [n, self.channels, self.height, self.width]), device);
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        (x, y)
    }
}
