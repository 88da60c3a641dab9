//! A per-parameter and per-layer gradient-norm monitor that flags vanishing and exploding layers.
//!
//! The monitor walks a Burn module with a [`ModuleVisitor`], names every float parameter by its
//! module path (`features.0.conv.weight`, the field names joined by `.`, Vec / array indices as
//! numbers), looks its gradient up through a [`GradientLookup`], and reports the L2 norm of each
//! parameter's gradient and of each layer's (the parameters sharing a parent path:
//! `sqrt(sum of their squared norms)`).
//!
//! Reading gradients needs Burn's `autodiff` (or `optim`) feature, which this crate does not turn
//! on; the caller, who has it, adapts its gradient container in a few lines:
//!
//! ```rust,ignore
//! use burn::module::ParamId;
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Gradients, Tensor};
//! use kiln_metrics::{GradNormMonitor, GradientLookup};
//!
//! /// Gradients straight from `loss.backward()`.
//! struct Backward<'a>(&'a Gradients);
//! impl GradientLookup for Backward<'_> {
//!     fn grad<const D: usize>(&self, _id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>> {
//!         param.grad(self.0)
//!     }
//! }
//!
//! /// Gradients keyed by parameter id, as optimizers take them.
//! struct ByParamId<'a>(&'a GradientsParams);
//! impl GradientLookup for ByParamId<'_> {
//!     fn grad<const D: usize>(&self, id: ParamId, _param: &Tensor<D>) -> Option<Tensor<D>> {
//!         self.0.get::<D>(id)
//!     }
//! }
//!
//! let grads = loss.backward();
//! let report = GradNormMonitor::default().report(&model, &Backward(&grads))?;
//! for layer in &report.vanishing { eprintln!("vanishing gradient in {layer}"); }
//! ```
//!
//! Only trainable parameters are reported: a tensor that does not require a gradient (BatchNorm
//! running statistics, frozen parameters) and has none is skipped; a trainable one without a
//! gradient (not reached by the loss) is reported with [`GradFlag::Missing`].

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Where the monitor gets a parameter's gradient from. Implement it for a newtype around Burn's
/// autodiff `Gradients` (`param.grad(&grads)`) or burn-optim's `GradientsParams`
/// (`grads.get::<D>(id)`); see the [module docs](self).
pub trait GradientLookup {
    /// The gradient of the parameter `id` whose current value is `param`, or `None` if it has
    /// none. The returned tensor must have `param`'s shape.
    fn grad<const D: usize>(&self, id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>>;
}

/// The state of a gradient norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GradFlag {
    /// Between the two thresholds.
    Ok,
    /// Below the vanishing threshold (including exactly zero).
    Vanishing,
    /// Above the exploding threshold.
    Exploding,
    /// `NaN` or infinite.
    NonFinite,
    /// A trainable parameter without a gradient (not reached by the loss).
    Missing,
}

/// The gradient norm of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamGradNorm {
    /// Full path, e.g. `fc.weight`.
    pub name: String,
    /// The layer it belongs to: the path without its last component (empty for a parameter at the
    /// root of the module).
    pub layer: String,
    /// The parameter's shape.
    pub shape: Vec<usize>,
    /// L2 norm of the gradient; `None` when the gradient is missing.
    pub norm: Option<f64>,
    /// The norm's state.
    pub flag: GradFlag,
}

/// The gradient norm of one layer (all parameters sharing a parent path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerGradNorm {
    /// Layer path, e.g. `features.0.conv`.
    pub layer: String,
    /// Names of its parameters.
    pub params: Vec<String>,
    /// `sqrt(sum of squared parameter norms)` over the parameters that have a gradient; `None`
    /// when none has.
    pub norm: Option<f64>,
    /// The norm's state.
    pub flag: GradFlag,
}

/// The monitor's report (serializable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradNormReport {
    /// One row per trainable parameter, in module order.
    pub params: Vec<ParamGradNorm>,
    /// One row per layer, in module order.
    pub layers: Vec<LayerGradNorm>,
    /// L2 norm of all gradients together (what gradient clipping by norm measures).
    pub total_norm: f64,
    /// Layers flagged [`GradFlag::Vanishing`].
    pub vanishing: Vec<String>,
    /// Layers flagged [`GradFlag::Exploding`].
    pub exploding: Vec<String>,
    /// Layers flagged [`GradFlag::NonFinite`].
    pub non_finite: Vec<String>,
    /// Layers flagged [`GradFlag::Missing`].
    pub missing: Vec<String>,
    /// The vanishing threshold used.
    pub vanishing_threshold: f64,
    /// The exploding threshold used.
    pub exploding_threshold: f64,
}

impl GradNormReport {
    /// The row of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&ParamGradNorm> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The row of layer `layer`.
    pub fn layer(&self, layer: &str) -> Option<&LayerGradNorm> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// Whether any layer is vanishing, exploding, non-finite or missing its gradient.
    pub fn has_problems(&self) -> bool {
        self.layers.iter().any(|l| l.flag != GradFlag::Ok)
    }

    /// The per-layer norms as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| layer | grad L2 norm | flag |\n|---|---:|---|\n");
        for l in &self.layers {
            let norm = l.norm.map_or_else(|| "-".to_string(), |v| format!("{v:.4e}"));
            s.push_str(&format!("| {} | {} | {:?} |\n", l.layer, norm, l.flag));
        }
        s.push_str(&format!("| total | {:.4e} | |\n", self.total_norm));
        s
    }
}

/// Computes gradient norms and flags layers; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradNormMonitor {
    /// Norms strictly below this are vanishing. Default `1e-7`.
    pub vanishing_threshold: f64,
    /// Norms strictly above this are exploding. Default `1e3`.
    pub exploding_threshold: f64,
}

impl Default for GradNormMonitor {
    fn default() -> Self {
        Self { vanishing_threshold: 1e-7, exploding_threshold: 1e3 }
    }
}

impl GradNormMonitor {
    /// A monitor with the given thresholds.
    pub fn new(vanishing_threshold: f64, exploding_threshold: f64) -> Self {
        Self { vanishing_threshold, exploding_threshold }
    }

    /// The flag of a norm under these thresholds.
    pub fn classify(&self, norm: Option<f64>) -> GradFlag {
        match norm {
            None => GradFlag::Missing,
            Some(v) if !v.is_finite() => GradFlag::NonFinite,
            Some(v) if v < self.vanishing_threshold => GradFlag::Vanishing,
            Some(v) if v > self.exploding_threshold => GradFlag::Exploding,
            Some(_) => GradFlag::Ok,
        }
    }

    /// Walks `module`, looks up each trainable parameter's gradient in `grads` and builds the
    /// report.
    ///
    /// # Errors
    /// [`MetricsError::TensorRead`] if a norm cannot be read back from the device.
    pub fn report<M: Module, G: GradientLookup>(&self, module: &M, grads: &G) -> Result<GradNormReport, MetricsError> {
        let mut visitor = NormVisitor { grads, path: Vec::new(), rows: Vec::new(), error: None };
        module.visit(&mut visitor);
        if let Some(e) = visitor.error {
            return Err(e);
        }
        let rows = visitor.rows;
        Ok(self.report_from_norms(rows.into_iter().map(|(name, shape, sq)| (name, shape, sq.map(f64::sqrt)))))
    }

    /// Builds a report from norms computed elsewhere: `(parameter path, shape, L2 norm or None
    /// when missing)`, in module order. Layers are the paths without their last `.` component.
    pub fn report_from_norms(
        &self,
        norms: impl IntoIterator<Item = (String, Vec<usize>, Option<f64>)>,
    ) -> GradNormReport {
        let mut params = Vec::new();
        let mut layers: Vec<(String, Vec<String>, Option<f64>)> = Vec::new();
        let mut total_sq = 0.0;
        for (name, shape, norm) in norms {
            let layer = match name.rfind('.') {
                Some(i) => name[..i].to_string(),
                None => String::new(),
            };
            let idx = match layers.iter().position(|(l, _, _)| *l == layer) {
                Some(i) => i,
                None => {
                    layers.push((layer.clone(), Vec::new(), None));
                    layers.len() - 1
                }
            };
            let entry = &mut layers[idx];
            entry.1.push(name.clone());
            if let Some(v) = norm {
                entry.2 = Some(entry.2.unwrap_or(0.0) + v * v);
                total_sq += v * v;
            }
            params.push(ParamGradNorm { name, layer, shape, norm, flag: self.classify(norm) });
        }
        let layers: Vec<LayerGradNorm> = layers
            .into_iter()
            .map(|(layer, names, sq)| {
                let norm = sq.map(f64::sqrt);
                LayerGradNorm { layer, params: names, norm, flag: self.classify(norm) }
            })
            .collect();
        let with = |flag: GradFlag| -> Vec<String> {
            layers.iter().filter(|l| l.flag == flag).map(|l| l.layer.clone()).collect()
        };
        GradNormReport {
            vanishing: with(GradFlag::Vanishing),
            exploding: with(GradFlag::Exploding),
            non_finite: with(GradFlag::NonFinite),
            missing: with(GradFlag::Missing),
            params,
            layers,
            total_norm: total_sq.sqrt(),
            vanishing_threshold: self.vanishing_threshold,
            exploding_threshold: self.exploding_threshold,
        }
    }
}

/// Collects `(path, shape, squared gradient norm)` per trainable float parameter.
struct NormVisitor<'a, G> {
    grads: &'a G,
    path: Vec<String>,
    rows: Vec<(String, Vec<usize>, Option<f64>)>,
    error: Option<MetricsError>,
}

impl<G: GradientLookup> ModuleVisitor for NormVisitor<'_, G> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let value = param.val();
        let grad = self.grads.grad(param.id, &value);
        if grad.is_none() && !value.is_require_grad() {
            return; // a buffer or a frozen parameter
        }
        let sq = match grad {
            None => None,
            Some(g) => match g.square().sum().try_into_scalar::<f64>() {
                Ok(v) => Some(v),
                Err(e) => {
                    self.error = Some(MetricsError::TensorRead(e.to_string()));
                    return;
                }
            },
        };
        self.rows.push((self.path.join("."), value.dims().to_vec(), sq));
    }
}
