//! The vocabulary a module uses to describe its forward pass to an analyzer.
//!
//! Every kiln module (and every plugin module) implements [`Trace`]: it walks the same
//! sub-modules its `forward` walks, and for each primitive op it reports an [`OpCost`] —
//! parameters, MACs, FLOPs and how the op transforms the receptive field — to a [`Tracer`].
//! The cost formulas live here, beside the ops (see [`cost`]); the analyzer (`kiln-analyze`)
//! only aggregates: naming, receptive-field propagation over the DAG, memory, totals.
//!
//! Nothing here executes a tensor op, so tracing a 224x224 MobileNet takes microseconds, and a
//! shape error (wrong channel count, too small an input) is reported as a [`TraceError`] instead
//! of a panic deep inside a kernel.

pub use crate::op_kind::OpKind;
use core::fmt;

/// A tensor flowing through a traced graph: an id issued by the [`Tracer`] and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Issued by the tracer; unique within one trace.
    pub id: usize,
    /// The full shape, batch first (e.g. `[N, C, H, W]`).
    pub shape: Vec<usize>,
}

impl Node {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Rank of the tensor.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The channel dimension (`shape[1]`) of a tensor of rank >= 2.
    pub fn channels(&self) -> Option<usize> {
        self.shape.get(1).copied()
    }

    /// Checks the rank, returning a [`TraceError::Rank`] otherwise.
    pub fn expect_rank(&self, op: &str, rank: usize) -> Result<(), TraceError> {
        if self.rank() == rank {
            Ok(())
        } else {
            Err(TraceError::Rank { op: op.to_string(), expected: rank, shape: self.shape.clone() })
        }
    }

    /// Checks the channel count (`shape[1]`).
    pub fn expect_channels(&self, op: &str, channels: usize) -> Result<(), TraceError> {
        if self.channels() == Some(channels) {
            Ok(())
        } else {
            Err(TraceError::Channels { op: op.to_string(), expected: channels, shape: self.shape.clone() })
        }
    }
}

/// A count the analyzer reports: known exactly, or not known (the op has no formula).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Exact value.
    Known(u64),
    /// The op has no formula for this metric; the report marks the row `partial`.
    Unknown,
}

impl Count {
    /// The value, if known.
    pub fn known(self) -> Option<u64> {
        match self {
            Count::Known(v) => Some(v),
            Count::Unknown => None,
        }
    }
}

/// How an op maps output positions to input positions, for receptive-field analysis.
///
/// All arrays have one entry per spatial dimension of the op's input (2 for `[N, C, H, W]`,
/// 3 for `[N, C, D, H, W]`).
#[derive(Clone, Debug, PartialEq)]
pub enum Spatial {
    /// A sliding window (convolution, pooling).
    Window {
        /// Kernel extent before dilation.
        kernel: Vec<usize>,
        /// Stride.
        stride: Vec<usize>,
        /// Padding before the first element (top / left).
        padding: Vec<usize>,
        /// Dilation.
        dilation: Vec<usize>,
    },
    /// Each output position depends on the same input position only (element-wise ops,
    /// 1x1 convolutions, batch norm, channel shuffle, linear layers on features).
    Pointwise,
    /// Upsampling by `scale` per dimension; `taps` input positions per dimension contribute to
    /// one output (1 for nearest / max-unpool, 2 for (bi/tri)linear, `ceil(k/s)` for a
    /// transposed convolution).
    Upsample {
        /// Output size / input size per dimension.
        scale: Vec<f64>,
        /// Input positions contributing to one output position, per dimension.
        taps: Vec<usize>,
    },
    /// Rearranges a `factor`x`factor` neighbourhood into channels (space-to-depth, Focus,
    /// pixel unshuffle): like a window of size `factor` and stride `factor`.
    SpaceToDepth {
        /// Block size.
        factor: usize,
    },
    /// Collapses all spatial positions into one (global pooling, flatten before a classifier).
    /// Every output sees the whole input: the receptive field becomes `"global"`, and the input
    /// of the last such op is what the analyzer reports as the model's final feature map.
    Collapse,
    /// No formula for this op.
    Unknown,
}

/// What one primitive op costs: the single source of truth for an op's numbers.
#[derive(Clone, Debug)]
pub struct OpCost {
    /// Kind of op, e.g. `Conv2d`, `BatchNorm`, `ReLU6` (see [`OpKind`]).
    pub op: OpKind,
    /// Short human description (kernel, stride, groups...).
    pub detail: String,
    /// Trainable parameters (what PyTorch's `numel()` over `parameters()` counts).
    pub params: u64,
    /// Non-trainable state saved with the model (BatchNorm running mean and variance).
    pub buffers: u64,
    /// Multiply-accumulates.
    pub macs: Count,
    /// Floating-point operations (see [`cost::FLOP_CONVENTION`]).
    pub flops: Count,
    /// How the op transforms receptive fields.
    pub spatial: Spatial,
    /// The output aliases the first input's storage (reshape, flatten, narrow): it adds no
    /// activation memory of its own.
    pub view: bool,
    /// The op's tensors as `(PyTorch suffix, Burn param id)`: e.g. `("weight", id)`,
    /// `("running_mean", id)`. With the row's path this names each tensor as PyTorch's
    /// `state_dict` does (`features.0.0.weight`), which is how kiln loads torchvision weights
    /// without any per-model key table.
    pub tensors: Vec<(String, u64)>,
}

impl OpCost {
    /// A new cost with the given op kind and no parameters, zero MACs and FLOPs, point-wise.
    pub fn new(op: impl Into<OpKind>) -> Self {
        Self {
            op: op.into(),
            detail: String::new(),
            params: 0,
            buffers: 0,
            macs: Count::Known(0),
            flops: Count::Known(0),
            spatial: Spatial::Pointwise,
            view: false,
            tensors: vec![],
        }
    }

    /// Adds a named tensor (see [`OpCost::tensors`]).
    pub fn tensor(mut self, suffix: &str, param_id: u64) -> Self {
        self.tensors.push((suffix.to_string(), param_id));
        self
    }

    /// Sets the detail string.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
    /// Sets the trainable parameter count.
    pub fn params(mut self, params: u64) -> Self {
        self.params = params;
        self
    }
    /// Sets the buffer count.
    pub fn buffers(mut self, buffers: u64) -> Self {
        self.buffers = buffers;
        self
    }
    /// Sets MACs.
    pub fn macs(mut self, macs: u64) -> Self {
        self.macs = Count::Known(macs);
        self
    }
    /// Sets FLOPs.
    pub fn flops(mut self, flops: u64) -> Self {
        self.flops = Count::Known(flops);
        self
    }
    /// Sets the spatial behaviour.
    pub fn spatial(mut self, spatial: Spatial) -> Self {
        self.spatial = spatial;
        self
    }
    /// Marks the op as a view of its first input.
    pub fn view(mut self) -> Self {
        self.view = true;
        self
    }
    /// Marks MACs and FLOPs as unknown (no formula).
    pub fn unknown_cost(mut self) -> Self {
        self.macs = Count::Unknown;
        self.flops = Count::Unknown;
        self
    }
}

/// Receives the ops of a traced forward pass. Implemented by `kiln-analyze`'s analyzer; a
/// plugin never needs to implement it, only to call it.
pub trait Tracer {
    /// Enters a named sub-module (`features`, `3`, `conv`...): names compose into paths such as
    /// `features.3.conv.1`.
    fn enter(&mut self, name: &str);
    /// Leaves the current sub-module.
    fn exit(&mut self);
    /// Records one primitive op. `name` is appended to the current path when given; without it,
    /// the op is named by the current path (a leaf module such as a `Conv2d`).
    fn op(&mut self, name: Option<&str>, inputs: &[&Node], output: Vec<usize>, cost: OpCost) -> Node;
}

/// A module whose forward pass can be described to a [`Tracer`] without running it.
///
/// The implementation must visit the same sub-modules in the same order as `forward` and
/// return the shape `forward` would return; kiln's tests check this for every registered model.
pub trait Trace {
    /// Traces the forward pass on an input of the node's shape.
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError>;
}

/// Runs `f` inside the named scope.
pub fn scoped<R>(t: &mut dyn Tracer, name: &str, f: impl FnOnce(&mut dyn Tracer) -> R) -> R {
    t.enter(name);
    let out = f(t);
    t.exit();
    out
}

/// Traces `module` inside the named scope.
pub fn trace_in<M: Trace + ?Sized>(t: &mut dyn Tracer, name: &str, module: &M, x: Node) -> Result<Node, TraceError> {
    scoped(t, name, |t| module.trace(t, x))
}

/// Traces a sequence of modules, naming them `0`, `1`, ... like `nn.Sequential`.
pub fn trace_seq<M: Trace>(t: &mut dyn Tracer, modules: &[M], mut x: Node) -> Result<Node, TraceError> {
    for (i, m) in modules.iter().enumerate() {
        x = trace_in(t, &i.to_string(), m, x)?;
    }
    Ok(x)
}

impl<M: Trace> Trace for Vec<M> {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        trace_seq(t, self, x)
    }
}

impl<M: Trace> Trace for Option<M> {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        match self {
            Some(m) => m.trace(t, x),
            None => Ok(x),
        }
    }
}

impl<M: Trace + ?Sized> Trace for Box<M> {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        (**self).trace(t, x)
    }
}

/// Why a trace failed: the input does not fit the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// Wrong rank.
    Rank {
        /// The op that rejected the input.
        op: String,
        /// Rank it accepts.
        expected: usize,
        /// Shape it got.
        shape: Vec<usize>,
    },
    /// Wrong channel count.
    Channels {
        /// The op that rejected the input.
        op: String,
        /// Channels it accepts.
        expected: usize,
        /// Shape it got.
        shape: Vec<usize>,
    },
    /// Inputs of a multi-input op (add, concat) disagree.
    Mismatch {
        /// The op.
        op: String,
        /// The shapes it got.
        shapes: Vec<Vec<usize>>,
    },
    /// Anything else (spatial size too small, indivisible size...).
    Invalid {
        /// The op.
        op: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Rank { op, expected, shape } => {
                write!(f, "{op} expects a rank-{expected} input, got shape {shape:?}")
            }
            TraceError::Channels { op, expected, shape } => {
                write!(f, "{op} expects {expected} input channels, got shape {shape:?} (channels are dimension 1)")
            }
            TraceError::Mismatch { op, shapes } => {
                write!(f, "{op} got inputs of incompatible shapes {shapes:?}")
            }
            TraceError::Invalid { op, reason } => write!(f, "{op}: {reason}"),
        }
    }
}

impl std::error::Error for TraceError {}

/// Cost formulas, one per primitive op family. Every number the analyzer reports is computed by
/// one of these functions, called from the op's [`Trace`] implementation.
pub mod cost {
    use super::*;

    /// How MACs are counted.
    pub const MAC_CONVENTION: &str = "multiply-accumulates of convolutions (output elements x in_channels/groups x kernel area; transposed: input elements x out_channels/groups x kernel area) and linear layers (batch x in x out); bias additions, normalisation, activations and pooling are not MACs. torchvision's 'GFLOPS' column is this number.";

    /// How FLOPs are counted.
    pub const FLOP_CONVENTION: &str = "2 per MAC, plus 1 per output element for a bias, plus element-wise ops per element: BatchNorm (inference, folded to scale+shift) 2, ReLU 1, ReLU6 2, leaky ReLU 2, h-sigmoid 3, h-swish 4, sigmoid 4, swish/SiLU 5, tanh 5, add/mul 1 per extra operand, max pool (k-1) comparisons and average pool k additions per output window element, global average pool 1 per input element, bilinear 7 and trilinear 15 per output element; concat, split, shuffle, reshape, nearest upsample, max unpool and dropout (inference) 0.";

    fn prod(v: &[usize]) -> u64 {
        v.iter().map(|&d| d as u64).product()
    }

    /// Output size of a sliding window along one dimension (floor mode), or an error.
    pub fn window_out(
        op: &str,
        input: usize,
        kernel: usize,
        stride: usize,
        pad_total: usize,
        dilation: usize,
        ceil_mode: bool,
    ) -> Result<usize, TraceError> {
        let eff = dilation * (kernel - 1) + 1;
        let padded = input + pad_total;
        if padded < eff || stride == 0 {
            return Err(TraceError::Invalid {
                op: op.to_string(),
                reason: format!(
                    "input size {input} (padded {padded}) is smaller than the effective kernel {eff}; use a larger input"
                ),
            });
        }
        let span = padded - eff;
        let mut out = if ceil_mode { span.div_ceil(stride) } else { span / stride } + 1;
        // PyTorch: in ceil mode the last window must start inside the input or left padding.
        if ceil_mode && (out - 1) * stride >= input + pad_total / 2 {
            out -= 1;
        }
        Ok(out)
    }

    /// Convolution (any number of spatial dims). `weight` is `[C_out, C_in/groups, k...]`.
    pub fn conv(weight: &[usize], bias: bool, out_shape: &[usize]) -> (u64, u64, u64) {
        let params = prod(weight) + if bias { weight[0] as u64 } else { 0 };
        let out_elems = prod(out_shape);
        let macs = out_elems * prod(&weight[1..]);
        let flops = 2 * macs + if bias { out_elems } else { 0 };
        (params, macs, flops)
    }

    /// Transposed convolution. `weight` is `[C_in, C_out/groups, k...]`.
    pub fn conv_transpose(
        weight: &[usize],
        bias_len: Option<usize>,
        in_shape: &[usize],
        out_shape: &[usize],
    ) -> (u64, u64, u64) {
        let params = prod(weight) + bias_len.unwrap_or(0) as u64;
        let macs = prod(in_shape) * prod(&weight[1..]);
        let flops = 2 * macs + if bias_len.is_some() { prod(out_shape) } else { 0 };
        (params, macs, flops)
    }

    /// Linear layer `in -> out` applied to `rows` vectors.
    pub fn linear(d_in: usize, d_out: usize, bias: bool, rows: u64) -> (u64, u64, u64) {
        let params = (d_in * d_out) as u64 + if bias { d_out as u64 } else { 0 };
        let macs = rows * (d_in * d_out) as u64;
        let flops = 2 * macs + if bias { rows * d_out as u64 } else { 0 };
        (params, macs, flops)
    }

    /// An element-wise op costing `per_element` FLOPs on each of `x`'s elements.
    pub fn elementwise(op: &str, x: &Node, per_element: u64) -> OpCost {
        OpCost::new(op).flops(per_element * x.numel())
    }
}

/// Traced element-wise and structural ops that are functions, not modules. Each builds its
/// [`OpCost`] here and records it; call them from a [`Trace`] implementation in the same place
/// the forward pass calls the corresponding tensor op.
pub mod ops {
    use super::*;

    /// Element-wise sum of same-shape tensors (residual / addition shortcut).
    pub fn add(t: &mut dyn Tracer, name: Option<&str>, inputs: &[&Node]) -> Result<Node, TraceError> {
        same_shapes("Add", inputs)?;
        let n = inputs[0].numel() * (inputs.len() as u64 - 1);
        Ok(t.op(name, inputs, inputs[0].shape.clone(), OpCost::new("Add").flops(n)))
    }

    /// Element-wise product; `b` may broadcast over spatial dims (`[N, C, 1, 1]` gates).
    pub fn mul(t: &mut dyn Tracer, name: Option<&str>, a: &Node, b: &Node) -> Result<Node, TraceError> {
        let ok = a.rank() == b.rank() && a.shape.iter().zip(&b.shape).all(|(&x, &y)| x == y || y == 1);
        if !ok {
            return Err(TraceError::Mismatch { op: "Mul".into(), shapes: vec![a.shape.clone(), b.shape.clone()] });
        }
        Ok(t.op(name, &[a, b], a.shape.clone(), OpCost::new("Mul").flops(a.numel())))
    }

    /// Concatenation along `dim` (dense / concat shortcut).
    pub fn concat(t: &mut dyn Tracer, name: Option<&str>, inputs: &[&Node], dim: usize) -> Result<Node, TraceError> {
        let first =
            inputs.first().ok_or_else(|| TraceError::Invalid { op: "Concat".into(), reason: "no inputs".into() })?;
        let mut out = first.shape.clone();
        if dim >= out.len() {
            return Err(TraceError::Invalid {
                op: "Concat".into(),
                reason: format!("dim {dim} out of range for {:?}", out),
            });
        }
        out[dim] = 0;
        for n in inputs {
            let compatible = n.rank() == first.rank()
                && n.shape.iter().zip(&first.shape).enumerate().all(|(i, (a, b))| i == dim || a == b);
            if !compatible {
                return Err(TraceError::Mismatch {
                    op: "Concat".into(),
                    shapes: inputs.iter().map(|n| n.shape.clone()).collect(),
                });
            }
            out[dim] += n.shape[dim];
        }
        Ok(t.op(name, inputs, out, OpCost::new("Concat")))
    }

    /// A slice `start..start+len` along `dim` (channel split); a view.
    pub fn narrow(
        t: &mut dyn Tracer,
        name: Option<&str>,
        x: &Node,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<Node, TraceError> {
        if dim >= x.rank() || start + len > x.shape[dim] {
            return Err(TraceError::Invalid {
                op: "Narrow".into(),
                reason: format!("slice {start}..{} of dim {dim} out of range for {:?}", start + len, x.shape),
            });
        }
        let mut out = x.shape.clone();
        out[dim] = len;
        Ok(t.op(name, &[x], out, OpCost::new("Split").detail(format!("dim {dim} [{start}..{}]", start + len)).view()))
    }

    /// Flattens all dims from 1 on (`torch.flatten(x, 1)`), a view. When spatial dims larger than
    /// 1x1 are flattened into features, the next layer sees everything: the op collapses the
    /// receptive field.
    pub fn flatten(t: &mut dyn Tracer, name: Option<&str>, x: &Node) -> Result<Node, TraceError> {
        if x.rank() < 2 {
            return Err(TraceError::Rank { op: "Flatten".into(), expected: 2, shape: x.shape.clone() });
        }
        let out = vec![x.shape[0], x.shape[1..].iter().product()];
        let positions: usize = x.shape[2..].iter().product();
        let spatial = if positions > 1 { Spatial::Collapse } else { Spatial::Pointwise };
        Ok(t.op(name, &[x], out, OpCost::new("Flatten").spatial(spatial).view()))
    }

    /// Global average pooling to `[N, C, 1, 1]` (or `[N, C]` when `keep_dims` is false).
    pub fn global_avg_pool(
        t: &mut dyn Tracer,
        name: Option<&str>,
        x: &Node,
        keep_dims: bool,
    ) -> Result<Node, TraceError> {
        if x.rank() < 3 {
            return Err(TraceError::Rank { op: "GlobalAvgPool".into(), expected: 4, shape: x.shape.clone() });
        }
        let mut out = x.shape[..2].to_vec();
        if keep_dims {
            out.extend(std::iter::repeat_n(1, x.rank() - 2));
        }
        Ok(t.op(name, &[x], out, OpCost::new("GlobalAvgPool").flops(x.numel()).spatial(Spatial::Collapse)))
    }
}

fn same_shapes(op: &str, inputs: &[&Node]) -> Result<(), TraceError> {
    if inputs.len() < 2 || inputs.iter().any(|n| n.shape != inputs[0].shape) {
        return Err(TraceError::Mismatch {
            op: op.to_string(),
            shapes: inputs.iter().map(|n| n.shape.clone()).collect(),
        });
    }
    Ok(())
}
