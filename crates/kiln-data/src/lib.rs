//! # kiln-data
//!
//! Datasets for training CNNs with Burn, held in memory:
//!
//! - **Readers** ([`Dataset::load`]): MNIST's IDX files (raw or `.gz`), CIFAR-10 binary batches
//!   and image folders (one subfolder per class, PNG / JPEG), detected from a folder's contents
//!   or forced with [`Format`]. The built-in `mnist-5k` subset (4,000 train / 1,000 test digits,
//!   `data/mnist-5k/` in the repository, or `$KILN_DATA_DIR/mnist-5k`) loads by name:
//!   [`Dataset::mnist_5k`].
//! - **Splits**: train and test from the files, and a seeded, stratified validation split carved
//!   from train ([`ImageDataset::split_validation`]).
//! - **Batches**: [`ImageDataset::batch`] gives Burn tensors `[N, C, H, W]` (f32, pixels in
//!   `[0, 1]`) and labels `[N]` (Int) on any device.
//! - **Feature scaling** ([`Scaler`]): min-max, z-score (per channel), `ln(1 + x)`, `1 - e^(-x)`;
//!   fitted on the training split only, applied to any split or batch, saved as JSON.
//! - **Augmentation** ([`Augment`]): seeded and reproducible flip, pad-and-crop, rotation, shear,
//!   elastic distortion and colour jitter on `[C, H, W]` CPU buffers, parsed from a spec like
//!   `flip,crop:4,rotate:15,shear:0.2,elastic:34:4,jitter:0.2`.
//!
//! Every failure is a [`DataError`] whose one-line message names the file and the fix; readers
//! never panic on bad input.
//!
//! ```no_run
//! use kiln_data::{Augment, Dataset, ScaleKind, Scaler};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = burn::tensor::Device::default();
//! let data = Dataset::mnist_5k()?;
//! let (train, val) = data.train.split_validation(0.1, 42)?;
//! let scaler = Scaler::fit(ScaleKind::ZScore, &train)?;
//! let aug: Augment = "crop:2,rotate:10".parse()?;
//! let (x, y) = train.batch_augmented(&[0, 1, 2, 3], &aug, 7, &device); // [4, 1, 28, 28], [4]
//! let x = scaler.apply_batch(x);
//! # let _ = (x, y, val);
//! # Ok(())
//! # }
//! ```

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod fsutil;
pub mod idx;
pub mod load;
pub mod scale;

pub use augment::{AugOp, Augment, AugmentError, Rng};
pub use dataset::{ImageDataset, Pixels, Split};
pub use error::{DataError, Result};
pub use fsutil::write_atomic;
pub use load::{BUILTIN_DATASETS, Dataset, Format, data_dir, detect_format, load};
pub use scale::{ScaleKind, Scaler};
