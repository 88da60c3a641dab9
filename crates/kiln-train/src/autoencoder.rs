//! What a reconstruction run adds to its outputs: a picture of test images beside their
//! reconstructions (`reconstructions.png`) and a k-means clustering of the encoder's codes
//! against the labels (how much class structure the code holds).

use std::path::Path;

use burn::tensor::{Device, Tensor};
use kiln_data::ImageDataset;
use kiln_models::{Hooks, ZooModel};
use kiln_unsupervised::kmeans::{ClusterReport, KMeansConfig};

use crate::TrainError;
use crate::data::{InputAdapter, for_each_batch};
use crate::model::AnyModel;

/// The encoder's codes of a whole split, `[N, code]`, when the model is an autoencoder with an
/// encoder (its `Hooks::encode`: `conv_autoencoder`, `dense_autoencoder`).
pub fn encode_split(
    model: &AnyModel,
    data: &ImageDataset,
    adapter: &InputAdapter,
    device: &Device,
) -> Option<Tensor<2>> {
    let mut codes = Vec::new();
    let mut supported = true;
    for_each_batch(model, data, adapter, 256, device, |m, x, _, _| match m.encode(x) {
        Some(code) => codes.push(code),
        None => supported = false,
    });
    (supported && !codes.is_empty()).then(|| Tensor::cat(codes, 0))
}

/// Clusters the test split's codes with k-means (k = number of classes, 5 restarts) and scores
/// the clusters against the labels.
pub fn cluster_codes(
    model: &AnyModel,
    data: &ImageDataset,
    adapter: &InputAdapter,
    seed: u64,
    device: &Device,
) -> Result<Option<ClusterReport>, TrainError> {
    let k = data.num_classes().max(2);
    // A clustering of the test codes is an extra of the report: a test split too small for k
    // clusters (or of one class) gets none, rather than failing a run that has trained.
    if data.len() < k || data.num_classes() < 2 {
        return Ok(None);
    }
    let Some(codes) = encode_split(model, data, adapter, device) else { return Ok(None) };
    let fit = KMeansConfig::new(k)
        .with_restarts(5)
        .with_seed(seed)
        .fit(codes)
        .map_err(|e| TrainError::Mismatch(format!("k-means on the codes: {e}")))?;
    let report = fit.report(Some(data.labels())).map_err(|e| TrainError::Mismatch(format!("k-means report: {e}")))?;
    Ok(Some(report))
}

/// Writes `reconstructions.png`: `count` test images (top row of each pair) above their
/// reconstructions, for 1-channel models whose output is in `[0, 1]`.
pub fn save_reconstructions(
    path: &Path,
    model: &AnyModel,
    data: &ImageDataset,
    adapter: &InputAdapter,
    count: usize,
    device: &Device,
) -> Result<(), TrainError> {
    let [c, h, w] = adapter.model_shape;
    if c != 1 {
        return Ok(());
    }
    let n = count.min(data.len());
    let idx: Vec<usize> = (0..n).collect();
    let sub = data.subset(&idx)?;
    let mut originals = Vec::new();
    let mut recons = Vec::new();
    for_each_batch(model, &sub, adapter, n, device, |m, x, _, _| {
        let rec = match m.forward(x.clone()) {
            kiln_models::Output::Map(r) => r,
            kiln_models::Output::Logits(_) => return,
        };
        let to_vec = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        let (xs, rs) = (to_vec(x), to_vec(rec));
        for i in 0..n {
            originals.push(xs[i * h * w..(i + 1) * h * w].to_vec());
            recons.push(rs[i * h * w..(i + 1) * h * w].iter().map(|v| v.clamp(0.0, 1.0)).collect());
        }
    });
    if originals.is_empty() {
        return Ok(());
    }
    // Rows of `cols` originals, each followed by the row of their reconstructions.
    let cols = 8.min(n);
    let mut grid = Vec::new();
    for start in (0..n).step_by(cols) {
        let end = (start + cols).min(n);
        let pad = |v: &mut Vec<Vec<f32>>| v.extend(std::iter::repeat_n(vec![0.0; h * w], cols - (end - start)));
        let mut row: Vec<Vec<f32>> = originals[start..end].to_vec();
        pad(&mut row);
        grid.extend(row);
        let mut row: Vec<Vec<f32>> = recons[start..end].to_vec();
        pad(&mut row);
        grid.extend(row);
    }
    kiln_unsupervised::picture::save_grid_png(path, &grid, h, w, cols, 3).map_err(|e| TrainError::io(path, e))
}
