//! L1 and L2 weight penalties over chosen parameters of a Burn module.
//!
//! The penalties are built from the parameters' current values (`param.val()`), so on an autodiff
//! device they stay in the graph: add the returned scalar to the loss and `backward()` adds
//! `sign(w)` (L1) or `2 w` (L2) times the coefficient to each selected parameter's gradient.
//!
//! - [`l1_penalty`] is `sum |w|`, [`l2_penalty`] is `sum w²` over the selected parameters (no
//!   `1/2`). PyTorch SGD's `weight_decay = wd` equals adding `wd / 2 * l2_penalty` to the loss.
//! - By default ([`ParamSelection::default`]) biases and normalization parameters (BatchNorm /
//!   LayerNorm / GroupNorm gamma and beta) are skipped, as is customary for weight decay: every
//!   parameter of rank < 2 is skipped, and so is every parameter of a module whose type name
//!   contains `Norm`. [`ParamSelection::include_biases_and_norms`] turns that off.
//! - Buffers are never penalized: BatchNorm running statistics (paths ending in `running_*`), and
//!   on an autodiff device every tensor that does not require a gradient (frozen parameters).
//!
//! Paths are the module's field names joined by `.` (Vec / array indices as numbers), e.g.
//! `features.0.conv.weight`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which parameters a penalty covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSelection {
    /// Also penalize biases and normalization parameters (rank-1 tensors and parameters of
    /// `*Norm*` modules). Default `false`.
    pub include_biases_and_norms: bool,
    /// If non-empty, only parameters under one of these path prefixes are covered (a prefix
    /// matches whole components: `fc` covers `fc.weight`, not `fc2.weight`).
    pub only: Vec<String>,
    /// Parameters under any of these path prefixes are skipped.
    pub skip: Vec<String>,
}

impl ParamSelection {
    /// The default selection: all weights of rank >= 2 outside normalization layers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every trainable parameter, biases and normalization parameters included.
    pub fn all() -> Self {
        Self { include_biases_and_norms: true, ..Self::default() }
    }

    /// Sets [`ParamSelection::include_biases_and_norms`].
    pub fn with_biases_and_norms(mut self, include: bool) -> Self {
        self.include_biases_and_norms = include;
        self
    }

    /// Restricts the selection to parameters under `prefix` (may be called several times).
    pub fn only(mut self, prefix: impl Into<String>) -> Self {
        self.only.push(prefix.into());
        self
    }

    /// Skips the parameters under `prefix` (may be called several times).
    pub fn skip(mut self, prefix: impl Into<String>) -> Self {
        self.skip.push(prefix.into());
        self
    }

    /// Whether a parameter at `path` of rank `rank`, owned by a module whose type is
    /// `owner_type` (e.g. `BatchNorm`, may be empty), is selected. Buffer and `requires_grad`
    /// checks are separate.
    pub fn selects(&self, path: &str, rank: usize, owner_type: &str) -> bool {
        let under = |prefix: &String| {
            path == prefix || (path.starts_with(prefix.as_str()) && path[prefix.len()..].starts_with('.'))
        };
        if !self.only.is_empty() && !self.only.iter().any(under) {
            return false;
        }
        if self.skip.iter().any(under) {
            return false;
        }
        if !self.include_biases_and_norms && (rank < 2 || owner_type.contains("Norm")) {
            return false;
        }
        true
    }
}

/// A parameter covered by a selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedParam {
    /// Its path, e.g. `fc.weight`.
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// The parameters of `module` that `selection` covers, in module order.
pub fn selected_params<M: Module>(module: &M, selection: &ParamSelection) -> Vec<SelectedParam> {
    let mut v = Collector::new(selection, None);
    module.visit(&mut v);
    v.selected
}

/// `sum |w|` over the selected parameters: a `[1]` tensor on the module's device (zero when
/// nothing is selected), differentiable on an autodiff device.
pub fn l1_penalty<M: Module>(module: &M, selection: &ParamSelection) -> Tensor<1> {
    penalty_sum(module, selection, Norm::L1)
}

/// `sum w²` over the selected parameters: a `[1]` tensor on the module's device (zero when
/// nothing is selected), differentiable on an autodiff device.
pub fn l2_penalty<M: Module>(module: &M, selection: &ParamSelection) -> Tensor<1> {
    penalty_sum(module, selection, Norm::L2)
}

/// An elastic-net penalty `l1 * sum |w| + l2 * sum w²` over a [`ParamSelection`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightPenalty {
    /// L1 coefficient.
    pub l1: f64,
    /// L2 coefficient (on `sum w²`, without a `1/2`).
    pub l2: f64,
    /// The parameters covered.
    pub selection: ParamSelection,
}

impl WeightPenalty {
    /// An L1 penalty with coefficient `coefficient` over the default selection.
    pub fn l1(coefficient: f64) -> Self {
        Self { l1: coefficient, ..Self::default() }
    }

    /// An L2 penalty with coefficient `coefficient` over the default selection.
    pub fn l2(coefficient: f64) -> Self {
        Self { l2: coefficient, ..Self::default() }
    }

    /// Sets the selection.
    pub fn with_selection(mut self, selection: ParamSelection) -> Self {
        self.selection = selection;
        self
    }

    /// The penalty of `module`, a `[1]` tensor on its device to add to the loss.
    pub fn penalty<M: Module>(&self, module: &M) -> Tensor<1> {
        let mut v = Collector::new(&self.selection, Some((self.l1, self.l2)));
        module.visit(&mut v);
        v.finish()
    }
}

#[derive(Clone, Copy)]
enum Norm {
    L1,
    L2,
}

fn penalty_sum<M: Module>(module: &M, selection: &ParamSelection, norm: Norm) -> Tensor<1> {
    let coefs = match norm {
        Norm::L1 => (1.0, 0.0),
        Norm::L2 => (0.0, 1.0),
    };
    let mut v = Collector::new(selection, Some(coefs));
    module.visit(&mut v);
    v.finish()
}

/// Walks a module, keeping the path and the owning module's type, and sums the penalty terms.
struct Collector<'a> {
    selection: &'a ParamSelection,
    /// `(l1, l2)` coefficients; `None` only lists the selected parameters.
    coefs: Option<(f64, f64)>,
    path: Vec<String>,
    owners: Vec<String>,
    selected: Vec<SelectedParam>,
    sum: Option<Tensor<1>>,
    device: Option<Device>,
}

impl<'a> Collector<'a> {
    fn new(selection: &'a ParamSelection, coefs: Option<(f64, f64)>) -> Self {
        Self { selection, coefs, path: Vec::new(), owners: Vec::new(), selected: Vec::new(), sum: None, device: None }
    }

    fn add(&mut self, term: Tensor<1>) {
        self.sum = Some(match self.sum.take() {
            Some(s) => s + term,
            None => term,
        });
    }

    fn finish(self) -> Tensor<1> {
        match self.sum {
            Some(s) => s,
            None => Tensor::zeros([1], &self.device.unwrap_or_default()),
        }
    }
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        // The type of the module that owns the field being entered: "Struct:BatchNorm" -> "BatchNorm".
        let owner = container_type.split_once(':').map_or(container_type, |(_, t)| t);
        self.owners.push(owner.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.owners.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if self.device.is_none() {
            self.device = Some(value.device());
        }
        let leaf = self.path.last().map(String::as_str).unwrap_or("");
        if leaf.starts_with("running_") {
            return; // BatchNorm running statistics: buffers
        }
        if value.is_autodiff() && !value.is_require_grad() {
            return; // frozen parameter or buffer on a training device
        }
        let path = self.path.join(".");
        let owner = self.owners.last().map(String::as_str).unwrap_or("");
        if !self.selection.selects(&path, D, owner) {
            return;
        }
        self.selected.push(SelectedParam { path, shape: value.dims().to_vec() });
        if let Some((l1, l2)) = self.coefs {
            if l1 != 0.0 {
                self.add(value.clone().abs().sum().mul_scalar(l1));
            }
            if l2 != 0.0 {
                self.add(value.square().sum().mul_scalar(l2));
            }
        }
    }
}
