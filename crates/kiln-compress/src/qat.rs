//! Quantization-aware training (QAT): fine-tunes a model while its forward pass sees the int8
//! numerics of [`crate::quantize`], then exports through the same path as post-training
//! quantization (same [`Quantized`], same `.kq8` file).
//!
//! - **Weights** of every convolution and linear layer are fake-quantized on each step: symmetric
//!   `bits`-bit integers with a min-max scale per output channel or per tensor, computed from the
//!   current weights ([`fake_quant_weight`]).
//! - **Activations**: the input of every convolution and linear layer (the points PTQ quantizes)
//!   is fake-quantized affine uint8 ([`fake_quant_act`]) with a range tracked by an EMA min / max
//!   observer (`range += ema * (batch range - range)`, PyTorch's
//!   `MovingAverageMinMaxObserver`), seeded by the PTQ calibration of the starting model.
//! - **Gradients** pass straight through the rounding (straight-through estimator): the forward
//!   value is `x + (q(x) - x).detach()`. For activations the estimator is clipped like PyTorch's
//!   `FakeQuantize`: the gradient is zero where `x` falls outside the quantization range.
//! - **Export**: int8 weights by min-max (what training simulated) and the observers' activation
//!   ranges; accuracy and SQNR are measured as for PTQ.
//!
//! The forward pass runs through the graph interpreter ([`crate::interpret::run_with`]) with the
//! model's live parameters, so QAT works on every model PTQ with activations works on (batch
//! norms must be folded first).
//!
//! PyTorch twin: `torch.ao.quantization.prepare_qat` with `FakeQuantize` (per-channel symmetric
//! weights, moving-average min-max activations), a few epochs of fine-tuning, then `convert`.

use kiln_layers::OpKind;
use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};
use kiln_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::error::CompressError;
use crate::eval::{FinetuneConfig, train_epochs};
use crate::graph::{Graph, OpNode, param_values};
use crate::interpret::{self, ParamSource};
use crate::model::Compressible;
use crate::quantize::{ActQuant, Calibration, Granularity, QuantConfig, Quantized, qmax, quantize, quantize_with};

/// Options of [`qat`] (the quantizer itself is the [`QuantConfig`] passed beside it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QatConfig {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate (QAT fine-tunes a trained model: small, 1e-4 by default).
    pub lr: f64,
    /// Shuffling seed.
    pub seed: u64,
    /// EMA constant of the activation observers (PyTorch's `averaging_constant`, 0.01).
    pub ema: f64,
    /// Zero gradient outside the activation quantization range (PyTorch's `FakeQuantize`); when
    /// false, the gradient passes everywhere.
    pub clip_ste: bool,
}

impl Default for QatConfig {
    fn default() -> Self {
        Self { epochs: 1, batch: 64, lr: 1e-4, seed: 0, ema: 0.01, clip_ste: true }
    }
}

/// What [`qat`] returns.
#[derive(Debug)]
pub struct QatOutcome<M> {
    /// The exported int8 model (the same kind of value as [`quantize`]'s).
    pub quantized: Quantized,
    /// Post-training quantization of the starting model with the same options (its activation
    /// ranges seeded the observers): the baseline QAT is compared with.
    pub ptq: Quantized,
    /// The fine-tuned float model (its weights are what [`QatOutcome::quantized`] quantizes).
    pub model: M,
    /// Mean training loss of each epoch.
    pub losses: Vec<f64>,
}

/// Fake-quantizes a weight tensor to symmetric `bits`-bit integers with a min-max scale along
/// `axis` (one scale per index of that axis) or for the whole tensor (`None`), with a
/// straight-through gradient. The forward value is [`crate::quantize::quantize_weight_bits`]'s
/// dequantized min-max weights (up to rounding ties: Burn rounds half to even).
pub fn fake_quant_weight<const D: usize>(w: Tensor<D>, axis: Option<usize>, bits: u32) -> Tensor<D> {
    let qm = qmax(bits);
    let wd = w.clone().detach();
    let dims: Vec<usize> = (0..D).filter(|d| Some(*d) != axis).collect();
    let scale = wd.clone().abs().max_dims(&dims).div_scalar(qm).clamp_min(1e-12);
    let q = wd.clone().div(scale.clone()).round().clamp(-qm, qm).mul(scale);
    w + (q - wd)
}

/// Fake-quantizes activations with `q` (affine uint8), straight-through gradient; with `clip`,
/// the gradient is zero outside the representable range `[-zp * s, (255 - zp) * s]`.
pub fn fake_quant_act<const D: usize>(x: Tensor<D>, q: &ActQuant, clip: bool) -> Tensor<D> {
    let xd = x.clone().detach();
    let y = q.apply(xd.clone());
    if clip {
        let (lo, hi) = (-q.zero_point * q.scale, (255.0 - q.zero_point) * q.scale);
        let c = x.clamp(lo, hi);
        let cd = c.clone().detach();
        c + (y - cd)
    } else {
        x + (y - xd)
    }
}

/// The model's live parameters (autodiff tensors, flattened) by id, read by the interpreter; the
/// weights of convolutions and linear layers come out fake-quantized.
struct Live {
    tensors: HashMap<u64, (Vec<usize>, Tensor<1>)>,
    /// Weight id -> scale axis (`None`: per tensor).
    quantized: HashMap<u64, Option<usize>>,
    bits: u32,
}

impl Live {
    fn of<M: Module>(model: &M, quantized: &HashMap<u64, Option<usize>>, bits: u32) -> Self {
        struct V {
            depth_reparam: usize,
            out: HashMap<u64, (Vec<usize>, Tensor<1>)>,
        }
        impl ModuleVisitor for V {
            fn enter_module(&mut self, _: &str, container_type: &str) {
                if container_type == "Reparameterization" {
                    self.depth_reparam += 1;
                }
            }
            fn exit_module(&mut self, _: &str, container_type: &str) {
                if container_type == "Reparameterization" {
                    self.depth_reparam -= 1;
                }
            }
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if self.depth_reparam > 0 {
                    return;
                }
                let t = p.val();
                let shape = t.dims().to_vec();
                let n = shape.iter().product::<usize>();
                self.out.insert(p.id.val(), (shape, t.reshape([n])));
            }
        }
        let mut v = V { depth_reparam: 0, out: HashMap::new() };
        model.visit(&mut v);
        Self { tensors: v.out, quantized: quantized.clone(), bits }
    }
}

impl ParamSource for Live {
    fn get<const D: usize>(&self, _: usize, op: &OpNode, suffix: &str, _: &Device) -> Option<Tensor<D>> {
        let id = op.tensor(suffix)?;
        let (shape, t) = self.tensors.get(&id)?;
        let shape: [usize; D] = shape.clone().try_into().ok()?;
        let t = t.clone().reshape(shape);
        Some(match self.quantized.get(&id) {
            Some(axis) => fake_quant_weight(t, *axis, self.bits),
            None => t,
        })
    }
}

/// An EMA min / max observer per activation point, seeded with a range.
#[derive(Clone, Debug)]
struct Observers {
    ranges: HashMap<usize, (f32, f32)>,
    ema: f32,
}

impl Observers {
    fn quantizer(&self, i: usize) -> Option<ActQuant> {
        self.ranges.get(&i).map(|(lo, hi)| ActQuant::from_range(*lo, *hi))
    }

    fn observe<const D: usize>(&mut self, i: usize, x: &Tensor<D>) {
        let Some((lo, hi)) = self.ranges.get_mut(&i) else { return };
        let xd = x.clone().detach();
        let bmin = xd.clone().min().into_scalar::<f32>();
        let bmax = xd.max().into_scalar::<f32>();
        *lo += self.ema * (bmin - *lo);
        *hi += self.ema * (bmax - *hi);
    }
}

/// The scale axis of every weight the quantizer quantizes (as [`quantize`] chooses them: convs
/// along dim 0, linear layers along dim 1, Burn's `[in, out]`).
fn weight_axes(graph: &Graph, g: Granularity) -> HashMap<u64, Option<usize>> {
    graph
        .weighted()
        .filter_map(|op| {
            let id = op.tensor("weight")?;
            let axis = if op.op == OpKind::Linear { 1 } else { 0 };
            Some((id, if g == Granularity::PerChannel { Some(axis) } else { None }))
        })
        .collect()
}

/// Quantization-aware training of `model` (on the autodiff `device`): PTQ with `quant` seeds the
/// activation observers, `cfg.epochs` of Adam on cross-entropy run with fake-quantized weights and
/// activations, and the result is exported like [`quantize`]'s (weights by min-max, whatever
/// `quant.calibration` is: that is what training simulated; activations by the observed ranges).
pub fn qat<M: Compressible>(
    model: M,
    input: [usize; 3],
    data: &ImageDataset,
    quant: &QuantConfig,
    cfg: &QatConfig,
    device: &Device,
) -> Result<QatOutcome<M>, CompressError> {
    let [c, h, w] = input;
    let eval = device.clone().inner();
    let graph = Graph::of(&model, &[1, c, h, w])?;
    interpret::check(&graph, &param_values(&model))?;
    let ptq = quantize(&model.valid(), input, data, quant, &eval)?;
    let observers = RefCell::new(Observers {
        ranges: ptq
            .acts
            .iter()
            .map(|(i, q)| (*i, (-q.zero_point * q.scale, (255.0 - q.zero_point) * q.scale)))
            .collect(),
        ema: cfg.ema as f32,
    });
    let axes = weight_axes(&graph, quant.granularity);
    let ce = CrossEntropyLossConfig::new().init(device);
    let ft = FinetuneConfig { epochs: cfg.epochs, batch: cfg.batch, lr: cfg.lr, seed: cfg.seed };
    let (model, losses) = train_epochs(model, data, &ft, device, |model, x, y| {
        let live = Live::of(model, &axes, quant.weight_bits);
        let mut h4 = |i: usize, x: Tensor<4>| {
            let mut o = observers.borrow_mut();
            o.observe(i, &x);
            match o.quantizer(i) {
                Some(q) => fake_quant_act(x, &q, cfg.clip_ste),
                None => x,
            }
        };
        let mut h2 = |i: usize, x: Tensor<2>| {
            let mut o = observers.borrow_mut();
            o.observe(i, &x);
            match o.quantizer(i) {
                Some(q) => fake_quant_act(x, &q, cfg.clip_ste),
                None => x,
            }
        };
        let logits = interpret::run_with(&graph, &live, x, &mut h4, &mut h2)?;
        Ok::<_, CompressError>(ce.forward(logits, y))
    })?;
    let observers = observers.into_inner();
    let acts: HashMap<usize, ActQuant> =
        observers.ranges.keys().filter_map(|i| observers.quantizer(*i).map(|q| (*i, q))).collect();
    let quantized = quantize_with(
        &model.valid(),
        input,
        data,
        quant,
        Calibration::MinMax,
        quant.activations.then_some(&acts),
        &eval,
    )?;
    Ok(QatOutcome { quantized, ptq, model, losses })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ParamValue;
    use crate::quantize::quantize_weight_bits;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn fake_quant_forward_is_ptq_quantize_dequantize() {
        let device = Device::flex();
        for (shape, axis) in [(vec![6usize, 3, 5, 5], 0usize), (vec![40, 12], 1)] {
            let n: usize = shape.iter().product();
            let w = Tensor::<1>::random([n], Distribution::Normal(0.0, 0.3), &device);
            let v = values(w.clone());
            let p = ParamValue { path: "w".into(), shape: shape.clone(), values: v.clone() };
            for g in [Granularity::PerChannel, Granularity::PerTensor] {
                for bits in [8, 4] {
                    let q = quantize_weight_bits("w", &p, axis, g, Calibration::MinMax, bits).dequantize();
                    let ax = (g == Granularity::PerChannel).then_some(axis);
                    let fq = if shape.len() == 4 {
                        values(fake_quant_weight(w.clone().reshape([shape[0], shape[1], shape[2], shape[3]]), ax, bits))
                    } else {
                        values(fake_quant_weight(w.clone().reshape([shape[0], shape[1]]), ax, bits))
                    };
                    let diff = q.iter().zip(&fq).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(diff < 1e-6, "{shape:?} {g:?} {bits} bits: max diff {diff}");
                }
            }
        }
        // Activations: the same numerics as PTQ's quantizer (what `Quantized::logits` applies).
        let q = ActQuant::from_range(-0.7, 3.1);
        let x = Tensor::<2>::random([16, 32], Distribution::Uniform(-1.5, 4.0), &device);
        let a = values(fake_quant_act(x.clone(), &q, true));
        let b = values(q.apply(x));
        let diff = a.iter().zip(&b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-6, "activations: max diff {diff}");
    }

    #[test]
    fn straight_through_gradient_passes_inside_the_range_and_stops_outside() {
        let device = Device::flex().autodiff();
        let q = ActQuant::from_range(-1.0, 2.0);
        let (lo, hi) = (-q.zero_point * q.scale, (255.0 - q.zero_point) * q.scale);
        let xs = [-3.0f32, -1.2, -0.5, 0.0, 0.37, 1.99, 2.5, 10.0];
        let upstream = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        for clip in [true, false] {
            let x = Tensor::<1>::from_data(TensorData::from(xs), &device).require_grad();
            let u = Tensor::<1>::from_data(TensorData::from(upstream), &device);
            let y = fake_quant_act(x.clone(), &q, clip);
            let grads = (y * u).sum().backward();
            let g = values(x.grad(&grads).unwrap());
            for ((x, u), g) in xs.iter().zip(upstream).zip(g) {
                let inside = (lo..=hi).contains(x);
                let want = if inside || !clip { u } else { 0.0 };
                assert_eq!(g, want, "x {x} (range [{lo}, {hi}], clip {clip})");
            }
        }
        // Weights: the gradient is the upstream gradient, whatever the rounding did.
        let w = Tensor::<2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let u = Tensor::<2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device);
        let grads = (fake_quant_weight(w.clone(), Some(1), 4) * u.clone()).sum().backward();
        assert_eq!(values(w.grad(&grads).unwrap()), values(u.inner()));
    }
}
