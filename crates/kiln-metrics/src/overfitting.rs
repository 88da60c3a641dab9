//! An overfitting detector over per-epoch training and validation curves.
//!
//! The curves are losses (lower is better) or accuracies (higher is better); epochs are 0-based
//! indices into the slices. The *generalization gap* of an epoch is `val - train` for losses and
//! `train - val` for accuracies, so it is positive when the model does better on its training
//! data.
//!
//! The rules, applied in order (with `k = patience`, `d = min_delta`, and "better" / "worse" in
//! the curve's own direction):
//!
//! 1. **Validation degrades while training improves.** Let `best` be the first epoch with the best
//!    validation value. If at least `k` epochs follow it, each of the `k` epochs right after it is
//!    worse than the best by more than `d`, and the training value at `best + k` is better than at
//!    `best`, the model is overfitting and it began at epoch `best + 1` (the first epoch after
//!    which validation got worse: "the first epoch after which val loss rises for `k` epochs while
//!    train loss keeps falling"). If training got worse too, it is reported as divergence, not
//!    overfitting.
//! 2. **The gap widens while validation stalls.** If at least `k` epochs follow `best` (so
//!    validation has not improved for `k` epochs, though it may stay within `d` of its best) and
//!    the gap grew by more than `d` at every one of them, the model is overfitting from epoch
//!    `best + 1`.
//! 3. Otherwise there is no overfitting (validation is still improving, or too few epochs follow
//!    its best to tell).

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// What a curve measures, which fixes the direction of "better".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CurveKind {
    /// Lower is better (losses, error rates).
    Loss,
    /// Higher is better (accuracies, F1, mIoU).
    Accuracy,
}

impl CurveKind {
    fn noun(self) -> &'static str {
        match self {
            CurveKind::Loss => "loss",
            CurveKind::Accuracy => "accuracy",
        }
    }

    /// Maps a value to "lower is better".
    fn cost(self, v: f64) -> f64 {
        match self {
            CurveKind::Loss => v,
            CurveKind::Accuracy => -v,
        }
    }
}

/// The detector's verdict (serializable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverfittingVerdict {
    /// Whether the curves show overfitting.
    pub overfitting: bool,
    /// The first epoch of overfitting (0-based), when there is overfitting.
    pub began_at_epoch: Option<usize>,
    /// The epoch with the best validation value (the first one on ties): the checkpoint to keep.
    pub best_epoch: usize,
    /// A one-sentence explanation naming the rule and the numbers behind it.
    pub reason: String,
    /// What the curves measure.
    pub kind: CurveKind,
    /// The generalization gap per epoch (`val - train` for losses, `train - val` for accuracies).
    pub gap: Vec<f64>,
    /// The first epoch of the trailing run over which the gap grew at every epoch, if the gap
    /// grew at the last epoch.
    pub gap_growing_since: Option<usize>,
}

/// Detects overfitting from per-epoch train / validation curves; see the [module docs](self)
/// for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverfittingDetector {
    /// How many consecutive epochs must confirm a trend (`k`), at least 1. Default 3.
    pub patience: usize,
    /// Changes of at most this much count as noise (`d`). Default 0.
    pub min_delta: f64,
}

impl Default for OverfittingDetector {
    fn default() -> Self {
        Self { patience: 3, min_delta: 0.0 }
    }
}

impl OverfittingDetector {
    /// A detector with the given patience and `min_delta = 0`.
    pub fn new(patience: usize) -> Self {
        Self { patience, min_delta: 0.0 }
    }

    /// Sets the noise tolerance `min_delta`.
    pub fn with_min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// [`OverfittingDetector::check`] on loss curves.
    ///
    /// # Errors
    /// As [`OverfittingDetector::check`].
    pub fn check_losses(&self, train: &[f64], val: &[f64]) -> Result<OverfittingVerdict, MetricsError> {
        self.check(train, val, CurveKind::Loss)
    }

    /// [`OverfittingDetector::check`] on accuracy curves.
    ///
    /// # Errors
    /// As [`OverfittingDetector::check`].
    pub fn check_accuracies(&self, train: &[f64], val: &[f64]) -> Result<OverfittingVerdict, MetricsError> {
        self.check(train, val, CurveKind::Accuracy)
    }

    /// Reads the curves (one value per epoch, same length) and returns the verdict.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] for curves of different lengths, [`MetricsError::Empty`]
    /// for no epochs, [`MetricsError::InvalidArgument`] for `patience == 0`, a negative
    /// `min_delta` or a non-finite value.
    pub fn check(&self, train: &[f64], val: &[f64], kind: CurveKind) -> Result<OverfittingVerdict, MetricsError> {
        if train.len() != val.len() {
            return Err(MetricsError::LengthMismatch { what: "training curve", expected: val.len(), got: train.len() });
        }
        if val.is_empty() {
            return Err(MetricsError::Empty("no epochs"));
        }
        if self.patience == 0 || !(self.min_delta >= 0.0) {
            return Err(MetricsError::InvalidArgument(format!(
                "patience must be >= 1 and min_delta >= 0 (got {} and {})",
                self.patience, self.min_delta
            )));
        }
        if let Some(i) = train.iter().chain(val).position(|v| !v.is_finite()) {
            return Err(MetricsError::InvalidArgument(format!(
                "curve value {i} (training values first) is not finite"
            )));
        }

        let k = self.patience;
        let d = self.min_delta;
        let noun = kind.noun();
        let t: Vec<f64> = train.iter().map(|&v| kind.cost(v)).collect();
        let v: Vec<f64> = val.iter().map(|&x| kind.cost(x)).collect();
        // Gap in cost space is val - train for both kinds.
        let gap: Vec<f64> = t.iter().zip(&v).map(|(t, v)| v - t).collect();
        let n = v.len();
        let last = n - 1;

        let best = (0..n).fold(0, |b, i| if v[i] < v[b] { i } else { b });

        // Trailing run of a strictly growing gap.
        let mut run_start = last;
        while run_start > 0 && gap[run_start] > gap[run_start - 1] + d {
            run_start -= 1;
        }
        let gap_growing_since = (run_start < last).then_some(run_start);

        let verdict = |overfitting: bool, began: Option<usize>, reason: String| OverfittingVerdict {
            overfitting,
            began_at_epoch: began,
            best_epoch: best,
            reason,
            kind,
            gap: gap.clone(),
            gap_growing_since,
        };

        // Rule 1: validation degrades for k epochs after its best while training improves.
        if last - best >= k && (1..=k).all(|j| v[best + j] > v[best] + d) {
            let end = best + k;
            if t[end] < t[best] {
                return Ok(verdict(
                    true,
                    Some(best + 1),
                    format!(
                        "validation {noun} was best at epoch {best} ({:.6}) and was worse at each of \
                         the {k} epochs after it (epoch {end}: {:.6}) while training {noun} kept \
                         improving ({:.6} -> {:.6}); the gap grew from {:.6} to {:.6}",
                        val[best], val[end], train[best], train[end], gap[best], gap[end]
                    ),
                ));
            }
            return Ok(verdict(
                false,
                None,
                format!(
                    "validation {noun} got worse after epoch {best}, but training {noun} got worse \
                     too ({:.6} -> {:.6}): divergence or instability, not overfitting",
                    train[best], train[end]
                ),
            ));
        }

        // Rule 2: validation stalls after its best while the gap widens at every epoch.
        if last - best >= k && (best + 1..=last).all(|i| gap[i] > gap[i - 1] + d) {
            return Ok(verdict(
                true,
                Some(best + 1),
                format!(
                    "validation {noun} has not improved since epoch {best} ({:.6}; {:.6} at epoch \
                     {last}) while the train-validation gap grew at every epoch ({:.6} -> {:.6})",
                    val[best], val[last], gap[best], gap[last]
                ),
            ));
        }

        let reason = if best == last {
            format!("validation {noun} is still improving (best at the last epoch, {last})")
        } else if last - best < k {
            format!(
                "validation {noun} was best at epoch {best}; only {} epoch(s) follow it, fewer than \
                 the patience of {k}",
                last - best
            )
        } else {
            format!(
                "validation {noun} was best at epoch {best} but neither stayed worse by more than \
                 {d} for the {k} epochs after it nor saw the gap widen at every epoch since: a \
                 plateau or noise, not overfitting"
            )
        };
        Ok(verdict(false, None, reason))
    }
}
