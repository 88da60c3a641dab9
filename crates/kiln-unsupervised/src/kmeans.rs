//! k-means clustering on a Burn `Tensor<2>` (`[N, D]`, one sample per row), on any device.
//!
//! The algorithm is scikit-learn's `KMeans(algorithm="lloyd")`:
//!
//! - **Seeding**: greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's
//!   `2 + ln k` local trials per centre), or a linear spread over `[min, max]` of every feature
//!   (Deep Compression's choice for weight sharing), or k distinct random samples (Forgy).
//! - **Lloyd iterations**: assign every sample to its nearest centroid
//!   (`‖x‖² − 2x·cᵀ + ‖c‖²`, one `[N, D] x [D, k]` matmul), move every centroid to the mean of its
//!   samples (a one-hot `[k, N] x [N, D]` matmul). An emptied cluster is moved to the sample
//!   farthest from its centroid. Stops when no assignment changes, when the centroids move less
//!   than `tol` times the mean per-feature variance of the data (squared Frobenius norm of the
//!   shift, as scikit-learn), or after `max_iters` iterations.
//! - **Restarts**: `restarts` seeded runs, keeping the one with the lowest inertia (sum of
//!   squared distances to the nearest centroid).
//!
//! The random draws come from kiln-data's [`Rng`] (run `r` uses `Rng::for_item(seed, r)`), so a
//! seed gives the same result on flex, ndarray and wgpu up to floating-point ties.
//!
//! scikit-learn equivalent: `KMeans(n_clusters=k, init="k-means++", n_init=restarts,
//! max_iter=max_iters, tol=tol, random_state=seed).fit(x)`.

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use kiln_data::Rng;

use crate::error::{Result, UnsupervisedError};
use crate::metrics;
use crate::to_vec_f32;

/// How the initial centroids are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KMeansInit {
    /// Greedy k-means++ (scikit-learn's default).
    PlusPlus,
    /// Centroid `j` at `min + (max - min) * j / (k - 1)` of every feature (deterministic; one run
    /// whatever `restarts` says). Deep Compression's initialisation for 1-D weight sharing.
    Linear,
    /// `k` distinct samples drawn uniformly (Forgy).
    Random,
}

/// Settings of a k-means run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KMeansConfig {
    /// Number of clusters (`1 <= k <= N`).
    pub k: usize,
    /// Maximum Lloyd iterations per run.
    pub max_iters: usize,
    /// Relative tolerance: a run stops when the squared centroid shift is at most
    /// `tol * mean(var(x, axis=0))`.
    pub tol: f64,
    /// Independent runs; the one with the lowest inertia is kept.
    pub restarts: usize,
    /// Seed of the initialisation.
    pub seed: u64,
    /// Initialisation.
    pub init: KMeansInit,
}

impl KMeansConfig {
    /// `k` clusters with scikit-learn's defaults: 300 iterations, `tol = 1e-4`, one run,
    /// k-means++, seed 0.
    pub fn new(k: usize) -> Self {
        Self { k, max_iters: 300, tol: 1e-4, restarts: 1, seed: 0, init: KMeansInit::PlusPlus }
    }

    /// Sets `max_iters`.
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }

    /// Sets `tol`.
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Sets `restarts`.
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }

    /// Sets `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets `init`.
    pub fn with_init(mut self, init: KMeansInit) -> Self {
        self.init = init;
        self
    }

    /// Clusters the rows of `x` (`[N, D]`) on `x`'s device. Same as [`KMeans::fit`].
    pub fn fit(&self, x: Tensor<2>) -> Result<KMeansResult> {
        KMeans::new(self.clone()).fit(x)
    }
}

/// The k-means estimator.
#[derive(Clone, Debug)]
pub struct KMeans {
    /// Its settings.
    pub config: KMeansConfig,
}

/// A fitted clustering.
#[derive(Clone, Debug)]
pub struct KMeansResult {
    /// Centroids, `[k, D]`, on the input's device.
    pub centroids: Tensor<2>,
    /// Cluster of every input row.
    pub assignments: Vec<usize>,
    /// Sum of squared distances of the samples to their centroid (of the kept run).
    pub inertia: f64,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
    /// Whether the kept run stopped on the tolerance / unchanged assignments (not on
    /// `max_iters`).
    pub converged: bool,
    /// Final inertia of every run, in run order.
    pub restarts_inertia: Vec<f64>,
    /// Index of the kept run in `restarts_inertia`.
    pub best_restart: usize,
}

/// A clustering summary as data (the JSON of `cargo xtask cluster`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterReport {
    /// Number of clusters.
    pub k: usize,
    /// Number of samples.
    pub n: usize,
    /// Features per sample.
    pub dim: usize,
    /// Inertia of the kept run.
    pub inertia: f64,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
    /// Whether the kept run converged before `max_iters`.
    pub converged: bool,
    /// Inertia of every run.
    pub restarts_inertia: Vec<f64>,
    /// Samples per cluster.
    pub cluster_sizes: Vec<usize>,
    /// Purity against the labels, when labels were given.
    pub purity: Option<f64>,
    /// Normalized mutual information (arithmetic), when labels were given.
    pub nmi: Option<f64>,
    /// Adjusted Rand index, when labels were given.
    pub ari: Option<f64>,
    /// The most frequent label of every cluster, when labels were given.
    pub majority_label: Option<Vec<usize>>,
}

impl KMeansResult {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centroids.dims()[0]
    }

    /// Nearest centroid of every row of `x` (`[M, D]`, same `D` and device as the fit).
    pub fn predict(&self, x: Tensor<2>) -> Result<Vec<usize>> {
        let [_, d] = x.dims();
        let [_, dc] = self.centroids.dims();
        if d != dc {
            return Err(UnsupervisedError::InvalidInput(format!(
                "predict got {d} features per sample but the centroids have {dc}: use data shaped like the training data"
            )));
        }
        check_finite(&x)?;
        let x_sq = x.clone().square().sum_dim(1);
        assignments_of(sq_distances(&x, &x_sq, &self.centroids).argmin(1))
    }

    /// Samples per cluster.
    pub fn cluster_sizes(&self) -> Vec<usize> {
        let mut s = vec![0; self.k()];
        for &a in &self.assignments {
            s[a] += 1;
        }
        s
    }

    /// The summary, with purity / NMI / ARI when `labels` (one per sample) are given.
    pub fn report(&self, labels: Option<&[usize]>) -> Result<ClusterReport> {
        let (purity, nmi, ari, majority_label) = match labels {
            Some(l) => {
                let c = metrics::Contingency::new(&self.assignments, l)?;
                let mut majority = vec![0; self.k()];
                for (row, &cl) in c.table.iter().zip(&c.clusters) {
                    let (j, _) =
                        row.iter().enumerate().max_by_key(|(j, v)| (**v, std::cmp::Reverse(*j))).unwrap_or((0, &0));
                    majority[cl] = c.labels[j];
                }
                (
                    Some(metrics::purity(&self.assignments, l)?),
                    Some(metrics::nmi(&self.assignments, l)?),
                    Some(metrics::adjusted_rand_index(&self.assignments, l)?),
                    Some(majority),
                )
            }
            None => (None, None, None, None),
        };
        Ok(ClusterReport {
            k: self.k(),
            n: self.assignments.len(),
            dim: self.centroids.dims()[1],
            inertia: self.inertia,
            iterations: self.iterations,
            converged: self.converged,
            restarts_inertia: self.restarts_inertia.clone(),
            cluster_sizes: self.cluster_sizes(),
            purity,
            nmi,
            ari,
            majority_label,
        })
    }
}

impl KMeans {
    /// An estimator with these settings.
    pub fn new(config: KMeansConfig) -> Self {
        Self { config }
    }

    /// Clusters the rows of `x` (`[N, D]`) on `x`'s device.
    ///
    /// Errors when `k = 0`, `k > N`, `restarts = 0`, `max_iters = 0`, `tol < 0`, when `x` is
    /// empty or holds NaN / infinite values.
    pub fn fit(&self, x: Tensor<2>) -> Result<KMeansResult> {
        let c = &self.config;
        let [n, d] = x.dims();
        if n == 0 || d == 0 {
            return Err(UnsupervisedError::InvalidInput(format!(
                "k-means needs a non-empty [N, D] matrix, got [{n}, {d}]"
            )));
        }
        if c.k == 0 {
            return Err(UnsupervisedError::InvalidArgument("k must be at least 1".into()));
        }
        if c.k > n {
            return Err(UnsupervisedError::InvalidArgument(format!(
                "k = {} is larger than the number of samples ({n}): use k <= {n}",
                c.k
            )));
        }
        if c.restarts == 0 || c.max_iters == 0 {
            return Err(UnsupervisedError::InvalidArgument("restarts and max_iters must be at least 1".into()));
        }
        if !(c.tol >= 0.0 && c.tol.is_finite()) {
            return Err(UnsupervisedError::InvalidArgument(format!("tol must be >= 0, got {}", c.tol)));
        }
        check_finite(&x)?;

        let x_sq = x.clone().square().sum_dim(1); // [n, 1]
        let mean_var = to_vec_f32(x.clone().var(0).mean())?[0] as f64;
        let tol = c.tol * mean_var;
        let runs = if c.init == KMeansInit::Linear { 1 } else { c.restarts };

        let mut best: Option<KMeansResult> = None;
        let mut inertias = Vec::with_capacity(runs);
        for r in 0..runs {
            let mut rng = Rng::for_item(c.seed, r as u64);
            let init = match c.init {
                KMeansInit::PlusPlus => plus_plus(&x, &x_sq, c.k, &mut rng)?,
                KMeansInit::Linear => linear_init(&x, c.k),
                KMeansInit::Random => random_init(&x, c.k, &mut rng),
            };
            let run = lloyd(&x, &x_sq, init, c.k, c.max_iters, tol)?;
            inertias.push(run.inertia);
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(KMeansResult { best_restart: r, ..run });
            }
        }
        let mut best = best.expect("at least one run");
        best.restarts_inertia = inertias;
        Ok(best)
    }
}

/// Rejects NaN / infinite values.
fn check_finite(x: &Tensor<2>) -> Result<()> {
    let bad = x.clone().is_nan().any().into_scalar::<bool>() || x.clone().is_inf().any().into_scalar::<bool>();
    if bad {
        return Err(UnsupervisedError::InvalidInput(
            "the data holds NaN or infinite values: clean or impute them before clustering".into(),
        ));
    }
    Ok(())
}

/// Squared distances `[N, k]` of the rows of `x` to the rows of `c`, clamped at 0.
fn sq_distances(x: &Tensor<2>, x_sq: &Tensor<2>, c: &Tensor<2>) -> Tensor<2> {
    let c_sq = c.clone().square().sum_dim(1).transpose(); // [1, k]
    let cross = x.clone().matmul(c.clone().transpose()); // [n, k]
    (x_sq.clone() + c_sq - cross * 2.0).clamp_min(0.0)
}

/// Sums in f64 on the host (per-row partial sums come from the device): the total does not
/// depend on the backend's reduction order beyond f32 rounding of each row.
pub(crate) fn sum_f64(v: Vec<f32>) -> f64 {
    v.into_iter().map(f64::from).sum()
}

fn assignments_of(argmin: Tensor<2, Int>) -> Result<Vec<usize>> {
    let v = argmin.into_data().try_into_vec_as::<i64>().map_err(|e| UnsupervisedError::Backend(format!("{e:?}")))?;
    Ok(v.into_iter().map(|a| a as usize).collect())
}

fn int_tensor(v: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(v.iter().map(|&i| i as i64).collect::<Vec<_>>(), [v.len()]), device)
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`).
fn plus_plus(x: &Tensor<2>, x_sq: &Tensor<2>, k: usize, rng: &mut Rng) -> Result<Tensor<2>> {
    let n = x.dims()[0];
    let device = x.device();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = rng.below(n);
    let mut chosen = vec![first];
    let mut closest: Vec<f64> = to_vec_f32(sq_distances(x, x_sq, &x.clone().select(0, int_tensor(&[first], &device))))?
        .into_iter()
        .map(f64::from)
        .collect();
    let mut pot: f64 = closest.iter().sum();
    for _ in 1..k {
        // Candidates drawn with probability proportional to the squared distance.
        let mut cum = Vec::with_capacity(n);
        let mut s = 0.0;
        for &v in &closest {
            s += v;
            cum.push(s);
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let r = rng.next_f64() * pot;
                cum.partition_point(|&c| c < r).min(n - 1)
            })
            .collect();
        let d = to_vec_f32(sq_distances(x, x_sq, &x.clone().select(0, int_tensor(&candidates, &device))))?;
        // d is [n, trials] row-major: the potential of each candidate.
        let mut best = (f64::INFINITY, 0usize);
        for t in 0..trials {
            let p: f64 = (0..n).map(|i| closest[i].min(d[i * trials + t] as f64)).sum();
            if p < best.0 {
                best = (p, t);
            }
        }
        let t = best.1;
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(d[i * trials + t] as f64);
        }
        pot = best.0;
        chosen.push(candidates[t]);
    }
    Ok(x.clone().select(0, int_tensor(&chosen, &device)))
}

/// Centroid `j` at `min + (max - min) * j / (k - 1)` per feature (the midpoint when `k = 1`).
fn linear_init(x: &Tensor<2>, k: usize) -> Tensor<2> {
    let lo = x.clone().min_dim(0); // [1, d]
    let hi = x.clone().max_dim(0);
    let steps: Vec<f32> = (0..k).map(|j| if k == 1 { 0.5 } else { j as f32 / (k - 1) as f32 }).collect();
    let t = Tensor::<2>::from_data(TensorData::new(steps, [k, 1]), &x.device());
    lo.clone() + (hi - lo) * t
}

/// `k` distinct random rows.
fn random_init(x: &Tensor<2>, k: usize, rng: &mut Rng) -> Tensor<2> {
    let n = x.dims()[0];
    let mut idx: Vec<usize> = (0..n).collect();
    // Partial Fisher-Yates: the first k entries are a uniform sample without replacement.
    for i in 0..k {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(k);
    x.clone().select(0, int_tensor(&idx, &x.device()))
}

/// Lloyd iterations from `centroids`; returns the run (restarts fields filled by the caller).
fn lloyd(
    x: &Tensor<2>,
    x_sq: &Tensor<2>,
    mut centroids: Tensor<2>,
    k: usize,
    max_iters: usize,
    tol: f64,
) -> Result<KMeansResult> {
    let n = x.dims()[0];
    let device = x.device();
    let mut prev: Option<Vec<usize>> = None;
    let mut iterations = 0;
    let mut converged = false;
    for _ in 0..max_iters {
        iterations += 1;
        let dist = sq_distances(x, x_sq, &centroids);
        let assign_t = dist.clone().argmin(1); // [n, 1]
        let assign = assignments_of(assign_t.clone())?;
        let one_hot: Tensor<2> = assign_t.reshape([n]).one_hot::<2>(k).float(); // [n, k]
        let counts = one_hot.clone().sum_dim(0).transpose(); // [k, 1]
        let sums = one_hot.transpose().matmul(x.clone()); // [k, d]
        let mut next = sums / counts.clone().clamp_min(1.0);
        let counts_host = to_vec_f32(counts)?;
        let empty: Vec<usize> = (0..k).filter(|&j| counts_host[j] == 0.0).collect();
        if !empty.is_empty() {
            // Move each emptied centroid onto the sample farthest from its own centroid.
            let far = to_vec_f32(dist.min_dim(1))?;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| far[b].total_cmp(&far[a]).then(a.cmp(&b)));
            let rows = x.clone().select(0, int_tensor(&order[..empty.len()], &device));
            let old = next.clone().select(0, int_tensor(&empty, &device));
            next = next.select_assign(0, int_tensor(&empty, &device), rows - old, IndexingUpdateOp::Add);
        }
        let shift = to_vec_f32((next.clone() - centroids).square().sum())?[0] as f64;
        centroids = next;
        let unchanged = prev.as_ref() == Some(&assign);
        prev = Some(assign);
        if unchanged || shift <= tol {
            converged = true;
            break;
        }
    }
    // Labels consistent with the final centroids, and the exact inertia.
    let assign_t = sq_distances(x, x_sq, &centroids).argmin(1);
    let assignments = assignments_of(assign_t.clone())?;
    let nearest = centroids.clone().select(0, assign_t.reshape([n]));
    let inertia = sum_f64(to_vec_f32((x.clone() - nearest).square().sum_dim(1))?);
    Ok(KMeansResult {
        centroids,
        assignments,
        inertia,
        iterations,
        converged,
        restarts_inertia: vec![],
        best_restart: 0,
    })
}
