//! Unstructured magnitude pruning with persistent masks.
//!
//! A pruned weight keeps its dense shape and gets a [`PruneMask`] — a Burn
//! [`Reparameterization`] whose 0/1 mask multiplies the stored weight in every forward pass. The
//! mask is a (non-trainable) parameter of the module, so it survives saving, loading and
//! fine-tuning: pruned weights receive zero gradient and stay zero. [`materialize`] bakes the
//! zeros into plain weights and drops the masks.
//!
//! PyTorch twin: `torch.nn.utils.prune.l1_unstructured` / `global_unstructured` (with
//! `prune.remove` as the materialize step).

use std::collections::{HashMap, HashSet};

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::graph::{Graph, param_values};

/// A 0/1 mask over a weight, stored flat (`numel` entries) so one type serves every rank.
#[derive(Module, Debug)]
pub struct PruneMask {
    /// 1 keeps the weight, 0 prunes it. Not trainable.
    pub mask: Param<Tensor<1>>,
}

impl Reparameterization for PruneMask {
    const NAME: &'static str = "prune_mask";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        base * self.mask.val().reshape(shape)
    }
}

/// Attaches masks by Burn parameter path (`fc1.weight`).
struct AttachMasks<'a> {
    masks: &'a HashMap<String, Vec<f32>>,
}

impl Reparameterizer for AttachMasks<'_> {
    type Reparam = PruneMask;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<PruneMask>) {
        let Some(mask) = self.masks.get(path) else { return (param, None) };
        let device = param.lazy_device();
        let n = mask.len();
        let t = Tensor::<1>::from_data(TensorData::new(mask.clone(), [n]), &device);
        (param, Some(PruneMask { mask: Param::from_tensor(t).set_require_grad(false) }))
    }
}

/// How the pruning threshold is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each layer loses the same fraction of its weights.
    Layer,
    /// One threshold over all prunable weights (layers with small weights lose more).
    Global,
}

/// Sparsity targets of an iterative schedule: Zhu & Gupta's cubic ramp
/// `s_t = s (1 - (1 - t / n)^3)`, `t = 1..=n` (the last step reaches `s`).
pub fn cubic_schedule(sparsity: f64, steps: usize) -> Vec<f64> {
    let n = steps.max(1) as f64;
    (1..=steps.max(1)).map(|t| sparsity * (1.0 - (1.0 - t as f64 / n).powi(3))).collect()
}

/// The Burn paths of the prunable weights: every convolution and linear weight in the trace.
pub fn prunable_weights<M: Module + kiln_layers::Trace>(
    model: &M,
    input: &[usize],
) -> Result<Vec<String>, CompressError> {
    let graph = Graph::of(model, input)?;
    let values = param_values(model);
    let ids: Vec<u64> = graph.weighted().filter_map(|o| o.tensor("weight")).collect();
    Ok(ids.iter().filter_map(|id| values.get(id).map(|v| v.path.clone())).collect())
}

/// Prunes the smallest-magnitude convolution and linear weights of `model` to `sparsity`
/// (fraction of zeros, in `[0, 1)`), and attaches persistent masks. Weights that are already zero
/// (an earlier step of a schedule) count towards the target, so calling this with rising targets
/// prunes iteratively. Existing masks are baked in first.
pub fn prune_magnitude<M: Module + kiln_layers::Trace>(
    model: M,
    input: &[usize],
    sparsity: f64,
    scope: Scope,
) -> Result<M, CompressError> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(CompressError::InvalidOption(format!("sparsity must be in [0, 1), got {sparsity}")));
    }
    let model = model.materialize();
    let targets: HashSet<String> = prunable_weights(&model, input)?.into_iter().collect();
    let values = param_values(&model);
    let weights: Vec<(&String, &Vec<f32>)> =
        values.values().filter(|v| targets.contains(&v.path)).map(|v| (&v.path, &v.values)).collect();
    let kth = |mut mags: Vec<f32>, s: f64| -> Option<f32> {
        let k = (s * mags.len() as f64).floor() as usize;
        if k == 0 {
            return None;
        }
        let (_, t, _) = mags.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
        Some(*t)
    };
    // Keep |w| > threshold, and prune exactly k entries (ties at the threshold are broken by
    // position) so the sparsity is exact.
    let mask_of = |w: &[f32], thr: Option<f32>, mut budget_at_thr: usize| -> Vec<f32> {
        w.iter()
            .map(|x| match thr {
                None => 1.0,
                Some(t) if x.abs() < t => 0.0,
                Some(t) if x.abs() == t && budget_at_thr > 0 => {
                    budget_at_thr -= 1;
                    0.0
                }
                _ => 1.0,
            })
            .collect()
    };
    let mut masks = HashMap::new();
    match scope {
        Scope::Layer => {
            for (path, w) in weights {
                let mags: Vec<f32> = w.iter().map(|x| x.abs()).collect();
                let k = (sparsity * w.len() as f64).floor() as usize;
                let thr = kth(mags, sparsity);
                let below = thr.map_or(0, |t| w.iter().filter(|x| x.abs() < t).count());
                masks.insert(path.clone(), mask_of(w, thr, k.saturating_sub(below)));
            }
        }
        Scope::Global => {
            let mags: Vec<f32> = weights.iter().flat_map(|(_, w)| w.iter().map(|x| x.abs())).collect();
            let k = (sparsity * mags.len() as f64).floor() as usize;
            let thr = kth(mags, sparsity);
            let below: usize =
                thr.map_or(0, |t| weights.iter().map(|(_, w)| w.iter().filter(|x| x.abs() < t).count()).sum());
            let mut budget = k.saturating_sub(below);
            for (path, w) in weights {
                let at = thr.map_or(0, |t| w.iter().filter(|x| x.abs() == t).count()).min(budget);
                budget -= at;
                masks.insert(path.clone(), mask_of(w, thr, at));
            }
        }
    }
    Ok(attach_masks(model, &masks))
}

/// Attaches masks (Burn path -> flat 0/1 values) to a model without masks.
pub fn attach_masks<M: Module>(model: M, masks: &HashMap<String, Vec<f32>>) -> M {
    model.apply_reparameterization(AttachMasks { masks })
}

/// The Burn paths of the weights that carry a mask, with the mask's length.
pub fn masked_params<M: Module>(model: &M) -> Vec<(String, usize)> {
    struct V {
        scope: Vec<String>,
        out: Vec<(String, usize)>,
    }
    impl burn::module::ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _c: &str) {
            self.scope.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _c: &str) {
            self.scope.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            // A mask is visited as `<weight path>.prune_mask.mask`.
            let path = self.scope.join(".");
            if let Some(weight) = path.strip_suffix(".prune_mask.mask") {
                self.out.push((weight.to_string(), p.dims().iter().product()));
            }
        }
    }
    let mut v = V { scope: vec![], out: vec![] };
    model.visit(&mut v);
    v.out
}

/// Bakes the masks into the weights and removes them: the dense model that the masks described.
pub fn materialize<M: Module>(model: M) -> M {
    model.materialize()
}

/// Fraction of zeros among the prunable (convolution and linear) weights.
pub fn weight_sparsity<M: Module + kiln_layers::Trace>(model: &M, input: &[usize]) -> Result<f64, CompressError> {
    let m = model.clone().materialize();
    let targets: HashSet<String> = prunable_weights(&m, input)?.into_iter().collect();
    let (mut zeros, mut total) = (0usize, 0usize);
    for v in param_values(&m).values().filter(|v| targets.contains(&v.path)) {
        zeros += v.values.iter().filter(|x| **x == 0.0).count();
        total += v.values.len();
    }
    Ok(if total == 0 { 0.0 } else { zeros as f64 / total as f64 })
}
