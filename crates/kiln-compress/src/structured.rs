//! Structured channel pruning with dependency groups (the DepGraph idea), read from the trace.
//!
//! Every output channel of a convolution or linear layer is an *element*, and every tensor of the
//! traced graph has a *layout*: the element at each of its channel positions. Ops that keep
//! channels (batch norm, activations, pooling, dropout, flatten) and depthwise convolutions
//! (channel `i` in is channel `i` out) pass the layout on; a concatenation joins its inputs'
//! layouts, a channel split takes a range of one, a channel shuffle permutes it. Ops that combine
//! tensors position by position *couple* the elements at each position so that they are removed
//! together: residual adds, squeeze-excite gates (`x * s`), and the structure constraints of
//! splits into equal chunks (`x.chunk(2, 1)`: chunk `k`'s position `p` is coupled with chunk 0's,
//! so all chunks keep the same count) and of channel shuffles (position `j` of every group is
//! coupled, so the interleaving still lines up). Channel spaces linked by couplings form a
//! *group*; the pruning ratio applies to the coupled sets of each group, ranked by importance
//! summed over every filter (or batch-norm scale) of the set. A set is removed by slicing every
//! tensor whose dimension follows a layout holding it: producers' filters, batch-norm vectors,
//! depthwise filters, and the consumers' input dims, wherever concatenations and shuffles moved
//! the channel (a linear layer after a flatten sees each channel as `H x W` features).
//!
//! Channels stay whole when they touch the network input or output, a grouped (non-depthwise)
//! convolution, a split by fixed sizes, or an op kiln cannot follow channel by channel; the plan
//! counts the groups left whole. After slicing, the pruned model is traced again and every node's
//! channel count must equal the plan's, so a model whose forward pass computes widths from fixed
//! numbers is refused with a message instead of being pruned wrongly.
//!
//! The pruned model keeps its Rust type with smaller tensors (and depthwise `groups` updated via
//! [`Compressible::sync_groups`]), so it runs, trains and is analyzed like any other model.
//! PyTorch twin: `torch_pruning.MetaPruner` (DepGraph) with `MagnitudeImportance` / `BNScaleImportance`.

use kiln_layers::OpKind;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::graph::{Graph, ParamValue, param_values, replace_params};
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
    /// Channel groups left whole (network input / output, grouped convs, fixed-size splits...).
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

/// A tensor dimension whose positions follow a node's channel layout.
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
    /// Set to zero by soft pruning (everything but batch-norm variances).
    zero: bool,
}

/// The channel dependency graph of a traced model.
///
/// Every channel a convolution or linear layer produces is an *element*; every node of the graph
/// has a *layout*, the element at each of its channel positions. Ops that keep channels pass
/// the layout on, concatenation joins layouts, a channel split takes a range of one and a
/// channel shuffle permutes it. Ops that combine tensors position by position (residual adds,
/// gating products) and ops whose result needs equal channel counts per part (a shuffle's
/// groups, a split into equal chunks) *couple* elements: a coupled set is removed or kept as a
/// whole. Channel spaces linked by couplings form a *group*, the unit the pruning ratio applies
/// to.
struct Deps {
    layout: Vec<Vec<usize>>,
    mult: Vec<usize>,
    /// Element -> the channel space (producer) it belongs to.
    space: Vec<usize>,
    /// Space -> producer op path (`None`: the network input or an op kiln cannot follow).
    producer: Vec<Option<String>>,
    elems: Uf,
    blocked: Vec<bool>,
    roles: Vec<Role>,
}

impl Deps {
    fn fresh(&mut self, n: usize, producer: Option<String>, blocked: bool) -> Vec<usize> {
        let s = self.producer.len();
        self.producer.push(producer);
        let start = self.space.len();
        for _ in 0..n {
            self.space.push(s);
            self.elems.0.push(self.elems.0.len());
            self.blocked.push(blocked);
        }
        (start..start + n).collect()
    }

    fn block_node(&mut self, node: usize) {
        for &e in &self.layout[node] {
            self.blocked[e] = true;
        }
    }

    fn couple(&mut self, a: usize, b: usize) {
        self.elems.union(a, b);
    }

    fn build(graph: &Graph, values: &HashMap<u64, ParamValue>) -> Result<Self, CompressError> {
        let n_nodes = graph.shapes.len();
        let mut d = Deps {
            layout: vec![vec![]; n_nodes],
            mult: vec![1; n_nodes],
            space: vec![],
            producer: vec![],
            elems: Uf(vec![]),
            blocked: vec![],
            roles: vec![],
        };
        let ch = |n: usize| graph.shapes[n].get(1).copied().unwrap_or(0);
        d.layout[0] = d.fresh(ch(0), None, true);
        // Channel splits of each node: (start, end, op path).
        let mut splits: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for op in &graph.ops {
            let x = op.inputs[0];
            let out = op.output;
            let w = op.tensor("weight").and_then(|id| values.get(&id).map(|v| (id, v)));
            let passes = op.shape.len() >= 2 && op.shape[1] == ch(x);
            match &op.op {
                OpKind::Conv2d | OpKind::DepthwiseConv2d => {
                    let (wid, wv) = w.ok_or_else(|| CompressError::Trace(format!("{} has no weight", op.path)))?;
                    let c_in = ch(x);
                    let groups = c_in / wv.shape[1].max(1);
                    let depthwise = groups > 1 && wv.shape[1] == 1 && wv.shape[0] == c_in;
                    if depthwise {
                        d.layout[out] = d.layout[x].clone();
                        d.roles.push(Role {
                            param: wid,
                            dim: 0,
                            node: x,
                            mult: 1,
                            filter: false,
                            gamma: false,
                            zero: true,
                        });
                        if let Some(b) = op.tensor("bias") {
                            d.roles.push(Role {
                                param: b,
                                dim: 0,
                                node: x,
                                mult: 1,
                                filter: false,
                                gamma: false,
                                zero: true,
                            });
                        }
                    } else {
                        d.layout[out] = d.fresh(op.shape[1], Some(op.path.clone()), groups > 1);
                        if groups > 1 {
                            d.block_node(x);
                        }
                        d.roles.push(Role {
                            param: wid,
                            dim: 1,
                            node: x,
                            mult: 1,
                            filter: false,
                            gamma: false,
                            zero: true,
                        });
                        d.roles.push(Role {
                            param: wid,
                            dim: 0,
                            node: out,
                            mult: 1,
                            filter: true,
                            gamma: false,
                            zero: true,
                        });
                        if let Some(b) = op.tensor("bias") {
                            d.roles.push(Role {
                                param: b,
                                dim: 0,
                                node: out,
                                mult: 1,
                                filter: false,
                                gamma: false,
                                zero: true,
                            });
                        }
                    }
                }
                OpKind::Linear => {
                    let (wid, _) = w.ok_or_else(|| CompressError::Trace(format!("{} has no weight", op.path)))?;
                    let features = *op.shape.last().unwrap_or(&0);
                    d.layout[out] = d.fresh(features, Some(op.path.clone()), false);
                    if graph.shapes[x].len() == 2 {
                        d.roles.push(Role {
                            param: wid,
                            dim: 0,
                            node: x,
                            mult: d.mult[x],
                            filter: false,
                            gamma: false,
                            zero: true,
                        });
                        d.roles.push(Role {
                            param: wid,
                            dim: 1,
                            node: out,
                            mult: 1,
                            filter: true,
                            gamma: false,
                            zero: true,
                        });
                        if let Some(b) = op.tensor("bias") {
                            d.roles.push(Role {
                                param: b,
                                dim: 0,
                                node: out,
                                mult: 1,
                                filter: false,
                                gamma: false,
                                zero: true,
                            });
                        }
                    } else {
                        // A linear layer over the last dim of a feature map: its channels stay whole.
                        d.block_node(x);
                        d.block_node(out);
                    }
                }
                OpKind::BatchNorm => {
                    d.layout[out] = d.layout[x].clone();
                    for (s, id) in &op.tensors {
                        d.roles.push(Role {
                            param: *id,
                            dim: 0,
                            node: x,
                            mult: 1,
                            filter: false,
                            gamma: s == "weight",
                            zero: s != "running_var",
                        });
                    }
                }
                OpKind::Flatten => {
                    d.layout[out] = d.layout[x].clone();
                    d.mult[out] = d.mult[x] * graph.shapes[x][2..].iter().product::<usize>().max(1);
                }
                OpKind::Add | OpKind::Mul => {
                    // Position-wise: channel i of every input is channel i of the output. A gate
                    // with a single channel broadcasts and couples nothing.
                    d.layout[out] = d.layout[x].clone();
                    d.mult[out] = d.mult[x];
                    for &i in &op.inputs[1..] {
                        if ch(i) == ch(x) && d.mult[i] == d.mult[x] {
                            for p in 0..d.layout[x].len() {
                                let (a, b) = (d.layout[x][p], d.layout[i][p]);
                                d.couple(a, b);
                            }
                        } else {
                            d.block_node(i);
                            d.block_node(x);
                        }
                    }
                }
                OpKind::Concat => {
                    let total: usize = op.inputs.iter().map(|&i| ch(i)).sum();
                    if op.inputs.iter().any(|&i| d.mult[i] != 1) {
                        for &i in &op.inputs {
                            d.block_node(i);
                        }
                        d.layout[out] = d.fresh(ch(out), None, true);
                    } else if ch(out) == total && op.inputs.len() > 1 {
                        d.layout[out] = op.inputs.iter().flat_map(|&i| d.layout[i].clone()).collect();
                    } else {
                        // Concatenation along a spatial dim: position-wise like an add.
                        d.layout[out] = d.layout[x].clone();
                        for &i in &op.inputs[1..] {
                            for p in 0..d.layout[x].len().min(d.layout[i].len()) {
                                let (a, b) = (d.layout[x][p], d.layout[i][p]);
                                d.couple(a, b);
                            }
                        }
                    }
                }
                OpKind::Split => match parse_split(&op.detail) {
                    Some((1, a, b)) if d.mult[x] == 1 && b <= d.layout[x].len() => {
                        d.layout[out] = d.layout[x][a..b].to_vec();
                        splits.entry(x).or_default().push((a, b));
                    }
                    Some((dim, _, _)) if dim != 1 => d.layout[out] = d.layout[x].clone(),
                    _ => {
                        d.block_node(x);
                        d.layout[out] = d.fresh(ch(out), None, true);
                    }
                },
                OpKind::ChannelShuffle => {
                    let g: usize = op.detail.trim_start_matches('g').parse().unwrap_or(0);
                    let c = ch(x);
                    if g == 0 || c % g != 0 || d.mult[x] != 1 {
                        d.block_node(x);
                        d.layout[out] = d.fresh(ch(out), None, true);
                    } else {
                        // out[j * g + gi] = in[gi * m + j]: after pruning, every group must keep
                        // the same positions j, so in[gi * m + j] are coupled over gi.
                        let m = c / g;
                        let lin = d.layout[x].clone();
                        let mut lo = vec![0; c];
                        for gi in 0..g {
                            for j in 0..m {
                                lo[j * g + gi] = lin[gi * m + j];
                                if gi > 0 {
                                    d.couple(lin[j], lin[gi * m + j]);
                                }
                            }
                        }
                        d.layout[out] = lo;
                    }
                }
                kind if kind.keeps_channels() && passes => {
                    d.layout[out] = d.layout[x].clone();
                    d.mult[out] = d.mult[x];
                }
                _ => {
                    // An op kiln cannot follow channel by channel: every touched channel stays.
                    for &i in &op.inputs {
                        d.block_node(i);
                    }
                    d.layout[out] = d.fresh(ch(out), None, true);
                }
            }
        }
        // Splits: equal consecutive chunks covering the whole node (`x.chunk(n, 1)`) must keep
        // equal counts, so their positions are coupled chunk to chunk. A split the model computes
        // from fixed sizes cannot follow a pruned node: its input stays whole.
        for (x, mut ranges) in splits {
            ranges.sort();
            ranges.dedup();
            let c = d.layout[x].len();
            let len = ranges[0].1 - ranges[0].0;
            let chunks = ranges.len() > 1
                && len > 0
                && ranges.iter().enumerate().all(|(k, &(a, b))| a == k * len && b == a + len)
                && ranges.len() * len == c;
            if chunks {
                for k in 1..ranges.len() {
                    for p in 0..len {
                        let (a, b) = (d.layout[x][p], d.layout[x][k * len + p]);
                        d.couple(a, b);
                    }
                }
            } else if !(ranges.len() == 1 && ranges[0] == (0, c)) {
                d.block_node(x);
            }
        }
        if let Some(last) = graph.ops.last() {
            d.block_node(last.output);
        }
        Ok(d)
    }
}

/// `dim D [a..b]` (the detail of a traced split).
fn parse_split(detail: &str) -> Option<(usize, usize, usize)> {
    let rest = detail.strip_prefix("dim ")?;
    let (dim, range) = rest.split_once(' ')?;
    let (a, b) = range.trim_start_matches('[').trim_end_matches(']').split_once("..")?;
    Some((dim.parse().ok()?, a.parse().ok()?, b.parse().ok()?))
}

/// Removes `cfg.ratio` of the channels of every prunable group of `model` (traced at `input`,
/// `[N, C, H, W]`), keeping the most important ones. Returns the smaller model and the plan.
pub fn prune_channels<M: Compressible>(
    model: M,
    input: &[usize],
    cfg: &ChannelPruneConfig,
) -> Result<(M, ChannelPlan), CompressError> {
    validate(cfg)?;
    let mut model = model.materialize();
    model.unshare_running_stats();
    let p = plan_channels(&model, input, cfg)?;
    let mut new: HashMap<u64, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for r in &p.deps.roles {
        let keep = p.kept_positions(r.node);
        if keep.len() == p.deps.layout[r.node].len() {
            continue;
        }
        let (shape, vals) = new
            .remove(&r.param)
            .unwrap_or_else(|| (p.values[&r.param].shape.clone(), p.values[&r.param].values.clone()));
        let idx: Vec<usize> = keep.iter().flat_map(|c| (c * r.mult)..((c + 1) * r.mult)).collect();
        new.insert(r.param, slice_dim(&vals, &shape, r.dim, &idx));
    }
    let mut pruned = replace_params(model, &new);
    pruned.sync_groups();
    // The pruned model's own trace must show exactly the planned channel counts at every node:
    // this catches a model whose forward pass computes a split or a width from fixed numbers.
    let after = Graph::of(&pruned, input)?;
    if after.ops.len() != p.graph.ops.len() {
        return Err(CompressError::Trace(format!(
            "the pruned model traces {} ops, the original {}: its structure depends on channel counts",
            after.ops.len(),
            p.graph.ops.len()
        )));
    }
    for (op, new_op) in p.graph.ops.iter().zip(&after.ops) {
        if op.shape.len() < 2 {
            continue;
        }
        let kept = p.kept_positions(op.output).len();
        let expect = if kept == p.deps.layout[op.output].len() { op.shape[1] } else { kept * p.deps.mult[op.output] };
        if new_op.shape[1] != expect {
            return Err(CompressError::Trace(format!(
                "after pruning, {} ({}) has {} channels where the plan keeps {expect}",
                op.path, op.op, new_op.shape[1]
            )));
        }
    }
    Ok((pruned, p.plan))
}

/// Soft channel pruning: the channels [`prune_channels`] would remove (same configuration, same
/// choice) are set to zero instead — their filters, biases, batch-norm shifts and means, and
/// every consumer's weights on them — so the model keeps its shapes and computes exactly what
/// the pruned model computes (a removed channel is identically zero everywhere). Useful to
/// evaluate a pruning plan before committing to it, or to keep fine-tuning at full width (soft
/// filter pruning). Returns the zeroed model and the plan.
pub fn zero_channels<M: Compressible>(
    model: M,
    input: &[usize],
    cfg: &ChannelPruneConfig,
) -> Result<(M, ChannelPlan), CompressError> {
    validate(cfg)?;
    let mut model = model.materialize();
    model.unshare_running_stats();
    let p = plan_channels(&model, input, cfg)?;
    let mut new: HashMap<u64, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for r in p.deps.roles.iter().filter(|r| r.zero) {
        let layout = &p.deps.layout[r.node];
        let dead: Vec<usize> = (0..layout.len()).filter(|&q| p.removed.contains(&p.root[layout[q]])).collect();
        if dead.is_empty() {
            continue;
        }
        let (shape, mut vals) = new
            .remove(&r.param)
            .unwrap_or_else(|| (p.values[&r.param].shape.clone(), p.values[&r.param].values.clone()));
        let inner: usize = shape[r.dim + 1..].iter().product();
        let n = shape[r.dim];
        for (i, v) in vals.iter_mut().enumerate() {
            let c = (i / inner) % n;
            if dead.contains(&(c / r.mult)) {
                *v = 0.0;
            }
        }
        new.insert(r.param, (shape, vals));
    }
    Ok((replace_params(model, &new), p.plan))
}

fn validate(cfg: &ChannelPruneConfig) -> Result<(), CompressError> {
    if !(0.0..1.0).contains(&cfg.ratio) {
        return Err(CompressError::InvalidOption(format!(
            "channel pruning ratio must be in [0, 1), got {}",
            cfg.ratio
        )));
    }
    if cfg.round_to == 0 {
        return Err(CompressError::InvalidOption("round_to must be at least 1".into()));
    }
    Ok(())
}

/// What to remove: the dependency graph, its coupled sets and the ones chosen.
struct ChannelChoice {
    graph: Graph,
    values: HashMap<u64, ParamValue>,
    deps: Deps,
    root: Vec<usize>,
    removed: HashSet<usize>,
    plan: ChannelPlan,
}

impl ChannelChoice {
    fn kept_positions(&self, node: usize) -> Vec<usize> {
        self.deps.layout[node]
            .iter()
            .enumerate()
            .filter(|(_, e)| !self.removed.contains(&self.root[**e]))
            .map(|(p, _)| p)
            .collect()
    }
}

fn plan_channels<M: Compressible>(
    model: &M,
    input: &[usize],
    cfg: &ChannelPruneConfig,
) -> Result<ChannelChoice, CompressError> {
    let graph = Graph::of(model, input)?;
    let values = param_values(model);
    let mut d = Deps::build(&graph, &values)?;
    let n_elems = d.space.len();
    // Coupled sets (classes) and the groups of spaces they link.
    let root: Vec<usize> = (0..n_elems).map(|e| d.elems.find(e)).collect();
    let mut class_blocked: HashSet<usize> = HashSet::new();
    let mut spaces = Uf((0..d.producer.len()).collect());
    for e in 0..n_elems {
        if d.blocked[e] {
            class_blocked.insert(root[e]);
        }
        spaces.union(d.space[root[e]], d.space[e]);
    }
    // Importance of each class.
    let use_gamma = cfg.importance == Importance::BnScale;
    let mut filter_score: HashMap<usize, f64> = HashMap::new();
    let mut gamma_score: HashMap<usize, f64> = HashMap::new();
    for r in d.roles.iter().filter(|r| r.filter || r.gamma) {
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
        let target = if r.gamma { &mut gamma_score } else { &mut filter_score };
        for (c, a) in acc.into_iter().enumerate() {
            let e = d.layout[r.node][c / r.mult];
            *target.entry(root[e]).or_default() +=
                if cfg.importance == Importance::L2 && !r.gamma { a.sqrt() } else { a };
        }
    }
    // Classes by group (space-union root), in element order.
    let mut groups: Vec<(usize, Vec<usize>)> = vec![];
    let mut group_index: HashMap<usize, usize> = HashMap::new();
    let mut seen: HashSet<usize> = HashSet::new();
    for e in 0..n_elems {
        let r = root[e];
        if !seen.insert(r) {
            continue;
        }
        let g = spaces.find(d.space[r]);
        let k = *group_index.entry(g).or_insert_with(|| {
            groups.push((g, vec![]));
            groups.len() - 1
        });
        groups[k].1.push(r);
    }
    let mut removed: HashSet<usize> = HashSet::new();
    let mut plan = ChannelPlan { groups: vec![], skipped: 0 };
    for (g, classes) in &groups {
        let prunable: Vec<usize> =
            classes.iter().copied().filter(|c| !class_blocked.contains(c) && filter_score.contains_key(c)).collect();
        if prunable.is_empty() {
            plan.skipped += 1;
            continue;
        }
        let n = prunable.len();
        let target = ((1.0 - cfg.ratio) * n as f64).round() as usize;
        let keep_n = (target.div_ceil(cfg.round_to) * cfg.round_to).clamp(cfg.round_to.min(n), n);
        if keep_n == n {
            continue;
        }
        let group_gamma = use_gamma && prunable.iter().any(|c| gamma_score.contains_key(c));
        let score = |c: &usize| {
            if group_gamma { gamma_score.get(c).copied().unwrap_or(0.0) } else { filter_score[c] }
        };
        let mut order = prunable.clone();
        order.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.cmp(b)));
        removed.extend(order[keep_n..].iter().copied());
        let mut producers: Vec<String> = vec![];
        for (s, p) in d.producer.iter().enumerate() {
            if let Some(p) = p {
                if spaces.find(s) == *g {
                    producers.push(p.clone());
                }
            }
        }
        plan.groups.push(PrunedGroup { producers, before: n, after: keep_n });
    }
    Ok(ChannelChoice { graph, values, deps: d, root, removed, plan })
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
