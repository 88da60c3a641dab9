//! Weight sharing (Han, Mao & Dally, *Deep Compression*, 2016): the weights of every conv /
//! linear layer are clustered with 1-D k-means into `k` shared values; each weight is replaced by
//! its cluster's centroid, so the layer is stored as `log2 k`-bit indices plus a `k`-entry f32
//! codebook.
//!
//! [`share_weights`] walks any Burn [`Module`] with a [`ModuleMapper`] and quantizes every float
//! parameter of rank `>= min_rank` (2 by default: conv kernels `[O, I, kH, kW]` and linear
//! weights `[in, out]`; biases and BatchNorm affine parameters, rank 1, keep full precision, as in
//! the paper). Centroids start spread linearly over `[min, max]` of the layer (the paper's best
//! initialisation: it keeps the rare large weights) or with k-means++. The report gives, per
//! layer, the signal-to-quantization-noise ratio and the compressed size.
//!
//! This is the "quantize" half of the method; fine-tuning the shared centroids with the summed
//! gradients of their weights is left to the caller (train with the codebook as parameters).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Result, UnsupervisedError};
use crate::kmeans::{KMeansConfig, KMeansInit, sum_f64};
use crate::to_vec_f32;

/// Settings of [`share_weights`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharingConfig {
    /// Shared values per layer (Deep Compression: 256 for conv, 32 for fc; 16 keeps LeNet-5's
    /// accuracy).
    pub k: usize,
    /// Smallest parameter rank that is shared (2: conv and linear weights; 1 would include
    /// biases and norm parameters).
    pub min_rank: usize,
    /// Centroid initialisation ([`KMeansInit::Linear`] by default).
    pub init: KMeansInit,
    /// Lloyd iterations per layer.
    pub max_iters: usize,
    /// Relative tolerance of the k-means stop.
    pub tol: f64,
    /// Seed (used by the k-means++ and random initialisations).
    pub seed: u64,
}

impl SharingConfig {
    /// `k` shared values per weight tensor, linear initialisation, rank >= 2.
    pub fn new(k: usize) -> Self {
        Self { k, min_rank: 2, init: KMeansInit::Linear, max_iters: 100, tol: 1e-6, seed: 0 }
    }

    /// Sets `init`.
    pub fn with_init(mut self, init: KMeansInit) -> Self {
        self.init = init;
        self
    }

    /// Sets `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets `min_rank`.
    pub fn with_min_rank(mut self, min_rank: usize) -> Self {
        self.min_rank = min_rank;
        self
    }
}

/// What happened to one shared parameter.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerSharing {
    /// Module path of the parameter (`conv1.weight`).
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Number of weights.
    pub numel: usize,
    /// Shared values used (`min(k, numel)`).
    pub k: usize,
    /// Distinct values after sharing (`<= k`).
    pub distinct: usize,
    /// Signal-to-quantization-noise ratio, `10 log10(Σw² / Σ(w − q)²)` dB (infinite when exact).
    pub sqnr_db: f64,
    /// Bits per index, `ceil(log2 k)`.
    pub bits: u32,
    /// Lloyd iterations of the layer's k-means.
    pub iterations: usize,
    /// Bytes as f32.
    pub original_bytes: usize,
    /// Bytes as `bits`-bit indices plus an f32 codebook of `k` values.
    pub compressed_bytes: usize,
}

/// A parameter left at full precision.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkippedParam {
    /// Module path.
    pub path: String,
    /// Number of values.
    pub numel: usize,
    /// Why it was not shared.
    pub reason: String,
}

/// The report of [`share_weights`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharingReport {
    /// Requested shared values per layer.
    pub k: usize,
    /// Shared parameters, in module order.
    pub layers: Vec<LayerSharing>,
    /// Parameters kept at full precision.
    pub skipped: Vec<SkippedParam>,
    /// All float parameters of the module, as f32 bytes.
    pub original_bytes: usize,
    /// The module after sharing: shared layers as indices + codebooks, the rest as f32.
    pub compressed_bytes: usize,
    /// `original_bytes / compressed_bytes`.
    pub compression_ratio: f64,
}

impl SharingReport {
    /// A Markdown table of the layers and the totals.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| layer | shape | weights | k | bits | SQNR (dB) | bytes | shared bytes |\n");
        s += "|---|---|---:|---:|---:|---:|---:|---:|\n";
        for l in &self.layers {
            let shape = l.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            s += &format!(
                "| {} | {} | {} | {} | {} | {:.1} | {} | {} |\n",
                l.path, shape, l.numel, l.k, l.bits, l.sqnr_db, l.original_bytes, l.compressed_bytes
            );
        }
        s += &format!(
            "\nTotal: {} -> {} bytes ({:.2}x); {} parameter tensor(s) kept at f32.\n",
            self.original_bytes,
            self.compressed_bytes,
            self.compression_ratio,
            self.skipped.len()
        );
        s
    }
}

/// Bits per index for `k` shared values (at least 1).
pub fn index_bits(k: usize) -> u32 {
    (usize::BITS - (k.max(2) - 1).leading_zeros()).max(1)
}

/// Replaces every weight of `t` by its 1-D k-means centroid (any rank, any device). Returns the
/// quantized tensor (same shape and device) and its statistics (`path` left empty).
pub fn share_tensor<const D: usize>(t: Tensor<D>, config: &SharingConfig) -> Result<(Tensor<D>, LayerSharing)> {
    let shape = t.dims();
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Err(UnsupervisedError::InvalidInput("cannot share the weights of an empty tensor".into()));
    }
    let k = config.k.min(numel);
    let flat = t.clone().reshape([numel, 1]);
    let fit = KMeansConfig::new(k)
        .with_init(config.init)
        .with_max_iters(config.max_iters)
        .with_tol(config.tol)
        .with_seed(config.seed)
        .fit(flat.clone())?;
    let ids: Vec<i64> = fit.assignments.iter().map(|&a| a as i64).collect();
    let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [numel]), &flat.device());
    let q = fit.centroids.clone().select(0, ids); // [numel, 1]
    let signal = sum_f64(to_vec_f32(flat.clone().square())?);
    let noise = sum_f64(to_vec_f32((flat - q.clone()).square())?);
    let sqnr_db = if noise > 0.0 { 10.0 * (signal / noise).log10() } else { f64::INFINITY };
    let mut used = fit.assignments.clone();
    used.sort_unstable();
    used.dedup();
    let bits = index_bits(k);
    let stats = LayerSharing {
        path: String::new(),
        shape: shape.to_vec(),
        numel,
        k,
        distinct: used.len(),
        sqnr_db,
        bits,
        iterations: fit.iterations,
        original_bytes: numel * 4,
        compressed_bytes: (numel * bits as usize).div_ceil(8) + k * 4,
    };
    Ok((q.reshape(shape), stats))
}

struct Sharer<'a> {
    config: &'a SharingConfig,
    path: Vec<String>,
    layers: Vec<LayerSharing>,
    skipped: Vec<SkippedParam>,
    error: Option<UnsupervisedError>,
}

impl ModuleMapper for Sharer<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let numel: usize = param.val().dims().iter().product();
        if self.error.is_some() {
            return param;
        }
        if D < self.config.min_rank {
            self.skipped.push(SkippedParam {
                path,
                numel,
                reason: format!("rank {D} < {} (bias / norm parameter)", self.config.min_rank),
            });
            return param;
        }
        if numel <= self.config.k {
            self.skipped.push(SkippedParam { path, numel, reason: format!("{numel} values <= k = {}", self.config.k) });
            return param;
        }
        let mut out = None;
        let param = param.map(|t| match share_tensor(t.clone().detach(), self.config) {
            Ok((q, stats)) => {
                out = Some(Ok(stats));
                q
            }
            Err(e) => {
                out = Some(Err(e));
                t
            }
        });
        match out.expect("the closure ran") {
            Ok(mut stats) => {
                stats.path = path;
                self.layers.push(stats);
            }
            Err(e) => self.error = Some(e),
        }
        param
    }
}

/// Quantizes every float parameter of rank `>= config.min_rank` of `module` to `config.k` shared
/// values (per parameter tensor) and reports what it did.
///
/// Errors when `k < 2` or when a layer's k-means fails.
pub fn share_weights<M: Module>(module: M, config: &SharingConfig) -> Result<(M, SharingReport)> {
    if config.k < 2 {
        return Err(UnsupervisedError::InvalidArgument(format!(
            "weight sharing needs k >= 2 shared values per layer, got {}",
            config.k
        )));
    }
    let mut sharer = Sharer { config, path: vec![], layers: vec![], skipped: vec![], error: None };
    let module = module.map(&mut sharer);
    if let Some(e) = sharer.error {
        return Err(e);
    }
    let shared_orig: usize = sharer.layers.iter().map(|l| l.original_bytes).sum();
    let shared_comp: usize = sharer.layers.iter().map(|l| l.compressed_bytes).sum();
    let rest: usize = sharer.skipped.iter().map(|s| s.numel * 4).sum();
    let original_bytes = shared_orig + rest;
    let compressed_bytes = shared_comp + rest;
    let report = SharingReport {
        k: config.k,
        layers: sharer.layers,
        skipped: sharer.skipped,
        original_bytes,
        compressed_bytes,
        compression_ratio: if compressed_bytes > 0 { original_bytes as f64 / compressed_bytes as f64 } else { 1.0 },
    };
    Ok((module, report))
}

#[cfg(test)]
mod tests {
    use super::index_bits;

    #[test]
    fn bits_per_index() {
        assert_eq!([2, 3, 4, 5, 16, 17, 256].map(index_bits), [1, 2, 2, 3, 4, 5, 8]);
    }
}
