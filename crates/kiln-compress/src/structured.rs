//! Structured channel pruning with dependency groups (the DepGraph idea), read from the trace.
//!
//! Every tensor's channel dimension belongs to a *channel space*. Ops that keep channels
//! (batch norm, activations, pooling, dropout, flatten) and depthwise convolutions (channel `i`
//! in is channel `i` out) pass their input's space on; residual adds merge the spaces of their
//! inputs (a union-find), so the channels of a whole ResNet stage or of a MobileNetV2 bottleneck
//! chain form one group. Convolutions and linear layers start a new space (their output
//! channels). A space is pruned by keeping the same channel indices in every tensor that has that
//! space on one of its dimensions: the producers' output dims, batch-norm vectors, depthwise
//! filters, and the consumers' input dims (a linear layer after a flatten sees each channel as
//! `H x W` features).
//!
//! Spaces that touch the network input or output, a grouped (non-depthwise) convolution, a
//! concatenation, a channel split / shuffle or an element-wise product are left whole: pruning
//! them safely needs index bookkeeping across the op that this version does not do, and the
//! report says how many spaces were skipped.
//!
//! The pruned model keeps its Rust type with smaller tensors (and depthwise `groups` updated via
//! [`Compressible::sync_groups`]), so it runs, trains and is analyzed like any other model.
//! PyTorch twin: `torch_pruning.MetaPruner` (DepGraph) with `MagnitudeImportance` / `BNScaleImportance`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::graph::{Graph, param_values, replace_params};
use crate::model::Compressible;

/// How channel importance is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Importance {
    /// Sum of |w| of each output filter (over all producers of the group).
    L1,
    /// Euclidean norm of each output filter.
    L2,
    /// |gamma| of the group's batch norms (Network Slimming); L1 when the group has none.
    BnScale,
}

impl std::str::FromStr for Importance {
    type Err = CompressError;
    fn from_str(s: &str) -> Result<Self, CompressError> {
        match s {
            "l1" => Ok(Importance::L1),
            "l2" => Ok(Importance::L2),
            "bn" | "bn-scale" => Ok(Importance::BnScale),
            _ => Err(CompressError::InvalidOption(format!("unknown importance '{s}'; use l1, l2 or bn-scale"))),
        }
    }
}

/// Options of [`prune_channels`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChannelPruneConfig {
    /// Fraction of each prunable group's channels to remove, in `[0, 1)`.
    pub ratio: f64,
    /// Importance criterion.
    pub importance: Importance,
    /// Keep a multiple of this many channels (1 = any count).
    pub round_to: usize,
}

impl Default for ChannelPruneConfig {
    fn default() -> Self {
        Self { ratio: 0.5, importance: Importance::L1, round_to: 1 }
    }
}

/// What [`prune_channels`] did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChannelPlan {
    /// One entry per pruned group: the op paths whose output started it, channels before, kept.
    pub groups: Vec<PrunedGroup>,
    /// Channel groups left whole (network input / output, grouped convs, concat, split...).
    pub skipped: usize,
}

/// One pruned channel group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrunedGroup {
    /// The layers whose outputs form the group.
    pub producers: Vec<String>,
    /// Channels before.
    pub before: usize,
    /// Channels kept.
    pub after: usize,
}

struct Uf(Vec<usize>);
impl Uf {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[b] = a;
        }
    }
}

/// A tensor dimension that carries a channel space.
#[derive(Clone, Debug)]
struct Role {
    param: u64,
    dim: usize,
    node: usize,
    /// Features per channel along `dim` (H x W after a flatten).
    mult: usize,
    /// A conv / linear output filter (counted for importance).
    filter: bool,
    /// A batch-norm scale (counted for BN-scale importance).
    gamma: bool,
}

/// Removes `cfg.ratio` of the channels of every prunable group of `model` (traced at `input`,
/// `[N, C, H, W]`), keeping the most important ones. Returns the smaller model and the plan.
pub fn prune_channels<M: Compressible>(
    model: M,
    input: &[usize],
    cfg: &ChannelPruneConfig,
) -> Result<(M, ChannelPlan), CompressError> {
    if !(0.0..1.0).contains(&cfg.ratio) {
        return Err(CompressError::InvalidOption(format!(
            "channel pruning ratio must be in [0, 1), got {}",
            cfg.ratio
        )));
    }
    if cfg.round_to == 0 {
        return Err(CompressError::InvalidOption("round_to must be at least 1".into()));
    }
    let mut model = model.materialize();
    model.unshare_running_stats();
    let graph = Graph::of(&model, input)?;
    let values = param_values(&model);
    let n_nodes = graph.shapes.len();
    let mut uf = Uf((0..n_nodes).collect());
    let mut blocked: HashSet<usize> = HashSet::new(); // nodes whose space must stay whole
    let mut mult = vec![1usize; n_nodes];
    let mut roles: Vec<Role> = vec![];
    blocked.insert(0);
    for op in &graph.ops {
        let x = op.inputs[0];
        let out = op.output;
        let in_shape = &graph.shapes[x];
        let w = op.tensor("weight").and_then(|id| values.get(&id).map(|v| (id, v)));
        match op.op.as_str() {
            "Conv2d" | "Conv2d(depthwise)" => {
                let (wid, wv) = w.ok_or_else(|| CompressError::Trace(format!("{} has no weight", op.path)))?;
                let c_in = in_shape[1];
                let groups = c_in / wv.shape[1].max(1);
                let depthwise = groups > 1 && wv.shape[1] == 1 && wv.shape[0] == c_in;
                if depthwise {
                    uf.union(x, out);
                    roles.push(Role { param: wid, dim: 0, node: x, mult: 1, filter: false, gamma: false });
                    if let Some(b) = op.tensor("bias") {
                        roles.push(Role { param: b, dim: 0, node: x, mult: 1, filter: false, gamma: false });
                    }
                } else {
                    if groups > 1 {
                        blocked.insert(x);
                        blocked.insert(out);
                    }
                    roles.push(Role { param: wid, dim: 1, node: x, mult: 1, filter: false, gamma: false });
                    roles.push(Role { param: wid, dim: 0, node: out, mult: 1, filter: true, gamma: false });
                    if let Some(b) = op.tensor("bias") {
                        roles.push(Role { param: b, dim: 0, node: out, mult: 1, filter: false, gamma: false });
                    }
                }
            }
            "Linear" => {
                let (wid, _) = w.ok_or_else(|| CompressError::Trace(format!("{} has no weight", op.path)))?;
                roles.push(Role { param: wid, dim: 0, node: x, mult: mult[x], filter: false, gamma: false });
                roles.push(Role { param: wid, dim: 1, node: out, mult: 1, filter: true, gamma: false });
                if let Some(b) = op.tensor("bias") {
                    roles.push(Role { param: b, dim: 0, node: out, mult: 1, filter: false, gamma: false });
                }
            }
            "BatchNorm" => {
                uf.union(x, out);
                for (s, id) in &op.tensors {
                    roles.push(Role { param: *id, dim: 0, node: x, mult: 1, filter: false, gamma: s == "weight" });
                }
            }
            "Flatten" => {
                uf.union(x, out);
                mult[out] = mult[x] * in_shape[2..].iter().product::<usize>().max(1);
            }
            "Add" => {
                for i in &op.inputs {
                    uf.union(x, *i);
                }
                uf.union(x, out);
            }
            "ReLU" | "ReLU6" | "LeakyReLU" | "Sigmoid" | "Tanh" | "SiLU" | "HardSigmoid" | "Hardswish" | "Dropout"
            | "MaxPool2d" | "AvgPool2d" | "AdaptiveAvgPool2d" | "GlobalAvgPool" | "Identity" => {
                if op.shape.len() >= 2 && op.shape[1] == in_shape[1] {
                    uf.union(x, out);
                } else {
                    blocked.insert(x);
                    blocked.insert(out);
                }
            }
            _ => {
                // Concat, split, shuffle, mul, upsample...: keep every touched space whole.
                for i in &op.inputs {
                    blocked.insert(*i);
                }
                blocked.insert(out);
            }
        }
    }
    if let Some(last) = graph.ops.last() {
        blocked.insert(last.output);
    }
    let blocked_roots: HashSet<usize> = blocked.iter().map(|n| uf.find(*n)).collect();
    // Group roles by space.
    let mut spaces: HashMap<usize, Vec<Role>> = HashMap::new();
    for r in roles {
        let root = uf.find(r.node);
        spaces.entry(root).or_default().push(r);
    }
    let mut keep_of: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut plan = ChannelPlan { groups: vec![], skipped: 0 };
    let mut roots: Vec<usize> = spaces.keys().copied().collect();
    roots.sort();
    for root in roots {
        let rs = &spaces[&root];
        if blocked_roots.contains(&root) || !rs.iter().any(|r| r.filter) {
            plan.skipped += 1;
            continue;
        }
        let channels = graph.shapes[root][1];
        let mut score = vec![0f64; channels];
        let use_gamma = cfg.importance == Importance::BnScale && rs.iter().any(|r| r.gamma);
        for r in rs.iter().filter(|r| if use_gamma { r.gamma } else { r.filter }) {
            let v = &values[&r.param];
            let inner: usize = v.shape[r.dim + 1..].iter().product();
            let n = v.shape[r.dim];
            let mut acc = vec![0f64; n];
            for (i, x) in v.values.iter().enumerate() {
                let c = (i / inner) % n;
                acc[c] += match cfg.importance {
                    Importance::L2 => (*x as f64).powi(2),
                    _ => (*x as f64).abs(),
                };
            }
            for (c, a) in acc.into_iter().enumerate() {
                score[c / r.mult] += if cfg.importance == Importance::L2 { a.sqrt() } else { a };
            }
        }
        let target = ((1.0 - cfg.ratio) * channels as f64).round() as usize;
        let keep_n = (target.div_ceil(cfg.round_to) * cfg.round_to).clamp(cfg.round_to.min(channels), channels);
        if keep_n == channels {
            continue;
        }
        let mut order: Vec<usize> = (0..channels).collect();
        order.sort_by(|a, b| score[*b].total_cmp(&score[*a]).then(a.cmp(b)));
        let mut keep: Vec<usize> = order[..keep_n].to_vec();
        keep.sort();
        let mut producers: Vec<String> = vec![];
        for op in &graph.ops {
            if uf.find(op.output) == root && (op.is_conv() && op.op != "Conv2d(depthwise)" || op.op == "Linear") {
                producers.push(op.path.clone());
            }
        }
        plan.groups.push(PrunedGroup { producers, before: channels, after: keep_n });
        keep_of.insert(root, keep);
    }
    // Slice every tensor along the dims whose space was pruned.
    let mut new: HashMap<u64, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (root, rs) in &spaces {
        let Some(keep) = keep_of.get(root) else { continue };
        for r in rs {
            let (shape, vals) = new
                .remove(&r.param)
                .unwrap_or_else(|| (values[&r.param].shape.clone(), values[&r.param].values.clone()));
            let idx: Vec<usize> = keep.iter().flat_map(|c| (c * r.mult)..((c + 1) * r.mult)).collect();
            new.insert(r.param, slice_dim(&vals, &shape, r.dim, &idx));
        }
    }
    let mut pruned = replace_params(model, &new);
    pruned.sync_groups();
    Graph::of(&pruned, input)?; // the trace checks every channel count
    Ok((pruned, plan))
}

/// Keeps indices `keep` of dimension `dim`.
pub fn slice_dim(values: &[f32], shape: &[usize], dim: usize, keep: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let n = shape[dim];
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * n + k) * inner;
            out.extend_from_slice(&values[start..start + inner]);
        }
    }
    let mut s = shape.to_vec();
    s[dim] = keep.len();
    (s, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_dim_keeps_the_listed_indices() {
        // shape [2, 3, 2]: value = 100 a + 10 b + c
        let v: Vec<f32> =
            (0..2).flat_map(|a| (0..3).flat_map(move |b| (0..2).map(move |c| (100 * a + 10 * b + c) as f32))).collect();
        let (s, out) = slice_dim(&v, &[2, 3, 2], 1, &[0, 2]);
        assert_eq!(s, vec![2, 2, 2]);
        assert_eq!(out, vec![0.0, 1.0, 20.0, 21.0, 100.0, 101.0, 120.0, 121.0]);
        let (s, out) = slice_dim(&v, &[2, 3, 2], 0, &[1]);
        assert_eq!(s, vec![1, 3, 2]);
        assert_eq!(out[0], 100.0);
    }
}
