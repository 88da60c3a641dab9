//! A Bernoulli–Bernoulli restricted Boltzmann machine trained with contrastive divergence.
//!
//! Energy `E(v, h) = −vᵀWh − bᵀv − cᵀh` over binary visible units `v` (`V`, e.g. 784 binarised
//! MNIST pixels) and binary hidden units `h` (`H`). `p(h_j = 1 | v) = σ(c_j + vᵀW_{:,j})`,
//! `p(v_i = 1 | h) = σ(b_i + W_{i,:}h)`; the free energy is
//! `F(v) = −bᵀv − Σ_j softplus(c_j + vᵀW_{:,j})`.
//!
//! Training (Hinton, *A Practical Guide to Training RBMs*, 2010): for every mini-batch `v0`,
//! `h0 ~ p(h | v0)`, then `k` alternating Gibbs steps give `v_k` (CD-k; with `persistent`, the
//! chains continue from where the previous batch left them instead of restarting at `v0` —
//! Tieleman's PCD); the update is `ΔW = lr (⟨v0 p(h|v0)ᵀ⟩ − ⟨v_k p(h|v_k)ᵀ⟩ − λW)` with momentum
//! (and the same for the biases, without decay). Hidden units are sampled when they drive the
//! visible ones; the statistics use probabilities. Weights start at `N(0, 0.01²)`, hidden biases
//! at 0 and visible biases at `ln(p / (1 − p))` of the training pixel means.
//!
//! Per epoch it records the reconstruction error (mean squared difference, per pixel, between
//! `v0` and `p(v | h0)`) and the mean free energy of a fixed training subset and of the
//! validation set: a validation free energy rising above the training one is the overfitting
//! signal the guide recommends watching.
//!
//! All random draws (initial weights, shuffling, Gibbs sampling) come from kiln-data's [`Rng`]
//! on the host and are uploaded, so a seed gives the same run on every backend up to
//! floating-point rounding. Runs on any device; no autodiff needed.
//!
//! scikit-learn's `BernoulliRBM` is the same model trained with PCD-1 (`persistent: true, k: 1`).

use std::time::Instant;

use burn::tensor::activation::{sigmoid, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_data::Rng;

use crate::error::{Result, UnsupervisedError};
use crate::to_vec_f32;

/// Settings of RBM training.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RbmConfig {
    /// Hidden units.
    pub hidden: usize,
    /// Gibbs steps per update (CD-k).
    pub k: usize,
    /// Persistent contrastive divergence (chains carried across mini-batches).
    pub persistent: bool,
    /// Learning rate.
    pub lr: f64,
    /// Momentum of the parameter updates.
    pub momentum: f64,
    /// L2 weight decay on `W` (not the biases).
    pub weight_decay: f64,
    /// Mini-batch size (and number of persistent chains).
    pub batch_size: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Seed of the initial weights, the shuffling and the Gibbs sampling.
    pub seed: u64,
    /// Training samples whose mean free energy is reported each epoch (the first ones).
    pub free_energy_samples: usize,
}

impl Default for RbmConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            k: 1,
            persistent: false,
            lr: 0.1,
            momentum: 0.5,
            weight_decay: 1e-4,
            batch_size: 64,
            epochs: 10,
            seed: 0,
            free_energy_samples: 1000,
        }
    }
}

/// Statistics of one training epoch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RbmEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean over the epoch's samples and pixels of `(v0 − p(v | h0))²`.
    pub reconstruction_error: f64,
    /// Mean free energy of the first `free_energy_samples` training samples (after the epoch).
    pub free_energy_train: f64,
    /// Mean free energy of the validation samples (after the epoch), when given.
    pub free_energy_val: Option<f64>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// A trained RBM and its history.
#[derive(Clone, Debug)]
pub struct RbmTraining {
    /// The model.
    pub rbm: Rbm,
    /// One entry per epoch.
    pub history: Vec<RbmEpoch>,
}

/// The model: weights `W` (`[V, H]`), visible biases `vb` (`[V]`), hidden biases `hb` (`[H]`).
#[derive(Clone, Debug)]
pub struct Rbm {
    /// Weights, `[V, H]`.
    pub w: Tensor<2>,
    /// Visible biases, `[V]`.
    pub vb: Tensor<1>,
    /// Hidden biases, `[H]`.
    pub hb: Tensor<1>,
}

/// Pixels at or above `threshold` become 1, the others 0.
pub fn binarize(x: Tensor<2>, threshold: f32) -> Tensor<2> {
    x.greater_equal_elem(threshold).float()
}

/// Uniform noise `[rows, cols]` in `[0, 1)` from `rng`, on `device`.
fn uniform(rng: &mut Rng, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..rows * cols).map(|_| rng.next_f64() as f32).collect();
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

/// A Bernoulli sample of `p`.
fn bernoulli(p: Tensor<2>, rng: &mut Rng) -> Tensor<2> {
    let [r, c] = p.dims();
    let noise = uniform(rng, r, c, &p.device());
    p.greater(noise).float()
}

impl Rbm {
    /// A fresh model: `W ~ N(0, 0.01²)` (seeded), zero biases.
    pub fn new(visible: usize, hidden: usize, seed: u64, device: &Device) -> Self {
        let mut rng = Rng::for_item(seed, 0x5EED);
        let w: Vec<f32> = (0..visible * hidden)
            .map(|_| {
                // Box-Muller.
                let (u1, u2) = (rng.next_f64().max(1e-300), rng.next_f64());
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * 0.01) as f32
            })
            .collect();
        Self {
            w: Tensor::from_data(TensorData::new(w, [visible, hidden]), device),
            vb: Tensor::zeros([visible], device),
            hb: Tensor::zeros([hidden], device),
        }
    }

    /// Visible units `V`.
    pub fn visible(&self) -> usize {
        self.w.dims()[0]
    }

    /// Hidden units `H`.
    pub fn hidden(&self) -> usize {
        self.w.dims()[1]
    }

    /// `p(h = 1 | v)`, `[N, H]`.
    pub fn hidden_probs(&self, v: Tensor<2>) -> Tensor<2> {
        sigmoid(v.matmul(self.w.clone()) + self.hb.clone().unsqueeze::<2>())
    }

    /// `p(v = 1 | h)`, `[N, V]`.
    pub fn visible_probs(&self, h: Tensor<2>) -> Tensor<2> {
        sigmoid(h.matmul(self.w.clone().transpose()) + self.vb.clone().unsqueeze::<2>())
    }

    /// Free energy `F(v)` of every row, `[N]`.
    pub fn free_energy(&self, v: Tensor<2>) -> Tensor<1> {
        let n = v.dims()[0];
        let vis = v.clone().matmul(self.vb.clone().unsqueeze_dim::<2>(1)).reshape([n]); // [N]
        let act = v.matmul(self.w.clone()) + self.hb.clone().unsqueeze::<2>();
        let hid = softplus(act, 1.0).sum_dim(1).reshape([n]);
        -(vis + hid)
    }

    /// Mean free energy of the rows of `v`.
    pub fn mean_free_energy(&self, v: Tensor<2>) -> Result<f64> {
        Ok(to_vec_f32(self.free_energy(v).mean())?[0] as f64)
    }

    /// One reconstruction `p(v | h)` with `h ~ p(h | v)` (seeded).
    pub fn reconstruct(&self, v: Tensor<2>, seed: u64) -> Tensor<2> {
        let mut rng = Rng::new(seed);
        let h = bernoulli(self.hidden_probs(v), &mut rng);
        self.visible_probs(h)
    }

    /// Runs `steps` alternating Gibbs steps from `v0` (`v → h → v`, both sampled) and returns
    /// `p(v | h)` of the last step, `[N, V]` (what a sample picture shows).
    pub fn gibbs_sample(&self, v0: Tensor<2>, steps: usize, seed: u64) -> Tensor<2> {
        self.gibbs_chain(v0, 1, steps.max(1), seed).pop().expect("one snapshot")
    }

    /// Runs `snapshots * every` Gibbs steps from `v0` and returns `p(v | h)` after every `every`
    /// steps (`snapshots` tensors of `[N, V]`).
    pub fn gibbs_chain(&self, v0: Tensor<2>, snapshots: usize, every: usize, seed: u64) -> Vec<Tensor<2>> {
        let mut rng = Rng::new(seed);
        let mut v = v0;
        let mut out = Vec::with_capacity(snapshots);
        for _ in 0..snapshots {
            let mut p = v.clone();
            for _ in 0..every.max(1) {
                let h = bernoulli(self.hidden_probs(v), &mut rng);
                p = self.visible_probs(h);
                v = bernoulli(p.clone(), &mut rng);
            }
            out.push(p);
        }
        out
    }

    /// The weights into every hidden unit (`H` images of `V` values), each rescaled to `[0, 1]`
    /// for display.
    pub fn filters(&self) -> Result<Vec<Vec<f32>>> {
        let (v, h) = (self.visible(), self.hidden());
        let w = to_vec_f32(self.w.clone().transpose())?; // [H, V]
        debug_assert_eq!(w.len(), v * h);
        Ok(w.chunks(v).map(crate::picture::normalize_unit).collect())
    }
}

impl RbmConfig {
    /// Checks the settings (what [`fit`](Self::fit) checks first).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(UnsupervisedError::InvalidArgument(m));
        if self.hidden == 0 {
            return bad("hidden must be at least 1".into());
        }
        if self.k == 0 {
            return bad("CD-k needs k >= 1 Gibbs step".into());
        }
        if self.batch_size == 0 || self.epochs == 0 {
            return bad("batch_size and epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be > 0, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("weight decay must be >= 0, got {}", self.weight_decay));
        }
        Ok(())
    }

    /// Trains an RBM on the rows of `train` (`[N, V]`, values in `[0, 1]`, normally binary: see
    /// [`binarize`]); `val` (same `V`) is only used for its free energy. `on_epoch` sees each
    /// epoch's statistics as soon as they are known (progress printing).
    pub fn fit(
        &self,
        train: Tensor<2>,
        val: Option<Tensor<2>>,
        mut on_epoch: impl FnMut(&RbmEpoch),
    ) -> Result<RbmTraining> {
        self.validate()?;
        let [n, nv] = train.dims();
        if n == 0 || nv == 0 {
            return Err(UnsupervisedError::InvalidInput(format!(
                "RBM training needs a non-empty [N, V] matrix, got [{n}, {nv}]"
            )));
        }
        check_unit_interval(&train, "training")?;
        if let Some(v) = &val {
            if v.dims()[1] != nv {
                return Err(UnsupervisedError::InvalidInput(format!(
                    "validation data has {} visible units but training data has {nv}",
                    v.dims()[1]
                )));
            }
            check_unit_interval(v, "validation")?;
        }
        let device = train.device();
        let mut rbm = Rbm::new(nv, self.hidden, self.seed, &device);
        // Visible biases at the log-odds of the pixel means (Hinton's guide, 8.1).
        let p = train.clone().mean_dim(0).reshape([nv]).clamp(1e-3, 1.0 - 1e-3);
        rbm.vb = (p.clone() / (-p + 1.0)).log();

        let fe_train = train.clone().slice([0..n.min(self.free_energy_samples.max(1)), 0..nv]);
        let mut vel_w: Tensor<2> = Tensor::zeros([nv, self.hidden], &device);
        let mut vel_vb: Tensor<1> = Tensor::zeros([nv], &device);
        let mut vel_hb: Tensor<1> = Tensor::zeros([self.hidden], &device);
        let mut chains: Option<Tensor<2>> = None;
        let mut rng = Rng::for_item(self.seed, 1);
        let (lr, m, wd) = (self.lr as f32, self.momentum as f32, self.weight_decay as f32);
        let mut history = Vec::with_capacity(self.epochs);
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 1..=self.epochs {
            let start = Instant::now();
            rng.shuffle(&mut order);
            let mut err_sum = 0.0f64;
            for idx in order.chunks(self.batch_size) {
                let b = idx.len();
                let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
                let v0 = train.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(ids, [b]), &device));
                let ph0 = rbm.hidden_probs(v0.clone());
                let h0 = bernoulli(ph0.clone(), &mut rng);
                let recon = rbm.visible_probs(h0.clone());
                err_sum += to_vec_f32((v0.clone() - recon).square().sum())?[0] as f64;
                // Negative phase: k Gibbs steps from the data (CD) or from the persistent chains.
                let mut h = if self.persistent {
                    let c = chains.take().unwrap_or_else(|| {
                        // Chains start at the first mini-batch (repeated to `batch_size` rows).
                        let reps: Vec<i64> = (0..self.batch_size).map(|i| (i % b) as i64).collect();
                        v0.clone()
                            .select(0, Tensor::<1, Int>::from_data(TensorData::new(reps, [self.batch_size]), &device))
                    });
                    bernoulli(rbm.hidden_probs(c), &mut rng)
                } else {
                    h0
                };
                let mut vk = v0.clone();
                let mut phk = ph0.clone();
                for step in 0..self.k {
                    vk = bernoulli(rbm.visible_probs(h), &mut rng);
                    phk = rbm.hidden_probs(vk.clone());
                    h = if step + 1 < self.k { bernoulli(phk.clone(), &mut rng) } else { phk.clone() };
                }
                let chains_n = vk.dims()[0] as f32;
                if self.persistent {
                    chains = Some(vk.clone());
                }
                let pos = v0.clone().transpose().matmul(ph0.clone()) / b as f32;
                let neg = vk.clone().transpose().matmul(phk.clone()) / chains_n;
                let dw = pos - neg - rbm.w.clone() * wd;
                let dvb = v0.sum_dim(0).reshape([nv]) / b as f32 - vk.sum_dim(0).reshape([nv]) / chains_n;
                let dhb =
                    ph0.sum_dim(0).reshape([self.hidden]) / b as f32 - phk.sum_dim(0).reshape([self.hidden]) / chains_n;
                vel_w = vel_w * m + dw * lr;
                vel_vb = vel_vb * m + dvb * lr;
                vel_hb = vel_hb * m + dhb * lr;
                rbm.w = rbm.w + vel_w.clone();
                rbm.vb = rbm.vb + vel_vb.clone();
                rbm.hb = rbm.hb + vel_hb.clone();
            }
            let free_energy_train = rbm.mean_free_energy(fe_train.clone())?;
            let free_energy_val = val.as_ref().map(|v| rbm.mean_free_energy(v.clone())).transpose()?;
            let stats = RbmEpoch {
                epoch,
                reconstruction_error: err_sum / (n * nv) as f64,
                free_energy_train,
                free_energy_val,
                seconds: start.elapsed().as_secs_f64(),
            };
            if !stats.reconstruction_error.is_finite() || !stats.free_energy_train.is_finite() {
                return Err(UnsupervisedError::InvalidArgument(format!(
                    "RBM training diverged at epoch {epoch} (non-finite error / free energy): lower the learning rate ({})",
                    self.lr
                )));
            }
            on_epoch(&stats);
            history.push(stats);
        }
        Ok(RbmTraining { rbm, history })
    }
}

fn check_unit_interval(x: &Tensor<2>, what: &str) -> Result<()> {
    let lo = to_vec_f32(x.clone().min())?[0];
    let hi = to_vec_f32(x.clone().max())?[0];
    if !(lo >= 0.0 && hi <= 1.0) {
        return Err(UnsupervisedError::InvalidInput(format!(
            "{what} data must be in [0, 1] for a Bernoulli RBM (found values in [{lo}, {hi}]): binarise or min-max scale it"
        )));
    }
    Ok(())
}
