//! Classification metrics: accuracy, top-k accuracy and a confusion matrix with per-class
//! precision / recall / F1.
//!
//! Conventions (scikit-learn's):
//! - [`ConfusionMatrix::counts`]`[t][p]` counts the samples of true class `t` predicted as `p`.
//! - A ratio whose denominator is zero (precision of a never-predicted class, recall of a class
//!   with no samples) is `0.0` (`zero_division=0`).
//! - Macro averages are the unweighted mean over the classes that occur in the targets or the
//!   predictions (scikit-learn's default label set); classes that never occur are left out.
//! - Top-k: a sample counts as correct when fewer than `k` classes rank above its label. Scores
//!   are ranked descending and ties go to the lower class index (a stable sort), so of two equal
//!   scores the lower class is ranked first.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::{MetricsError, read_f32, read_i64, to_classes};

/// Fraction of `predictions` equal to `targets`.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] if the slices differ in length, [`MetricsError::Empty`] if they
/// are empty.
pub fn accuracy(predictions: &[usize], targets: &[usize]) -> Result<f64, MetricsError> {
    check_pairs(predictions.len(), targets.len())?;
    let correct = predictions.iter().zip(targets).filter(|(p, t)| p == t).count();
    Ok(correct as f64 / targets.len() as f64)
}

/// The index of the largest score in each row of a row-major `[rows, num_classes]` score matrix
/// (the first one on ties; `NaN` never wins).
///
/// # Errors
/// [`MetricsError::InvalidArgument`] if `num_classes` is zero or does not divide `scores.len()`.
pub fn argmax_rows(scores: &[f32], num_classes: usize) -> Result<Vec<usize>, MetricsError> {
    check_matrix(scores.len(), num_classes)?;
    Ok(scores
        .chunks_exact(num_classes)
        .map(|row| {
            let mut best = 0;
            for (i, &s) in row.iter().enumerate() {
                if s > row[best] || (row[best].is_nan() && !s.is_nan()) {
                    best = i;
                }
            }
            best
        })
        .collect())
}

/// Top-k accuracy of a row-major `[samples, num_classes]` score matrix (logits or
/// probabilities): the fraction of samples whose label is among the `k` highest scores of its
/// row. Ties go to the lower class index (see the [module docs](self)). `k >= num_classes`
/// gives 1.
///
/// # Errors
/// [`MetricsError::InvalidArgument`] for `k == 0` or a matrix that is not `targets.len()` rows
/// of `num_classes`, [`MetricsError::LabelOutOfRange`] for a label `>= num_classes`,
/// [`MetricsError::Empty`] for no samples.
pub fn top_k_accuracy(scores: &[f32], num_classes: usize, targets: &[usize], k: usize) -> Result<f64, MetricsError> {
    if k == 0 {
        return Err(MetricsError::InvalidArgument("top-k accuracy needs k >= 1".into()));
    }
    check_matrix(scores.len(), num_classes)?;
    check_pairs(scores.len() / num_classes, targets.len())?;
    let mut correct = 0usize;
    for (row, &t) in scores.chunks_exact(num_classes).zip(targets) {
        if t >= num_classes {
            return Err(MetricsError::LabelOutOfRange { label: t as i64, num_classes });
        }
        let st = row[t];
        // Rank of the label: classes with a strictly higher score, plus lower-indexed ties.
        let rank = row.iter().enumerate().filter(|&(j, &s)| rank_above(s, st) || (j < t && s == st)).count();
        if rank < k {
            correct += 1;
        }
    }
    Ok(correct as f64 / targets.len() as f64)
}

/// Whether score `s` ranks above score `st` (`NaN` ranks below everything).
fn rank_above(s: f32, st: f32) -> bool {
    if st.is_nan() { !s.is_nan() } else { s > st }
}

/// Accuracy of Burn logits `[N, C]` (argmax over classes) against labels `[N]`.
///
/// # Errors
/// As [`accuracy`], plus [`MetricsError::LabelOutOfRange`] for a label outside `0..C` and
/// [`MetricsError::TensorRead`] if the tensors cannot be read back.
pub fn accuracy_from_logits(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> Result<f64, MetricsError> {
    let (scores, num_classes, targets) = read_logits(logits, targets)?;
    let predictions = argmax_rows(&scores, num_classes)?;
    accuracy(&predictions, &targets)
}

/// Top-k accuracy of Burn logits `[N, C]` against labels `[N]` (see [`top_k_accuracy`]).
///
/// # Errors
/// As [`top_k_accuracy`], plus [`MetricsError::TensorRead`].
pub fn top_k_accuracy_from_logits(logits: &Tensor<2>, targets: &Tensor<1, Int>, k: usize) -> Result<f64, MetricsError> {
    let (scores, num_classes, targets) = read_logits(logits, targets)?;
    top_k_accuracy(&scores, num_classes, &targets, k)
}

/// Reads logits `[N, C]` and labels `[N]` to the host, checking the labels' range.
fn read_logits(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> Result<(Vec<f32>, usize, Vec<usize>), MetricsError> {
    let [n, c] = logits.dims();
    let [nt] = targets.dims();
    check_pairs(n, nt)?;
    if c == 0 {
        return Err(MetricsError::InvalidArgument("logits have zero classes".into()));
    }
    let scores = read_f32(logits)?;
    let targets = to_classes(&read_i64(targets)?, c)?;
    Ok((scores, c, targets))
}

fn check_pairs(predictions: usize, targets: usize) -> Result<(), MetricsError> {
    if predictions != targets {
        return Err(MetricsError::LengthMismatch { what: "predictions", expected: targets, got: predictions });
    }
    if targets == 0 {
        return Err(MetricsError::Empty("no samples"));
    }
    Ok(())
}

fn check_matrix(len: usize, num_classes: usize) -> Result<(), MetricsError> {
    if num_classes == 0 || len % num_classes != 0 {
        return Err(MetricsError::InvalidArgument(format!(
            "a score matrix of {len} values is not a whole number of rows of {num_classes} classes"
        )));
    }
    Ok(())
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

fn f1_of(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) }
}

/// A confusion matrix over `num_classes` classes; `counts[t][p]` counts the samples of true class
/// `t` predicted as class `p`. Accumulates over batches ([`ConfusionMatrix::add`],
/// [`ConfusionMatrix::add_logits`], [`ConfusionMatrix::merge`]) and serializes with serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// The number of classes (rows and columns).
    pub num_classes: usize,
    /// Optional display names of the classes (used by the Markdown renderings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// `counts[true_class][predicted_class]`.
    pub counts: Vec<Vec<u64>>,
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class index.
    pub class: usize,
    /// The class name, when the matrix has names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TP / (TP + FP)`, 0 when the class is never predicted.
    pub precision: f64,
    /// `TP / (TP + FN)`, 0 when the class has no samples.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Number of samples of this class (`TP + FN`).
    pub support: u64,
}

/// Per-class metrics with their averages, as scikit-learn's `classification_report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// One row per class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// Overall accuracy (trace / total).
    pub accuracy: f64,
    /// Unweighted mean precision over the classes present in targets or predictions.
    pub macro_precision: f64,
    /// Unweighted mean recall over the classes present in targets or predictions.
    pub macro_recall: f64,
    /// Unweighted mean F1 over the classes present in targets or predictions.
    pub macro_f1: f64,
    /// Support-weighted mean F1.
    pub weighted_f1: f64,
    /// Total number of samples.
    pub total: u64,
}

impl ConfusionMatrix {
    /// An empty (all-zero) matrix.
    ///
    /// # Errors
    /// [`MetricsError::InvalidArgument`] if `num_classes` is zero.
    pub fn new(num_classes: usize) -> Result<Self, MetricsError> {
        if num_classes == 0 {
            return Err(MetricsError::InvalidArgument("a confusion matrix needs at least one class".into()));
        }
        Ok(Self { num_classes, class_names: None, counts: vec![vec![0; num_classes]; num_classes] })
    }

    /// Builds the matrix of `predictions` against `targets` (class indices).
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`], [`MetricsError::LabelOutOfRange`], or
    /// [`MetricsError::InvalidArgument`] for zero classes.
    pub fn from_predictions(
        predictions: &[usize],
        targets: &[usize],
        num_classes: usize,
    ) -> Result<Self, MetricsError> {
        let mut cm = Self::new(num_classes)?;
        cm.add(predictions, targets)?;
        Ok(cm)
    }

    /// Builds the matrix of Burn logits `[N, C]` (argmax over classes) against labels `[N]`;
    /// `num_classes` is `C`.
    ///
    /// # Errors
    /// As [`ConfusionMatrix::from_predictions`], plus [`MetricsError::TensorRead`].
    pub fn from_logits(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> Result<Self, MetricsError> {
        let mut cm = Self::new(logits.dims()[1])?;
        cm.add_logits(logits, targets)?;
        Ok(cm)
    }

    /// Sets display names for the classes (one per class).
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] if there is not exactly one name per class.
    pub fn with_class_names<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self, MetricsError> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() != self.num_classes {
            return Err(MetricsError::LengthMismatch {
                what: "class names",
                expected: self.num_classes,
                got: names.len(),
            });
        }
        self.class_names = Some(names);
        Ok(self)
    }

    /// Adds a batch of predictions / targets (class indices). Nothing is added on error.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] or [`MetricsError::LabelOutOfRange`].
    pub fn add(&mut self, predictions: &[usize], targets: &[usize]) -> Result<(), MetricsError> {
        if predictions.len() != targets.len() {
            return Err(MetricsError::LengthMismatch {
                what: "predictions",
                expected: targets.len(),
                got: predictions.len(),
            });
        }
        let n = self.num_classes;
        if let Some(&bad) = predictions.iter().chain(targets).find(|&&c| c >= n) {
            return Err(MetricsError::LabelOutOfRange { label: bad as i64, num_classes: n });
        }
        for (&p, &t) in predictions.iter().zip(targets) {
            self.counts[t][p] += 1;
        }
        Ok(())
    }

    /// Adds a batch of Burn logits `[N, C]` (argmax) against labels `[N]`; `C` must equal
    /// `num_classes`.
    ///
    /// # Errors
    /// [`MetricsError::InvalidArgument`] if `C != num_classes`, otherwise as
    /// [`ConfusionMatrix::add`] plus [`MetricsError::TensorRead`].
    pub fn add_logits(&mut self, logits: &Tensor<2>, targets: &Tensor<1, Int>) -> Result<(), MetricsError> {
        if logits.dims()[1] != self.num_classes {
            return Err(MetricsError::InvalidArgument(format!(
                "logits have {} classes, the matrix {}",
                logits.dims()[1],
                self.num_classes
            )));
        }
        let (scores, c, targets) = read_logits(logits, targets)?;
        let predictions = argmax_rows(&scores, c)?;
        self.add(&predictions, &targets)
    }

    /// Adds another matrix's counts to this one.
    ///
    /// # Errors
    /// [`MetricsError::InvalidArgument`] if the class counts differ.
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<(), MetricsError> {
        if other.num_classes != self.num_classes {
            return Err(MetricsError::InvalidArgument(format!(
                "cannot merge a {}-class matrix into a {}-class one",
                other.num_classes, self.num_classes
            )));
        }
        for (row, orow) in self.counts.iter_mut().zip(&other.counts) {
            for (c, o) in row.iter_mut().zip(orow) {
                *c += o;
            }
        }
        Ok(())
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Number of correctly classified samples (the trace).
    pub fn correct(&self) -> u64 {
        (0..self.num_classes).map(|c| self.counts[c][c]).sum()
    }

    /// Overall accuracy (0 for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// True positives of class `c`.
    pub fn true_positives(&self, c: usize) -> u64 {
        self.counts[c][c]
    }

    /// False positives of class `c`: samples of other classes predicted as `c`.
    pub fn false_positives(&self, c: usize) -> u64 {
        (0..self.num_classes).filter(|&t| t != c).map(|t| self.counts[t][c]).sum()
    }

    /// False negatives of class `c`: samples of `c` predicted as another class.
    pub fn false_negatives(&self, c: usize) -> u64 {
        (0..self.num_classes).filter(|&p| p != c).map(|p| self.counts[c][p]).sum()
    }

    /// Number of samples whose true class is `c` (row sum).
    pub fn support(&self, c: usize) -> u64 {
        self.counts[c].iter().sum()
    }

    /// Number of samples predicted as `c` (column sum).
    pub fn predicted(&self, c: usize) -> u64 {
        self.counts.iter().map(|row| row[c]).sum()
    }

    /// Precision of class `c` (0 when never predicted).
    pub fn precision(&self, c: usize) -> f64 {
        ratio(self.true_positives(c), self.predicted(c))
    }

    /// Recall of class `c` (0 when the class has no samples).
    pub fn recall(&self, c: usize) -> f64 {
        ratio(self.true_positives(c), self.support(c))
    }

    /// F1 score of class `c`.
    pub fn f1(&self, c: usize) -> f64 {
        f1_of(self.precision(c), self.recall(c))
    }

    /// Intersection over union of class `c`, `TP / (TP + FP + FN)`; `None` when the class occurs
    /// in neither targets nor predictions (the union is empty).
    pub fn iou(&self, c: usize) -> Option<f64> {
        let tp = self.true_positives(c);
        let union = tp + self.false_positives(c) + self.false_negatives(c);
        (union > 0).then(|| tp as f64 / union as f64)
    }

    /// Whether class `c` occurs in the targets or the predictions.
    pub fn is_present(&self, c: usize) -> bool {
        self.support(c) > 0 || self.predicted(c) > 0
    }

    /// Precision, recall, F1 and support of every class.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.num_classes)
            .map(|c| ClassMetrics {
                class: c,
                name: self.class_names.as_ref().map(|n| n[c].clone()),
                precision: self.precision(c),
                recall: self.recall(c),
                f1: self.f1(c),
                support: self.support(c),
            })
            .collect()
    }

    fn macro_mean(&self, f: impl Fn(usize) -> f64) -> f64 {
        let present: Vec<usize> = (0..self.num_classes).filter(|&c| self.is_present(c)).collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|&c| f(c)).sum::<f64>() / present.len() as f64
    }

    /// Macro-averaged precision (over the classes present in targets or predictions).
    pub fn macro_precision(&self) -> f64 {
        self.macro_mean(|c| self.precision(c))
    }

    /// Macro-averaged recall (over the classes present in targets or predictions).
    pub fn macro_recall(&self) -> f64 {
        self.macro_mean(|c| self.recall(c))
    }

    /// Macro-averaged F1 (the mean of per-class F1s, over the classes present in targets or
    /// predictions).
    pub fn macro_f1(&self) -> f64 {
        self.macro_mean(|c| self.f1(c))
    }

    /// Support-weighted mean F1.
    pub fn weighted_f1(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        (0..self.num_classes).map(|c| self.f1(c) * self.support(c) as f64).sum::<f64>() / total as f64
    }

    /// The full per-class report with averages.
    pub fn report(&self) -> ClassificationReport {
        ClassificationReport {
            per_class: self.per_class(),
            accuracy: self.accuracy(),
            macro_precision: self.macro_precision(),
            macro_recall: self.macro_recall(),
            macro_f1: self.macro_f1(),
            weighted_f1: self.weighted_f1(),
            total: self.total(),
        }
    }

    fn label(&self, c: usize) -> String {
        match &self.class_names {
            Some(names) => names[c].clone(),
            None => c.to_string(),
        }
    }

    /// The matrix as a Markdown table: one row per true class, one column per predicted class,
    /// with row totals (support).
    ///
    /// ```text
    /// | true \ pred | 0 | 1 | 2 | support |
    /// |---|---:|---:|---:|---:|
    /// | 0 | 2 | 1 | 0 | 3 |
    /// ```
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| true \\ pred |");
        for c in 0..self.num_classes {
            s.push_str(&format!(" {} |", self.label(c)));
        }
        s.push_str(" support |\n|---|");
        for _ in 0..=self.num_classes {
            s.push_str("---:|");
        }
        s.push('\n');
        for t in 0..self.num_classes {
            s.push_str(&format!("| {} |", self.label(t)));
            for p in 0..self.num_classes {
                s.push_str(&format!(" {} |", self.counts[t][p]));
            }
            s.push_str(&format!(" {} |\n", self.support(t)));
        }
        s
    }
}

impl ClassificationReport {
    /// The report as a Markdown table (precision / recall / F1 / support per class, then
    /// accuracy and the averages), numbers with 4 decimals.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| class | precision | recall | f1 | support |\n|---|---:|---:|---:|---:|\n");
        for m in &self.per_class {
            let name = m.name.clone().unwrap_or_else(|| m.class.to_string());
            s.push_str(&format!("| {} | {:.4} | {:.4} | {:.4} | {} |\n", name, m.precision, m.recall, m.f1, m.support));
        }
        s.push_str(&format!("| accuracy | | | {:.4} | {} |\n", self.accuracy, self.total));
        s.push_str(&format!(
            "| macro avg | {:.4} | {:.4} | {:.4} | {} |\n",
            self.macro_precision, self.macro_recall, self.macro_f1, self.total
        ));
        s.push_str(&format!("| weighted avg | | | {:.4} | {} |\n", self.weighted_f1, self.total));
        s
    }
}
