//! # kiln-unsupervised
//!
//! Unsupervised learning on Burn tensors, on any backend (the caller picks the [`Device`]):
//!
//! - [`kmeans`]: k-means with k-means++ seeding (greedy, as scikit-learn), Lloyd iterations,
//!   several restarts keeping the lowest inertia and a relative-tolerance stop. Distances are
//!   `‖x‖² − 2x·cᵀ + ‖c‖²` (one matmul per iteration) on the given device; the seeding draws from
//!   kiln-data's seeded [`Rng`](kiln_data::Rng), so a seed gives the same clustering on flex and
//!   ndarray.
//! - [`metrics`]: purity and normalized mutual information (arithmetic normalisation, as
//!   scikit-learn's `normalized_mutual_info_score`) of a clustering against labels.
//! - [`rbm`]: a Bernoulli–Bernoulli restricted Boltzmann machine trained with contrastive
//!   divergence (CD-k, or persistent CD); reconstruction error and free energy per epoch; Gibbs
//!   sampling.
//! - [`weight_sharing`]: Deep Compression-style weight sharing: every conv / linear weight of a
//!   Burn module replaced by its k-means-quantized version (k shared values per layer).
//! - [`picture`]: grayscale / RGB image grids written as PNG (filters, samples, centroids,
//!   reconstructions).
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use kiln_unsupervised::kmeans::KMeansConfig;
//! use kiln_unsupervised::metrics::{nmi, purity};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex();
//! let data = kiln_data::Dataset::mnist_5k()?;
//! let x = kiln_unsupervised::flatten_images(&data.train, &device); // [4000, 784]
//! let fit = KMeansConfig::new(10).with_seed(0).fit(x)?;
//! println!("inertia {:.1}, purity {:.3}, NMI {:.3}", fit.inertia,
//!          purity(&fit.assignments, data.train.labels())?, nmi(&fit.assignments, data.train.labels())?);
//! # Ok(())
//! # }
//! ```
//!
//! [`Device`]: burn::tensor::Device

pub mod error;
pub mod kmeans;
pub mod metrics;
pub mod picture;
pub mod rbm;
pub mod weight_sharing;

use burn::tensor::{Device, Tensor};

pub use error::UnsupervisedError;
pub use kmeans::{KMeans, KMeansConfig, KMeansInit, KMeansResult};
pub use rbm::{Rbm, RbmConfig, RbmEpoch};
pub use weight_sharing::{SharingConfig, SharingReport, share_weights};

/// Every image of `data` as one row of a `[N, C*H*W]` tensor on `device` (pixels as the dataset
/// holds them: `[0, 1]` unless it was scaled).
pub fn flatten_images(data: &kiln_data::ImageDataset, device: &Device) -> Tensor<2> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let (x, _) = data.batch(&indices, device);
    x.reshape([data.len(), data.image_len()])
}

/// Reads a float tensor back to the host as `f32` values, row-major.
pub(crate) fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, UnsupervisedError> {
    t.into_data().try_into_vec_as::<f32>().map_err(|e| UnsupervisedError::Backend(format!("{e:?}")))
}
