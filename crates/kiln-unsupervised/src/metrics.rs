//! External clustering metrics: how well cluster ids agree with known labels.
//!
//! - [`purity`]: the fraction of samples whose cluster's majority label is their own label.
//! - [`nmi`]: normalized mutual information, `I(U; V) / ((H(U) + H(V)) / 2)` — scikit-learn's
//!   `normalized_mutual_info_score` with its default `average_method="arithmetic"`.
//! - [`adjusted_rand_index`]: scikit-learn's `adjusted_rand_score`.
//!
//! Cluster ids and labels are any `usize` values (they need not be contiguous).

use std::collections::HashMap;

use crate::error::{Result, UnsupervisedError};

/// The contingency table of two labelings: `table[i][j]` = number of samples in cluster
/// `clusters[i]` with label `labels[j]` (both sorted ascending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contingency {
    /// Distinct cluster ids, ascending (rows).
    pub clusters: Vec<usize>,
    /// Distinct labels, ascending (columns).
    pub labels: Vec<usize>,
    /// Counts, `clusters.len()` rows of `labels.len()`.
    pub table: Vec<Vec<usize>>,
    /// Number of samples.
    pub n: usize,
}

impl Contingency {
    /// Builds the table. Errors when the lengths differ or the inputs are empty.
    pub fn new(assignments: &[usize], labels: &[usize]) -> Result<Self> {
        if assignments.len() != labels.len() {
            return Err(UnsupervisedError::InvalidInput(format!(
                "{} cluster assignments but {} labels: give one label per clustered sample",
                assignments.len(),
                labels.len()
            )));
        }
        if assignments.is_empty() {
            return Err(UnsupervisedError::InvalidInput("no samples: the metrics need at least one".into()));
        }
        let index = |v: &[usize]| {
            let mut d: Vec<usize> = v.to_vec();
            d.sort_unstable();
            d.dedup();
            let m: HashMap<usize, usize> = d.iter().enumerate().map(|(i, &x)| (x, i)).collect();
            (d, m)
        };
        let (clusters, ci) = index(assignments);
        let (labs, li) = index(labels);
        let mut table = vec![vec![0usize; labs.len()]; clusters.len()];
        for (a, l) in assignments.iter().zip(labels) {
            table[ci[a]][li[l]] += 1;
        }
        Ok(Self { clusters, labels: labs, table, n: assignments.len() })
    }

    fn row_sums(&self) -> Vec<usize> {
        self.table.iter().map(|r| r.iter().sum()).collect()
    }

    fn col_sums(&self) -> Vec<usize> {
        (0..self.labels.len()).map(|j| self.table.iter().map(|r| r[j]).sum()).collect()
    }
}

fn entropy(counts: &[usize], n: usize) -> f64 {
    let n = n as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.ln()).sum()
}

/// Purity: `(1/n) Σ_clusters max_label |cluster ∩ label|`, in `(0, 1]`.
pub fn purity(assignments: &[usize], labels: &[usize]) -> Result<f64> {
    let c = Contingency::new(assignments, labels)?;
    let hit: usize = c.table.iter().map(|r| r.iter().copied().max().unwrap_or(0)).sum();
    Ok(hit as f64 / c.n as f64)
}

/// Mutual information `I(U; V)` in nats.
pub fn mutual_information(assignments: &[usize], labels: &[usize]) -> Result<f64> {
    let c = Contingency::new(assignments, labels)?;
    Ok(mi_of(&c))
}

fn mi_of(c: &Contingency) -> f64 {
    let (a, b, n) = (c.row_sums(), c.col_sums(), c.n as f64);
    let mut mi = 0.0;
    for (i, row) in c.table.iter().enumerate() {
        for (j, &nij) in row.iter().enumerate() {
            if nij > 0 {
                let p = nij as f64 / n;
                mi += p * (nij as f64 * n / (a[i] as f64 * b[j] as f64)).ln();
            }
        }
    }
    mi.max(0.0)
}

/// Normalized mutual information with the arithmetic mean of the entropies
/// (`sklearn.metrics.normalized_mutual_info_score`, default settings). 1 when both labelings
/// have a single class (scikit-learn's convention).
pub fn nmi(assignments: &[usize], labels: &[usize]) -> Result<f64> {
    let c = Contingency::new(assignments, labels)?;
    if c.clusters.len() == 1 && c.labels.len() == 1 {
        return Ok(1.0);
    }
    let mi = mi_of(&c);
    let hu = entropy(&c.row_sums(), c.n);
    let hv = entropy(&c.col_sums(), c.n);
    let norm = ((hu + hv) / 2.0).max(f64::EPSILON);
    Ok(mi / norm)
}

/// Adjusted Rand index (`sklearn.metrics.adjusted_rand_score`): 1 for identical partitions,
/// about 0 for random ones.
pub fn adjusted_rand_index(assignments: &[usize], labels: &[usize]) -> Result<f64> {
    let c = Contingency::new(assignments, labels)?;
    let comb2 = |x: usize| (x as f64) * (x as f64 - 1.0) / 2.0;
    let sum_ij: f64 = c.table.iter().flatten().map(|&x| comb2(x)).sum();
    let sum_a: f64 = c.row_sums().into_iter().map(comb2).sum();
    let sum_b: f64 = c.col_sums().into_iter().map(comb2).sum();
    let total = comb2(c.n);
    let expected = if total > 0.0 { sum_a * sum_b / total } else { 0.0 };
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < f64::EPSILON {
        // Both partitions trivial (all in one cluster, or all singletons): identical by convention.
        return Ok(1.0);
    }
    Ok((sum_ij - expected) / (max - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purity_by_hand() {
        // Clusters {0: a a b}, {1: b b c c}, {2: c}: majorities 2 + 2 + 1 = 5 of 8.
        let assign = [0, 0, 0, 1, 1, 1, 1, 2];
        let labels = [7, 7, 8, 8, 8, 9, 9, 9];
        assert!((purity(&assign, &labels).unwrap() - 5.0 / 8.0).abs() < 1e-12);
        assert_eq!(purity(&[3, 3], &[1, 1]).unwrap(), 1.0);
    }

    #[test]
    fn nmi_and_ari_match_scikit_learn() {
        // sklearn 1.9.1: normalized_mutual_info_score(labels, assign), adjusted_rand_score.
        let (assign, labels) = ([0, 0, 0, 1, 1, 1, 1, 2], [7, 7, 8, 8, 8, 9, 9, 9]);
        assert!((nmi(&assign, &labels).unwrap() - 0.4832741472564202).abs() < 1e-12);
        assert!((adjusted_rand_index(&assign, &labels).unwrap() - 0.13043478260869565).abs() < 1e-12);
        let (assign, labels) = ([0, 0, 1, 1, 2, 2, 2, 0, 1, 2], [1, 1, 1, 0, 0, 0, 2, 2, 2, 2]);
        assert!((nmi(&assign, &labels).unwrap() - 0.26733692039994567).abs() < 1e-12);
        assert!((adjusted_rand_index(&assign, &labels).unwrap() - -0.022727272727272728).abs() < 1e-12);
        // Symmetric, invariant to renaming, 1 for identical partitions, 0 for independent ones.
        assert!((nmi(&labels, &assign).unwrap() - 0.26733692039994567).abs() < 1e-12);
        assert!((nmi(&[5, 5, 9, 9], &[0, 0, 1, 1]).unwrap() - 1.0).abs() < 1e-12);
        assert!(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap().abs() < 1e-12);
        assert_eq!(nmi(&[4, 4, 4], &[1, 1, 1]).unwrap(), 1.0);
        assert_eq!(nmi(&[0, 1, 2], &[1, 1, 1]).unwrap(), 0.0);
        // By hand: MI of two identical balanced binary partitions is ln 2.
        assert!((mutual_information(&[0, 0, 1, 1], &[3, 3, 4, 4]).unwrap() - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn length_mismatch_and_empty_are_errors() {
        let e = purity(&[0, 1], &[0]).unwrap_err().to_string();
        assert!(e.contains("2 cluster assignments but 1 labels"), "{e}");
        assert!(nmi(&[], &[]).unwrap_err().to_string().contains("no samples"));
    }
}
