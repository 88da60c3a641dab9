//! Early stopping on a monitored metric, as a small serializable state machine (the library form
//! of Keras' / Lightning's `EarlyStopping`; a Burn trainer can also use burn-train's own).
//!
//! Feed it one value per epoch with [`EarlyStopping::step`]. A value *improves* on the best so
//! far when it is lower by more than `min_delta` ([`Mode::Min`], losses) or higher by more than
//! `min_delta` ([`Mode::Max`], accuracies); the first finite value always improves. After
//! `patience` consecutive epochs without improvement, it says stop. `NaN` never improves.
//! Epochs are counted from 0 in the order of the `step` calls.

use serde::{Deserialize, Serialize};

/// Whether lower or higher values of the metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
}

/// What [`EarlyStopping::step`] decided for an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum StopDecision {
    /// The metric improved: this epoch is the new best (save a checkpoint).
    Improved,
    /// No improvement, but fewer than `patience` epochs in a row: keep training.
    Wait {
        /// Consecutive epochs without improvement, this one included.
        bad_epochs: usize,
    },
    /// Stop training (returned again for every later step).
    Stop {
        /// The best epoch (0-based).
        best_epoch: usize,
        /// The best value.
        best: f64,
    },
}

impl StopDecision {
    /// Whether training should stop.
    pub fn should_stop(&self) -> bool {
        matches!(self, StopDecision::Stop { .. })
    }
}

/// Early-stopping state; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Direction of improvement.
    pub mode: Mode,
    /// Epochs without improvement tolerated before stopping.
    pub patience: usize,
    /// Minimum change that counts as an improvement (>= 0).
    pub min_delta: f64,
    best: Option<f64>,
    best_epoch: Option<usize>,
    epochs: usize,
    bad_epochs: usize,
    stopped_at: Option<usize>,
}

impl EarlyStopping {
    /// A fresh tracker with `min_delta = 0`.
    pub fn new(mode: Mode, patience: usize) -> Self {
        Self {
            mode,
            patience,
            min_delta: 0.0,
            best: None,
            best_epoch: None,
            epochs: 0,
            bad_epochs: 0,
            stopped_at: None,
        }
    }

    /// Sets `min_delta` (its absolute value is used).
    pub fn with_min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta.abs();
        self
    }

    /// Whether `value` improves on the current best.
    pub fn improves(&self, value: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match self.best {
            None => true,
            Some(best) => match self.mode {
                Mode::Min => value < best - self.min_delta,
                Mode::Max => value > best + self.min_delta,
            },
        }
    }

    /// Records the metric of the next epoch and says whether to stop.
    pub fn step(&mut self, value: f64) -> StopDecision {
        let epoch = self.epochs;
        self.epochs += 1;
        if let Some(decision) = self.stop_decision() {
            return decision;
        }
        if self.improves(value) {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.bad_epochs = 0;
            return StopDecision::Improved;
        }
        self.bad_epochs += 1;
        if self.bad_epochs >= self.patience {
            self.stopped_at = Some(epoch);
            return self.stop_decision().unwrap_or(StopDecision::Wait { bad_epochs: self.bad_epochs });
        }
        StopDecision::Wait { bad_epochs: self.bad_epochs }
    }

    fn stop_decision(&self) -> Option<StopDecision> {
        self.stopped_at?;
        Some(StopDecision::Stop { best_epoch: self.best_epoch.unwrap_or(0), best: self.best.unwrap_or(f64::NAN) })
    }

    /// Whether a stop has been decided.
    pub fn should_stop(&self) -> bool {
        self.stopped_at.is_some()
    }

    /// The epoch at which the stop was decided.
    pub fn stopped_at(&self) -> Option<usize> {
        self.stopped_at
    }

    /// The best value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// The epoch of the best value (0-based).
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// Consecutive epochs without improvement.
    pub fn bad_epochs(&self) -> usize {
        self.bad_epochs
    }

    /// Number of epochs seen.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Forgets all history, keeping the settings.
    pub fn reset(&mut self) {
        *self = Self {
            mode: self.mode,
            patience: self.patience,
            min_delta: self.min_delta,
            ..Self::new(self.mode, self.patience)
        };
    }
}
