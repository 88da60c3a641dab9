//! Runs a model from its recorded [`Graph`] with plain tensor ops, so that quantization can observe
//! and fake-quantize the input of every convolution and linear layer (Burn's layers have no
//! forward hooks). Supports the ops of the classifiers kiln compresses: convolutions (grouped and
//! depthwise), linear, ReLU / ReLU6, max / average / global pooling, flatten, add, dropout, and
//! batch norms that BN folding turned into identities.

use std::collections::HashMap;

use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_layers::trace::{OpKind, Spatial};

use crate::error::CompressError;
use crate::graph::{Graph, OpNode, ParamValue};

#[derive(Clone)]
enum Val {
    T4(Tensor<4>),
    T2(Tensor<2>),
}

fn t<const D: usize>(p: &ParamValue, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(p.values.clone(), p.shape.clone()), device)
}

fn window(op: &OpNode) -> Result<([usize; 2], [usize; 2], [usize; 2], [usize; 2]), CompressError> {
    match &op.spatial {
        Spatial::Window { kernel, stride, padding, dilation } if kernel.len() == 2 => {
            Ok(([kernel[0], kernel[1]], [stride[0], stride[1]], [padding[0], padding[1]], [dilation[0], dilation[1]]))
        }
        _ => Err(unsupported(op)),
    }
}

fn unsupported(op: &OpNode) -> CompressError {
    CompressError::InvalidOption(format!(
        "op {} ({}) at {} is not supported by the graph interpreter used for activation quantization; quantize weights only (--no-activations) or fold batch norms first",
        op.op, op.detail, op.path
    ))
}

fn param<'a>(params: &'a HashMap<u64, ParamValue>, op: &OpNode, s: &str) -> Option<&'a ParamValue> {
    op.tensor(s).and_then(|id| params.get(&id))
}

/// Checks that every op of `graph` can be interpreted with these parameters.
pub fn check(graph: &Graph, params: &HashMap<u64, ParamValue>) -> Result<(), CompressError> {
    for op in &graph.ops {
        match &op.op {
            OpKind::BatchNorm => {
                let get = |s: &str| op.tensor(s).and_then(|id| params.get(&id));
                let all = |s: &str, v: f32| get(s).is_some_and(|p| p.values.iter().all(|x| *x == v));
                let unit_var = get("running_var").is_some_and(|p| p.values.iter().all(|x| (x - 1.0).abs() < 1e-4));
                if !(all("weight", 1.0) && all("bias", 0.0) && all("running_mean", 0.0) && unit_var) {
                    return Err(unsupported(op));
                }
            }
            OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::MaxPool2d | OpKind::AvgPool2d => {
                window(op)?;
            }
            OpKind::Linear
            | OpKind::Relu
            | OpKind::Relu6
            | OpKind::Dropout
            | OpKind::Flatten
            | OpKind::Add
            | OpKind::GlobalAvgPool
            | OpKind::AdaptiveAvgPool2d => {}
            _ => return Err(unsupported(op)),
        }
    }
    Ok(())
}

/// Where [`run_with`] reads the tensors of an op (`weight`, `bias`) from: plain values
/// (`HashMap<u64, ParamValue>`, what [`run`] uses) or live, trainable tensors (quantization-aware
/// training, [`crate::qat`]).
pub trait ParamSource {
    /// The tensor of `op` with this suffix, on `device`, or `None` when the op has none.
    fn get<const D: usize>(&self, index: usize, op: &OpNode, suffix: &str, device: &Device) -> Option<Tensor<D>>;
}

impl ParamSource for HashMap<u64, ParamValue> {
    fn get<const D: usize>(&self, _: usize, op: &OpNode, suffix: &str, device: &Device) -> Option<Tensor<D>> {
        param(self, op, suffix).map(|p| t::<D>(p, device))
    }
}

/// Runs the graph on `x` (`[N, C, H, W]`) and returns the logits. `hook(op index, input)` sees
/// (and may replace) the input of every convolution and linear layer.
pub fn run(
    graph: &Graph,
    params: &HashMap<u64, ParamValue>,
    x: Tensor<4>,
    hook: &mut dyn FnMut(usize, Tensor<4>) -> Tensor<4>,
    hook2: &mut dyn FnMut(usize, Tensor<2>) -> Tensor<2>,
) -> Result<Tensor<2>, CompressError> {
    run_with(graph, params, x, hook, hook2)
}

/// [`run`] with the op tensors read from any [`ParamSource`].
pub fn run_with<P: ParamSource>(
    graph: &Graph,
    params: &P,
    x: Tensor<4>,
    hook: &mut dyn FnMut(usize, Tensor<4>) -> Tensor<4>,
    hook2: &mut dyn FnMut(usize, Tensor<2>) -> Tensor<2>,
) -> Result<Tensor<2>, CompressError> {
    let device = x.device();
    let n = x.dims()[0];
    let mut vals: HashMap<usize, Val> = HashMap::new();
    vals.insert(0, Val::T4(x));
    let mut last = 0;
    for (i, op) in graph.ops.iter().enumerate() {
        let input = vals.get(&op.inputs[0]).cloned().ok_or_else(|| unsupported(op))?;
        let out = match (&op.op, input) {
            (OpKind::Conv2d | OpKind::DepthwiseConv2d, Val::T4(x)) => {
                let x = hook(i, x);
                let w = params.get::<4>(i, op, "weight", &device).ok_or_else(|| unsupported(op))?;
                let (_, stride, pad, dil) = window(op)?;
                let groups = x.dims()[1] / w.dims()[1];
                let opts = ConvOptions::new(stride, pad, dil, groups);
                Val::T4(conv2d(x, w, params.get::<1>(i, op, "bias", &device), opts))
            }
            (OpKind::Linear, Val::T2(x)) => {
                let x = hook2(i, x);
                let w = params.get::<2>(i, op, "weight", &device).ok_or_else(|| unsupported(op))?;
                let mut y = x.matmul(w);
                if let Some(b) = params.get::<1>(i, op, "bias", &device) {
                    y = y + b.unsqueeze::<2>();
                }
                Val::T2(y)
            }
            (OpKind::BatchNorm, v) => {
                // Only identities (checked by `check`) remain after folding.
                v
            }
            (OpKind::Relu, Val::T4(x)) => Val::T4(burn::tensor::activation::relu(x)),
            (OpKind::Relu, Val::T2(x)) => Val::T2(burn::tensor::activation::relu(x)),
            (OpKind::Relu6, Val::T4(x)) => Val::T4(x.clamp(0.0, 6.0)),
            (OpKind::Relu6, Val::T2(x)) => Val::T2(x.clamp(0.0, 6.0)),
            (OpKind::Dropout, v) => v,
            (OpKind::MaxPool2d, Val::T4(x)) => {
                let (k, s, pad, d) = window(op)?;
                let o = MaxPoolOptions::new(k)
                    .with_stride(s)
                    .with_padding_pairs([(pad[0], pad[0]), (pad[1], pad[1])])
                    .with_dilation(d);
                Val::T4(max_pool2d(x, o))
            }
            (OpKind::AvgPool2d, Val::T4(x)) => {
                let (k, s, pad, _) = window(op)?;
                let o = AvgPoolOptions::new(k).with_stride(s).with_padding_pairs([(pad[0], pad[0]), (pad[1], pad[1])]);
                Val::T4(avg_pool2d(x, o))
            }
            (OpKind::GlobalAvgPool | OpKind::AdaptiveAvgPool2d, Val::T4(x)) => {
                let size = if op.shape.len() == 4 { [op.shape[2], op.shape[3]] } else { [1, 1] };
                let y = adaptive_avg_pool2d(x, size);
                if op.shape.len() == 2 {
                    let c = op.shape[1];
                    Val::T2(y.reshape([n, c]))
                } else {
                    Val::T4(y)
                }
            }
            (OpKind::Flatten, Val::T4(x)) => Val::T2(x.flatten::<2>(1, 3)),
            (OpKind::Flatten, v @ Val::T2(_)) => v,
            (OpKind::Add, Val::T4(mut x)) => {
                for id in &op.inputs[1..] {
                    match vals.get(id) {
                        Some(Val::T4(y)) => x = x + y.clone(),
                        _ => return Err(unsupported(op)),
                    }
                }
                Val::T4(x)
            }
            _ => return Err(unsupported(op)),
        };
        vals.insert(op.output, out);
        last = op.output;
    }
    match vals.remove(&last) {
        Some(Val::T2(y)) => Ok(y),
        _ => Err(CompressError::InvalidOption("the model does not end in class scores [N, classes]".into())),
    }
}
