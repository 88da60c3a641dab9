//! Activation sparsity: the fraction of exact zeros in activations, per layer.
//!
//! After a ReLU this is the fraction of inactive units; a layer near 1.0 is mostly dead. Zeros are
//! counted on the device (`x == 0`, which includes `-0.0`); only the count is read back.
//! Activations are usually captured in a model's `forward` (or a copy of it) and handed over as
//! `(layer name, tensor)` pairs.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Zero count of one layer's activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// Layer name as given.
    pub name: String,
    /// Number of exact zeros.
    pub zeros: u64,
    /// Number of elements.
    pub total: u64,
    /// `zeros / total` (0 for no elements).
    pub sparsity: f64,
}

/// Sparsity per layer and overall (serializable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    /// One row per layer name, in first-seen order.
    pub layers: Vec<LayerSparsity>,
    /// Zeros over elements, all layers together.
    pub overall: f64,
}

impl SparsityReport {
    /// The row of layer `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerSparsity> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Layers whose sparsity is at least `threshold` (e.g. `0.99` for nearly dead layers).
    pub fn at_least(&self, threshold: f64) -> Vec<&str> {
        self.layers.iter().filter(|l| l.sparsity >= threshold).map(|l| l.name.as_str()).collect()
    }

    /// The report as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| layer | zeros | elements | sparsity |\n|---|---:|---:|---:|\n");
        for l in &self.layers {
            s.push_str(&format!("| {} | {} | {} | {:.4} |\n", l.name, l.zeros, l.total, l.sparsity));
        }
        s.push_str(&format!("| overall | | | {:.4} |\n", self.overall));
        s
    }
}

/// Number of exact zeros in `tensor` (counted on its device).
fn count_zeros<const D: usize>(tensor: &Tensor<D>) -> Result<u64, MetricsError> {
    if tensor.shape().num_elements() == 0 {
        return Ok(0);
    }
    let zeros = tensor
        .clone()
        .equal_elem(0.0f32)
        .int()
        .sum()
        .try_into_scalar::<i64>()
        .map_err(|e| MetricsError::TensorRead(e.to_string()))?;
    Ok(zeros as u64)
}

/// Fraction of exact zeros in one tensor (0 for an empty tensor).
///
/// # Errors
/// [`MetricsError::TensorRead`] if the count cannot be read back.
pub fn zero_fraction<const D: usize>(tensor: &Tensor<D>) -> Result<f64, MetricsError> {
    let total = tensor.shape().num_elements() as u64;
    let zeros = count_zeros(tensor)?;
    Ok(if total == 0 { 0.0 } else { zeros as f64 / total as f64 })
}

/// Sparsity of `(layer name, activation)` pairs; pairs sharing a name are pooled.
///
/// # Errors
/// [`MetricsError::TensorRead`] if a count cannot be read back.
pub fn activation_sparsity<const D: usize, S: Into<String>>(
    activations: impl IntoIterator<Item = (S, Tensor<D>)>,
) -> Result<SparsityReport, MetricsError> {
    let mut tracker = SparsityTracker::new();
    for (name, tensor) in activations {
        tracker.record(name, &tensor)?;
    }
    Ok(tracker.report())
}

/// Accumulates zero counts per layer over many batches (and tensors of any rank).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparsityTracker {
    layers: Vec<LayerSparsity>,
}

impl SparsityTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one activation tensor of layer `name`.
    ///
    /// # Errors
    /// [`MetricsError::TensorRead`] if the count cannot be read back.
    pub fn record<const D: usize>(
        &mut self,
        name: impl Into<String>,
        activation: &Tensor<D>,
    ) -> Result<(), MetricsError> {
        let name = name.into();
        let zeros = count_zeros(activation)?;
        let total = activation.shape().num_elements() as u64;
        let row = match self.layers.iter().position(|l| l.name == name) {
            Some(i) => &mut self.layers[i],
            None => {
                self.layers.push(LayerSparsity { name, zeros: 0, total: 0, sparsity: 0.0 });
                self.layers.last_mut().expect("just pushed")
            }
        };
        row.zeros += zeros;
        row.total += total;
        row.sparsity = if row.total == 0 { 0.0 } else { row.zeros as f64 / row.total as f64 };
        Ok(())
    }

    /// The report of everything recorded so far.
    pub fn report(&self) -> SparsityReport {
        let zeros: u64 = self.layers.iter().map(|l| l.zeros).sum();
        let total: u64 = self.layers.iter().map(|l| l.total).sum();
        SparsityReport {
            layers: self.layers.clone(),
            overall: if total == 0 { 0.0 } else { zeros as f64 / total as f64 },
        }
    }

    /// Forgets everything recorded.
    pub fn reset(&mut self) {
        self.layers.clear();
    }
}
