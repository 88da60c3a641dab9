//! Regression metrics: MSE, RMSE, MAE and the coefficient of determination R².
//!
//! All sums are accumulated in `f64`. Multi-dimensional inputs are flattened: R² is computed over
//! all elements against their single overall mean (not scikit-learn's per-output average).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{MetricsError, read_f32};

/// MSE, RMSE, MAE and R² of one prediction / target pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination, `1 - SS_res / SS_tot`. For a constant target (`SS_tot = 0`)
    /// it is 1 when the prediction is perfect and 0 otherwise (scikit-learn's `force_finite`).
    pub r2: f64,
    /// Number of elements.
    pub count: usize,
}

fn check(prediction: &[f32], target: &[f32]) -> Result<(), MetricsError> {
    if prediction.len() != target.len() {
        return Err(MetricsError::LengthMismatch { what: "prediction", expected: target.len(), got: prediction.len() });
    }
    if target.is_empty() {
        return Err(MetricsError::Empty("no elements"));
    }
    Ok(())
}

/// Mean squared error.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] or [`MetricsError::Empty`].
pub fn mse(prediction: &[f32], target: &[f32]) -> Result<f64, MetricsError> {
    check(prediction, target)?;
    let sum: f64 = prediction.iter().zip(target).map(|(&p, &t)| (p as f64 - t as f64).powi(2)).sum();
    Ok(sum / target.len() as f64)
}

/// Mean absolute error.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] or [`MetricsError::Empty`].
pub fn mae(prediction: &[f32], target: &[f32]) -> Result<f64, MetricsError> {
    check(prediction, target)?;
    let sum: f64 = prediction.iter().zip(target).map(|(&p, &t)| (p as f64 - t as f64).abs()).sum();
    Ok(sum / target.len() as f64)
}

/// Coefficient of determination `R² = 1 - SS_res / SS_tot` (see [`RegressionMetrics::r2`] for a
/// constant target).
///
/// # Errors
/// [`MetricsError::LengthMismatch`] or [`MetricsError::Empty`].
pub fn r2_score(prediction: &[f32], target: &[f32]) -> Result<f64, MetricsError> {
    check(prediction, target)?;
    let n = target.len() as f64;
    let mean = target.iter().map(|&t| t as f64).sum::<f64>() / n;
    let ss_tot: f64 = target.iter().map(|&t| (t as f64 - mean).powi(2)).sum();
    let ss_res: f64 = prediction.iter().zip(target).map(|(&p, &t)| (t as f64 - p as f64).powi(2)).sum();
    Ok(if ss_tot == 0.0 { if ss_res == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - ss_res / ss_tot })
}

/// MSE, RMSE, MAE and R² at once.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] or [`MetricsError::Empty`].
pub fn regression_metrics(prediction: &[f32], target: &[f32]) -> Result<RegressionMetrics, MetricsError> {
    let mse = mse(prediction, target)?;
    Ok(RegressionMetrics {
        mse,
        rmse: mse.sqrt(),
        mae: mae(prediction, target)?,
        r2: r2_score(prediction, target)?,
        count: target.len(),
    })
}

/// [`regression_metrics`] of two Burn tensors of the same shape (read back to the host).
///
/// # Errors
/// [`MetricsError::LengthMismatch`] if the shapes' element counts differ, [`MetricsError::Empty`],
/// or [`MetricsError::TensorRead`].
pub fn regression_metrics_from_tensors<const D: usize>(
    prediction: &Tensor<D>,
    target: &Tensor<D>,
) -> Result<RegressionMetrics, MetricsError> {
    if prediction.dims() != target.dims() {
        return Err(MetricsError::InvalidArgument(format!(
            "prediction shape {:?} differs from target shape {:?}",
            prediction.dims(),
            target.dims()
        )));
    }
    regression_metrics(&read_f32(prediction)?, &read_f32(target)?)
}
