//! int8 post-training quantization.
//!
//! - **Weights** of every convolution and linear layer: symmetric int8 (`q = round(w / s)`,
//!   `|q| <= 127`), one scale per tensor or per output channel (dim 0 of a conv weight, the
//!   output dim of a Linear weight, which Burn stores `[in, out]`).
//! - **Activations**: the input of every convolution and linear layer is observed on a
//!   calibration subset and quantized affine uint8 (`s`, zero point), simulated with fake-quant
//!   through the graph interpreter ([`crate::interpret`]).
//! - **Calibration** picks the clipping range: `minmax` (the observed range), `percentile` (the
//!   99.99th percentile of |x|, or 0.01 / 99.99 for activations) or `mse` (the clip, on a grid
//!   of 100 fractions of the range, that minimises the squared quantization error).
//! - **Report**: weight and activation SQNR per layer, `10 log10(sum x^2 / sum (x - q(x))^2)`.
//! - **File**: int8 weights + f32 scales (and f32 biases / norms) in kiln's `.kq8` format, about
//!   4x smaller than the f32 burnpack.
//!
//! PyTorch twin: `torch.ao.quantization` with `MinMaxObserver` / `PerChannelMinMaxObserver` /
//! `HistogramObserver` (percentile / MSE-style range search). Burn's `Quantizer` quantizes
//! weights per tensor or per block with min-max ranges only, so the per-channel scales,
//! percentile / MSE calibration and activation observers are written here; compute stays f32
//! (Burn's CPU backends have no int8 convolution kernels).

use kiln_layers::OpKind;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use burn::tensor::{Device, Tensor};
use kiln_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::graph::{Graph, ParamValue, param_values, replace_params};
use crate::interpret;
use crate::model::Compressible;

/// One scale per tensor or per output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per output channel.
    PerChannel,
}

/// How the clipping range is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Calibration {
    /// The observed min / max.
    MinMax,
    /// The 99.99th percentile of |x| (activations: 0.01th / 99.99th percentiles).
    Percentile,
    /// The clip that minimises the squared quantization error.
    Mse,
}

impl std::str::FromStr for Calibration {
    type Err = CompressError;
    fn from_str(s: &str) -> Result<Self, CompressError> {
        match s {
            "minmax" => Ok(Calibration::MinMax),
            "percentile" => Ok(Calibration::Percentile),
            "mse" => Ok(Calibration::Mse),
            _ => Err(CompressError::InvalidOption(format!("unknown calibration '{s}'; use minmax, percentile or mse"))),
        }
    }
}

/// Quantization options.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuantConfig {
    /// Weight scale granularity.
    pub granularity: Granularity,
    /// Range calibration (weights and activations).
    pub calibration: Calibration,
    /// Quantize the inputs of convolutions and linear layers too.
    pub activations: bool,
    /// Calibration images (the first ones of the training split).
    pub calibration_images: usize,
    /// Bits of the symmetric weight integers (`|q| <= 2^(bits-1) - 1`): 8, or down to 2 to study
    /// low-bit weights. The `.kq8` file stores them as int8 either way; activations stay uint8.
    #[serde(default = "eight")]
    pub weight_bits: u32,
}

fn eight() -> u32 {
    8
}

/// The largest integer of a symmetric `bits`-bit quantizer (127 for 8 bits, 7 for 4).
pub fn qmax(bits: u32) -> f32 {
    ((1u32 << (bits.clamp(2, 8) - 1)) - 1) as f32
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            granularity: Granularity::PerChannel,
            calibration: Calibration::MinMax,
            activations: true,
            calibration_images: 256,
            weight_bits: 8,
        }
    }
}

/// Quantization error of one layer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayerSqnr {
    /// Layer path.
    pub layer: String,
    /// Weight SQNR, dB.
    pub weight_db: f64,
    /// Input-activation SQNR on the calibration set, dB (NaN when activations are not quantized).
    pub activation_db: f64,
}

/// Affine uint8 activation quantizer.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActQuant {
    /// Scale.
    pub scale: f32,
    /// Zero point in `0..=255`.
    pub zero_point: f32,
}

impl ActQuant {
    /// The quantizer of the range `[lo, hi]`, widened to include 0 so that zero is exact.
    pub fn from_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / 255.0).max(1e-8);
        Self { scale, zero_point: (-lo / scale).round().clamp(0.0, 255.0) }
    }

    pub(crate) fn fq_scalar(&self, x: f32) -> f32 {
        ((x / self.scale).round() + self.zero_point).clamp(0.0, 255.0) * self.scale - self.zero_point * self.scale
    }

    /// Fake-quantizes a tensor.
    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        x.div_scalar(self.scale)
            .round()
            .add_scalar(self.zero_point)
            .clamp(0.0, 255.0)
            .sub_scalar(self.zero_point)
            .mul_scalar(self.scale)
    }
}

/// A quantized weight: int8 values and their scales along `axis`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QTensor {
    /// Burn path.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Axis the scales run along (`None`: one scale).
    pub axis: Option<usize>,
    /// Scales.
    pub scales: Vec<f32>,
    /// int8 values.
    #[serde(skip)]
    pub q: Vec<i8>,
}

impl QTensor {
    /// The dequantized values.
    pub fn dequantize(&self) -> Vec<f32> {
        let idx = channel_index(&self.shape, self.axis);
        self.q.iter().enumerate().map(|(i, &q)| q as f32 * self.scales[idx(i)]).collect()
    }
}

fn channel_index(shape: &[usize], axis: Option<usize>) -> impl Fn(usize) -> usize + use<> {
    let (inner, n) = match axis {
        None => (1usize, 1usize),
        Some(a) => (shape[a + 1..].iter().product::<usize>(), shape[a]),
    };
    move |i| if n == 1 { 0 } else { (i / inner) % n }
}

pub(crate) fn sqnr(x: &[f32], y: &[f32]) -> f64 {
    let s: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
    let e: f64 = x.iter().zip(y).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    if e == 0.0 { f64::INFINITY } else { 10.0 * (s / e).log10() }
}

fn percentile(mut v: Vec<f32>, p: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let last = v.len() - 1;
    let k = ((p / 100.0) * last as f64).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k.min(last), |a, b| a.total_cmp(b));
    *x
}

/// Symmetric clip for the values `w` of one channel, for integers in `[-qmax, qmax]`.
fn weight_clip(w: &[f32], cal: Calibration, qmax: f32) -> f32 {
    let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    match cal {
        Calibration::MinMax => max,
        Calibration::Percentile => percentile(w.iter().map(|x| x.abs()).collect(), 99.99).max(max * 0.5),
        Calibration::Mse => {
            let err = |c: f32| -> f64 {
                let s = (c / qmax).max(1e-12);
                w.iter().map(|x| ((x / s).round().clamp(-qmax, qmax) * s - x).powi(2) as f64).sum()
            };
            (0..100).map(|i| max * (1.0 - i as f32 / 200.0)).min_by(|a, b| err(*a).total_cmp(&err(*b))).unwrap_or(max)
        }
    }
}

/// Quantizes one weight tensor to int8 (`axis` = output-channel axis).
pub fn quantize_weight(path: &str, p: &ParamValue, axis: usize, g: Granularity, cal: Calibration) -> QTensor {
    quantize_weight_bits(path, p, axis, g, cal, 8)
}

/// Quantizes one weight tensor to symmetric `bits`-bit integers (`axis` = output-channel axis).
pub fn quantize_weight_bits(
    path: &str,
    p: &ParamValue,
    axis: usize,
    g: Granularity,
    cal: Calibration,
    bits: u32,
) -> QTensor {
    let qm = qmax(bits);
    let axis = match g {
        Granularity::PerTensor => None,
        Granularity::PerChannel => Some(axis),
    };
    let idx = channel_index(&p.shape, axis);
    let n = axis.map_or(1, |a| p.shape[a]);
    let mut per: Vec<Vec<f32>> = vec![vec![]; n];
    for (i, x) in p.values.iter().enumerate() {
        per[idx(i)].push(*x);
    }
    let scales: Vec<f32> = per.iter().map(|w| (weight_clip(w, cal, qm) / qm).max(1e-12)).collect();
    let q = p.values.iter().enumerate().map(|(i, x)| (x / scales[idx(i)]).round().clamp(-qm, qm) as i8).collect();
    QTensor { path: path.to_string(), shape: p.shape.clone(), axis, scales, q }
}

fn act_range(samples: &[f32], cal: Calibration) -> ActQuant {
    let lo = samples.iter().fold(0f32, |m, x| m.min(*x));
    let hi = samples.iter().fold(0f32, |m, x| m.max(*x));
    match cal {
        Calibration::MinMax => ActQuant::from_range(lo, hi),
        Calibration::Percentile => {
            ActQuant::from_range(percentile(samples.to_vec(), 0.01), percentile(samples.to_vec(), 99.99))
        }
        Calibration::Mse => {
            let err = |q: &ActQuant| -> f64 { samples.iter().map(|x| (q.fq_scalar(*x) - x).powi(2) as f64).sum() };
            (0..100)
                .map(|i| {
                    let f = 1.0 - i as f32 / 200.0;
                    ActQuant::from_range(lo * f, hi * f)
                })
                .min_by(|a, b| err(a).total_cmp(&err(b)))
                .unwrap_or(ActQuant::from_range(lo, hi))
        }
    }
}

/// A model quantized for inference: its int8 weights, activation quantizers and SQNR.
#[derive(Clone, Debug)]
pub struct Quantized {
    /// The graph it runs (traced at batch 1).
    pub graph: Graph,
    /// Every float tensor, with the quantized weights replaced by their dequantized values.
    pub params: HashMap<u64, ParamValue>,
    /// Quantized weights by param id.
    pub weights: HashMap<u64, QTensor>,
    /// Activation quantizers by op index (inputs of convolutions and linear layers).
    pub acts: HashMap<usize, ActQuant>,
    /// Per-layer SQNR.
    pub sqnr: Vec<LayerSqnr>,
    /// The options used.
    pub config: QuantConfig,
}

/// Quantizes `model` (inference mode, batch norms folded when activations are quantized) with
/// `cfg`, calibrating activations on the first images of `calib`.
pub fn quantize<M: Compressible>(
    model: &M,
    input: [usize; 3],
    calib: &ImageDataset,
    cfg: &QuantConfig,
    device: &Device,
) -> Result<Quantized, CompressError> {
    quantize_with(model, input, calib, cfg, cfg.calibration, None, device)
}

/// [`quantize`] with the weight ranges chosen by `weight_cal`, and the activation quantizers
/// given (`acts`, by op index: the ranges quantization-aware training tracked) instead of
/// calibrated. The calibration images then only measure the activation SQNR.
pub(crate) fn quantize_with<M: Compressible>(
    model: &M,
    input: [usize; 3],
    calib: &ImageDataset,
    cfg: &QuantConfig,
    weight_cal: Calibration,
    given_acts: Option<&HashMap<usize, ActQuant>>,
    device: &Device,
) -> Result<Quantized, CompressError> {
    let [c, h, w] = input;
    let graph = Graph::of(model, &[1, c, h, w])?;
    let mut params = param_values(model);
    let mut weights = HashMap::new();
    let mut sqnr_rows = vec![];
    for op in graph.weighted() {
        let id = op.tensor("weight").expect("weighted ops have a weight");
        let Some(p) = params.get(&id) else { continue };
        let axis = if op.op == OpKind::Linear { 1 } else { 0 };
        let q = quantize_weight_bits(&p.path, p, axis, cfg.granularity, weight_cal, cfg.weight_bits);
        let deq = q.dequantize();
        sqnr_rows.push(LayerSqnr { layer: op.path.clone(), weight_db: sqnr(&p.values, &deq), activation_db: f64::NAN });
        params.get_mut(&id).expect("present").values = deq;
        weights.insert(id, q);
    }
    let mut acts = HashMap::new();
    if cfg.activations {
        interpret::check(&graph, &params)?;
        // Observe the inputs of every weighted op on the calibration images.
        let n = cfg.calibration_images.min(calib.len()).max(1);
        let mut samples: HashMap<usize, Vec<f32>> = HashMap::new();
        let idx: Vec<usize> = (0..n).collect();
        let cap = 400_000usize;
        for chunk in idx.chunks(64) {
            let (x, _) = calib.batch(chunk, device);
            let mut observe = |i: usize, v: Vec<f32>| {
                let s = samples.entry(i).or_default();
                let room = cap.saturating_sub(s.len());
                let step = (v.len() / room.max(1)).max(1);
                s.extend(v.into_iter().step_by(step).take(room));
            };
            let mut obs4 = |i: usize, x: Tensor<4>| {
                observe(i, x.clone().into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default());
                x
            };
            let mut obs2 = |_: usize, x: Tensor<2>| -> Tensor<2> { x };
            // Two closures cannot both borrow `samples` mutably: collect 2-D inputs in a second pass.
            interpret::run(&graph, &params, x.clone(), &mut obs4, &mut obs2)?;
            let mut s2: Vec<(usize, Vec<f32>)> = vec![];
            let mut noop4 = |_: usize, x: Tensor<4>| x;
            let mut obs2b = |i: usize, x: Tensor<2>| {
                s2.push((i, x.clone().into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()));
                x
            };
            interpret::run(&graph, &params, x, &mut noop4, &mut obs2b)?;
            for (i, v) in s2 {
                let s = samples.entry(i).or_default();
                let room = cap.saturating_sub(s.len());
                let step = (v.len() / room.max(1)).max(1);
                s.extend(v.into_iter().step_by(step).take(room));
            }
        }
        let weighted: Vec<usize> = graph
            .ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.op.is_weighted() && o.tensor("weight").is_some())
            .map(|(i, _)| i)
            .collect();
        for (row, i) in weighted.iter().enumerate() {
            if let Some(s) = samples.get(i) {
                let aq = match given_acts {
                    Some(given) => match given.get(i) {
                        Some(q) => *q,
                        None => continue,
                    },
                    None => act_range(s, cfg.calibration),
                };
                let deq: Vec<f32> = s.iter().map(|x| aq.fq_scalar(*x)).collect();
                sqnr_rows[row].activation_db = sqnr(s, &deq);
                acts.insert(*i, aq);
            }
        }
    }
    Ok(Quantized { graph, params, weights, acts, sqnr: sqnr_rows, config: cfg.clone() })
}

impl Quantized {
    /// Logits of the quantized model (int8 weights; activations fake-quantized when enabled).
    pub fn logits(&self, x: Tensor<4>) -> Result<Tensor<2>, CompressError> {
        interpret::check(&self.graph, &self.params)?;
        let acts = &self.acts;
        let mut h4 = |i: usize, x: Tensor<4>| match acts.get(&i) {
            Some(q) => q.apply(x),
            None => x,
        };
        let mut h2 = |i: usize, x: Tensor<2>| match acts.get(&i) {
            Some(q) => q.apply(x),
            None => x,
        };
        interpret::run(&self.graph, &self.params, x, &mut h4, &mut h2)
    }

    /// Top-1 accuracy on `data`.
    pub fn accuracy(&self, data: &ImageDataset, device: &Device) -> Result<f64, CompressError> {
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut correct = 0usize;
        for chunk in idx.chunks(250) {
            let (x, y) = data.batch(chunk, device);
            let pred = self.logits(x)?.argmax(1).reshape([chunk.len()]);
            correct += pred.equal(y).int().sum().into_scalar::<i64>() as usize;
        }
        Ok(correct as f64 / data.len().max(1) as f64)
    }

    /// `model` with its weights replaced by the dequantized int8 weights (runs with Burn's
    /// layers; activations stay f32).
    pub fn dequantized_model<M: Compressible>(&self, model: M) -> M {
        let new: HashMap<u64, (Vec<usize>, Vec<f32>)> =
            self.weights.iter().map(|(id, q)| (*id, (q.shape.clone(), q.dequantize()))).collect();
        replace_params(model, &new)
    }

    /// Writes the `.kq8` file: a JSON header (tensors, scales, activation quantizers) and the raw
    /// int8 / f32 data. Written to a temporary file and renamed.
    pub fn save(&self, path: &Path) -> Result<u64, CompressError> {
        let mut header = Kq8Header { tensors: vec![], acts: vec![] };
        let mut body: Vec<u8> = vec![];
        let mut ids: Vec<&u64> = self.params.keys().collect();
        ids.sort_by_key(|id| &self.params[id].path);
        for id in ids {
            let p = &self.params[id];
            match self.weights.get(id) {
                Some(q) => {
                    header.tensors.push(Kq8Tensor {
                        path: p.path.clone(),
                        shape: p.shape.clone(),
                        int8: true,
                        axis: q.axis,
                        scales: q.scales.clone(),
                    });
                    body.extend(q.q.iter().map(|v| *v as u8));
                }
                None => {
                    header.tensors.push(Kq8Tensor {
                        path: p.path.clone(),
                        shape: p.shape.clone(),
                        int8: false,
                        axis: None,
                        scales: vec![],
                    });
                    for v in &p.values {
                        body.extend(v.to_le_bytes());
                    }
                }
            }
        }
        let mut acts: Vec<(&usize, &ActQuant)> = self.acts.iter().collect();
        acts.sort_by_key(|(i, _)| **i);
        header.acts = acts.into_iter().map(|(i, q)| (self.graph.ops[*i].path.clone(), *q)).collect();
        let json = serde_json::to_vec(&header).map_err(|e| CompressError::io(path, e))?;
        let mut bytes = Vec::with_capacity(KQ8_MAGIC.len() + 8 + json.len() + body.len());
        bytes.extend_from_slice(KQ8_MAGIC);
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json);
        bytes.extend_from_slice(&body);
        kiln_data::write_atomic(path, &bytes).map_err(|e| CompressError::io(path, e))?;
        Ok((KQ8_MAGIC.len() + 8 + json.len() + body.len()) as u64)
    }
}

const KQ8_MAGIC: &[u8; 8] = b"KILNQ8\x00\x01";

#[derive(Serialize, Deserialize)]
struct Kq8Tensor {
    path: String,
    shape: Vec<usize>,
    int8: bool,
    axis: Option<usize>,
    scales: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct Kq8Header {
    tensors: Vec<Kq8Tensor>,
    acts: Vec<(String, ActQuant)>,
}

/// Reads a `.kq8` file into `model` (built with the same architecture): the dequantized weights
/// replace the model's. Returns the model and the activation quantizers by layer path.
pub fn load_kq8<M: Compressible>(model: M, path: &Path) -> Result<(M, Vec<(String, ActQuant)>), CompressError> {
    let mut bytes = vec![];
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| CompressError::io(path, e))?;
    let bad = |m: &str| {
        CompressError::bad_file(path, format!("{m}; re-create it with `cargo xtask compress --quantize int8`"))
    };
    if bytes.len() < 16 || &bytes[..8] != KQ8_MAGIC {
        return Err(bad("not a kiln int8 (.kq8) file"));
    }
    let n = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let header = 16usize.checked_add(n).and_then(|end| bytes.get(16..end)).ok_or_else(|| bad("truncated header"))?;
    let header: Kq8Header = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    let mut off = 16 + n;
    let by_path: HashMap<String, (u64, Vec<usize>)> =
        param_values(&model).into_iter().map(|(id, p)| (p.path, (id, p.shape))).collect();
    let mut new = HashMap::new();
    for t in &header.tensors {
        let (id, shape) = by_path.get(&t.path).ok_or_else(|| bad(&format!("tensor {} is not in the model", t.path)))?;
        if *shape != t.shape {
            return Err(bad(&format!(
                "tensor {} has shape {:?} in the file but {:?} in the model",
                t.path, t.shape, shape
            )));
        }
        // The model's own shape (checked above): its element count cannot overflow.
        let numel: usize = t.shape.iter().product();
        // One scale per tensor, or one per channel of the axis (dequantization indexes them).
        let channels = match t.axis {
            None => Some(1),
            Some(a) => t.shape.get(a).copied(),
        };
        if t.int8 && channels != Some(t.scales.len()) {
            return Err(bad(&format!(
                "tensor {} has {} scales where its shape {:?} and axis {:?} need {}",
                t.path,
                t.scales.len(),
                t.shape,
                t.axis,
                channels.map_or("a valid axis".to_string(), |c| c.to_string())
            )));
        }
        let values = if t.int8 {
            let raw = bytes.get(off..off + numel).ok_or_else(|| bad("truncated data"))?;
            off += numel;
            let q = QTensor {
                path: t.path.clone(),
                shape: t.shape.clone(),
                axis: t.axis,
                scales: t.scales.clone(),
                q: raw.iter().map(|b| *b as i8).collect(),
            };
            q.dequantize()
        } else {
            let raw = bytes.get(off..off + 4 * numel).ok_or_else(|| bad("truncated data"))?;
            off += 4 * numel;
            raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
        };
        new.insert(*id, (t.shape.clone(), values));
    }
    if off != bytes.len() {
        return Err(bad("trailing bytes after the data"));
    }
    Ok((replace_params(model, &new), header.acts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(shape: Vec<usize>, values: Vec<f32>) -> ParamValue {
        ParamValue { path: "w".into(), shape, values }
    }

    #[test]
    fn per_channel_scales_follow_each_channel() {
        // Two output channels with ranges 1 and 100: one scale per tensor crushes the first.
        let w = pv(vec![2, 3], vec![0.3, -1.0, 0.2, 30.0, -100.0, 20.0]);
        let pc = quantize_weight("w", &w, 0, Granularity::PerChannel, Calibration::MinMax);
        assert_eq!(pc.scales, vec![1.0 / 127.0, 100.0 / 127.0]);
        assert_eq!(pc.q, vec![38, -127, 25, 38, -127, 25]);
        let pt = quantize_weight("w", &w, 0, Granularity::PerTensor, Calibration::MinMax);
        assert_eq!(pt.scales.len(), 1);
        let (a, b) = (sqnr(&w.values, &pc.dequantize()), sqnr(&w.values, &pt.dequantize()));
        assert!(a > b, "per-channel {a} dB vs per-tensor {b} dB");
        // Linear weights are [in, out]: axis 1 holds the output channels.
        let lin = pv(vec![2, 2], vec![1.0, 10.0, -0.3, -3.0]);
        let q = quantize_weight("w", &lin, 1, Granularity::PerChannel, Calibration::MinMax);
        assert_eq!(q.scales, vec![1.0 / 127.0, 10.0 / 127.0]);
        assert_eq!(q.q, vec![127, 127, -38, -38]);
    }

    #[test]
    fn clipping_calibrations_trade_range_for_resolution() {
        // 99,999 small values and one outlier: percentile and MSE clip below the outlier.
        let mut v: Vec<f32> = (0..99_999).map(|i| (i as f32 / 99_999.0) - 0.5).collect();
        v.push(20.0);
        let mm = weight_clip(&v, Calibration::MinMax, 127.0);
        let mse = weight_clip(&v, Calibration::Mse, 127.0);
        assert_eq!(mm, 20.0);
        assert!(mse < mm);
        // Activations: zero is exact, and the range covers the observed values.
        let q = act_range(&[0.0, 1.0, 2.0, 3.0], Calibration::MinMax);
        assert_eq!(q.fq_scalar(0.0), 0.0);
        assert!((q.fq_scalar(3.0) - 3.0).abs() < 1e-6);
        let p = act_range(&v, Calibration::Percentile);
        assert!(p.scale < act_range(&v, Calibration::MinMax).scale);
    }
}
