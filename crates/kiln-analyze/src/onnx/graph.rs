//! Walks an ONNX graph in order: shape inference for every op, constant folding of the shape
//! arithmetic exporters emit (`Shape -> Gather -> Concat -> Reshape` and the like), and one
//! [`OpCost`] per op that touches the input, recorded on kiln's [`Analyzer`], so the report,
//! receptive fields and memory are computed by the very code that analyzes zoo models.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use kiln_layers::trace::{Count, Node, OpCost, OpKind, Spatial, Tracer, cost};

use super::OnnxError;
use super::proto::{Attr, Dim, Model, NodeP, TensorP, dtype};
use super::tensor::{Data, MAX_CONST_ELEMS, decode};
use crate::Analyzer;
use crate::report::Report;

/// The newest default-domain opset whose ops the analyzer was written against.
pub const MAX_OPSET: i64 = 23;

/// What is known about one tensor of the graph.
#[derive(Clone, Debug)]
struct Val {
    /// `None`: no op could infer it.
    shape: Option<Vec<usize>>,
    dtype: i32,
    /// Values, for small constants.
    data: Option<Data>,
    /// Computed from initializers and constants alone (no path from a graph input).
    konst: bool,
    /// The analyzer's node, for tensors computed from the input.
    node: Option<Node>,
    /// Float initializers this constant was computed from (indices into `Ctx::inits`).
    sources: Vec<usize>,
}

impl Val {
    fn constant(shape: Vec<usize>, dtype: i32, data: Option<Data>, sources: Vec<usize>) -> Self {
        Self { shape: Some(shape), dtype, data, konst: true, node: None, sources }
    }

    fn ints(&self) -> Option<Vec<i64>> {
        self.data.as_ref().map(|d| d.ints())
    }
    fn floats(&self) -> Option<Vec<f64>> {
        self.data.as_ref().map(|d| d.floats())
    }
    fn numel(&self) -> Option<u64> {
        self.shape.as_ref().map(|s| s.iter().map(|&d| d as u64).product())
    }
}

type OpResult<T> = Result<T, String>;

struct Ctx<'m, 'a> {
    dir: Option<&'m Path>,
    vals: HashMap<&'a str, Val>,
    /// Float initializers: name and element count.
    inits: Vec<(&'a str, u64)>,
    counted: Vec<bool>,
    /// `dim_param` names bound by the graph inputs.
    dim_params: HashMap<&'a str, usize>,
    value_info: HashMap<&'a str, &'m [Dim<'a>]>,
    a: Analyzer,
    functions: HashSet<&'a str>,
}

fn attr<'n, 'a>(n: &'n NodeP<'a>, name: &str) -> Option<&'n Attr<'a>> {
    n.attrs.iter().find(|a| a.name == name)
}
fn attr_i(n: &NodeP<'_>, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}
fn attr_f(n: &NodeP<'_>, name: &str) -> Option<f32> {
    attr(n, name).and_then(|a| a.f)
}
fn attr_ints(n: &NodeP<'_>, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}
fn attr_s<'a>(n: &NodeP<'a>, name: &str) -> Option<&'a str> {
    n.attrs.iter().find(|a| a.name == name).and_then(|a| a.s).and_then(|s| std::str::from_utf8(s).ok())
}

fn numel(s: &[usize]) -> u64 {
    s.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// The most elements one tensor may have (2^48: far beyond any real model, small enough that
/// MAC products cannot overflow).
const MAX_ELEMS: u64 = 1 << 48;
/// The largest kernel, stride, pad or dilation accepted.
const MAX_ATTR: i64 = 1 << 24;

/// Normalizes a possibly negative axis.
fn axis(a: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if v < 0 || v >= r.max(1) {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(v as usize)
}

/// Numpy's multidirectional broadcasting.
fn broadcast(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    Ok(out)
}

/// Element-wise evaluation of small constants with broadcasting.
fn eval_broadcast(ins: &[&Val], out: &[usize], f: &dyn Fn(&[f64]) -> f64, int: bool) -> Option<Data> {
    let n = numel(out);
    if n > MAX_CONST_ELEMS {
        return None;
    }
    let datas: Vec<Vec<f64>> = ins.iter().map(|v| v.floats()).collect::<Option<_>>()?;
    let shapes: Vec<&Vec<usize>> = ins.iter().map(|v| v.shape.as_ref()).collect::<Option<_>>()?;
    let rank = out.len();
    let mut res = Vec::with_capacity(n as usize);
    let mut idx = vec![0usize; rank];
    let mut args = vec![0f64; ins.len()];
    for _ in 0..n {
        for (k, s) in shapes.iter().enumerate() {
            let off = rank - s.len();
            let mut flat = 0usize;
            for (i, &d) in s.iter().enumerate() {
                flat = flat * d + if d == 1 { 0 } else { idx[off + i] };
            }
            args[k] = datas[k][flat];
        }
        res.push(f(&args));
        for i in (0..rank).rev() {
            idx[i] += 1;
            if idx[i] < out[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    Some(if int { Data::I(res.iter().map(|&x| x as i64).collect()) } else { Data::F(res) })
}

/// Output size of a sliding window op along each spatial dim, with the begin pads used.
struct WindowGeom {
    out: Vec<usize>,
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pad_begin: Vec<usize>,
}

fn window_geom(n: &NodeP<'_>, x: &[usize], kernel: Vec<usize>, ceil: bool) -> OpResult<WindowGeom> {
    let sp = kernel.len();
    if x.len() != sp + 2 {
        return Err(format!("input of rank {} for a {sp}-d kernel", x.len()));
    }
    let get = |name: &str, def: usize| -> OpResult<Vec<usize>> {
        match attr_ints(n, name) {
            Some(v) if v.len() == sp && v.iter().all(|&x| x >= 1) => Ok(v.iter().map(|&x| x as usize).collect()),
            Some(v) if v.is_empty() => Ok(vec![def; sp]),
            Some(v) => Err(format!("{name} {v:?} does not fit a {sp}-d kernel")),
            None => Ok(vec![def; sp]),
        }
    };
    let stride = get("strides", 1)?;
    let dilation = get("dilations", 1)?;
    if kernel.iter().chain(&stride).chain(&dilation).any(|&v| v as i64 > MAX_ATTR) {
        return Err(format!("a kernel, stride or dilation over {MAX_ATTR}"));
    }
    let auto = attr_s(n, "auto_pad").unwrap_or("NOTSET");
    let mut pads = vec![0usize; 2 * sp];
    match auto {
        "NOTSET" | "" => {
            if let Some(p) = attr_ints(n, "pads") {
                if p.len() != 2 * sp || p.iter().any(|&v| !(0..=MAX_ATTR).contains(&v)) {
                    return Err(format!("pads {p:?} do not fit a {sp}-d kernel"));
                }
                pads = p.iter().map(|&v| v as usize).collect();
            }
        }
        "VALID" => {}
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..sp {
                let inp = x[2 + i];
                let out = inp.div_ceil(stride[i]);
                let eff = dilation[i] * (kernel[i] - 1) + 1;
                let total = ((out.max(1) - 1) * stride[i] + eff).saturating_sub(inp);
                let (b, e) =
                    if auto == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) };
                pads[i] = b;
                pads[sp + i] = e;
            }
        }
        other => return Err(format!("auto_pad '{other}' is not an ONNX value")),
    }
    let mut out = vec![];
    for i in 0..sp {
        if kernel[i] == 0 {
            return Err("a zero kernel size".into());
        }
        let o = cost::window_out(n.op_type, x[2 + i], kernel[i], stride[i], pads[i] + pads[sp + i], dilation[i], ceil)
            .map_err(|e| e.to_string())?;
        out.push(o);
    }
    Ok(WindowGeom { out, kernel, stride, dilation, pad_begin: pads[..sp].to_vec() })
}

fn window_spatial(g: &WindowGeom) -> Spatial {
    Spatial::Window {
        kernel: g.kernel.clone(),
        stride: g.stride.clone(),
        padding: g.pad_begin.clone(),
        dilation: g.dilation.clone(),
    }
}

fn kdetail(k: &[usize]) -> String {
    k.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x")
}

/// Element-wise ops: (kiln's name, FLOPs per output element). Kiln's own conventions where the
/// zoo has the op; the rest are documented in the report's FLOP convention.
fn unary_flops(op: &str) -> Option<(&'static str, u64)> {
    Some(match op {
        "Relu" => ("ReLU", 1),
        "LeakyRelu" => ("LeakyReLU", 2),
        "Sigmoid" => ("Sigmoid", 4),
        "HardSwish" => ("Hardswish", 4),
        "Tanh" => ("Tanh", 5),
        "Erf" => ("Erf", 5),
        "Gelu" => ("GELU", 9),
        "Elu" => ("ELU", 5),
        "Selu" => ("SELU", 6),
        "Softplus" => ("Softplus", 5),
        "Mish" => ("Mish", 11),
        "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Exp" | "Log" | "Floor" | "Ceil" | "Round" | "Sign" | "Not" => {
            ("Unary", 1)
        }
        "Softmax" | "LogSoftmax" => ("Softmax", 3),
        _ => return None,
    })
}

/// Ops whose output is the first input rearranged, no arithmetic: `(view, name)`.
fn structural(op: &str) -> Option<bool> {
    Some(match op {
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" | "Slice" | "Split" => true,
        "Transpose" | "Concat" | "Gather" | "Expand" | "Tile" | "Cast" | "CastLike" | "Pad" | "DepthToSpace"
        | "SpaceToDepth" => false,
        _ => return None,
    })
}

impl<'m, 'a> Ctx<'m, 'a> {
    fn val(&self, name: &str) -> Option<&Val> {
        if name.is_empty() { None } else { self.vals.get(name) }
    }

    /// The shape the file's `value_info` gives a tensor, dim params resolved.
    fn declared_shape(&self, name: &str) -> Option<Vec<usize>> {
        let dims = self.value_info.get(name)?;
        dims.iter()
            .map(|d| match d {
                Dim::Value(v) if *v >= 0 => Some(*v as usize),
                Dim::Param(p) => self.dim_params.get(p).copied(),
                _ => None,
            })
            .collect()
    }

    /// Row name: the module scope (dynamo exporter), the weight's name, the node's scoped name
    /// (TorchScript exporter) or the node name.
    fn row_name(&self, n: &NodeP<'a>, index: usize) -> String {
        for i in n.inputs.iter().skip(1) {
            if let Some(base) = i.strip_suffix(".weight")
                && self.val(i).is_some_and(|v| v.konst)
            {
                return base.to_string();
            }
        }
        if let Some((_, scopes)) = n.metadata.iter().find(|(k, _)| *k == "pkg.torch.onnx.name_scopes") {
            let parts: Vec<&str> =
                scopes.trim_matches(['[', ']']).split(',').map(|s| s.trim().trim_matches(['\'', '"'])).collect();
            if parts.len() >= 2
                && let Some(p) = parts[..parts.len() - 1].iter().rev().find(|p| !p.is_empty())
            {
                return p.to_string();
            }
        }
        if let Some(rest) = n.name.strip_prefix('/') {
            let mut comps: Vec<&str> = rest.split('/').collect();
            comps.pop();
            let mut path = String::new();
            for c in comps {
                if path.is_empty() || c.starts_with(&format!("{path}.")) {
                    path = c.to_string();
                } else {
                    path = format!("{path}.{c}");
                }
            }
            if !path.is_empty() {
                return path;
            }
        }
        match n.name.trim_start_matches('/').strip_prefix("node_").unwrap_or(n.name.trim_start_matches('/')) {
            "" => format!("{}_{index}", n.op_type),
            name => name.to_string(),
        }
    }

    /// Takes the not-yet-counted float initializers behind input `i` of the node.
    fn take_params(&mut self, n: &NodeP<'a>, i: usize) -> u64 {
        let Some(v) = n.inputs.get(i).and_then(|name| self.val(name)) else { return 0 };
        if !v.konst {
            return 0;
        }
        let mut total = 0;
        for &s in &v.sources.clone() {
            if !self.counted[s] {
                self.counted[s] = true;
                total += self.inits[s].1;
            }
        }
        total
    }

    fn run_node(&mut self, n: &NodeP<'a>, index: usize) -> Result<(), OnnxError> {
        let ins: Vec<Option<Val>> = n.inputs.iter().map(|name| self.val(name).cloned()).collect();
        for (name, v) in n.inputs.iter().zip(&ins) {
            if !name.is_empty() && v.is_none() {
                return Err(OnnxError::Malformed(format!(
                    "node '{}' ({}) reads '{name}', which no earlier node, input or initializer produces",
                    n.name, n.op_type
                )));
            }
        }
        let known_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        let all_const = ins.iter().flatten().all(|v| v.konst) && !matches!(n.op_type, "RandomNormal" | "RandomUniform");
        if known_domain && n.op_type == "Constant" {
            let v = constant_node(n, self.dir)?;
            self.set(n.outputs.first().copied(), v);
            return Ok(());
        }
        if known_domain
            && matches!(n.op_type, "Shape" | "Size")
            && let Some(Some(x)) = ins.first()
            && let Some(s) = &x.shape
        {
            {
                let mut dims: Vec<i64> = s.iter().map(|&d| d as i64).collect();
                let v = if n.op_type == "Size" {
                    Val::constant(vec![], dtype::INT64, Some(Data::I(vec![numel(s) as i64])), vec![])
                } else {
                    let r = dims.len() as i64;
                    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                    let start = clamp(attr_i(n, "start", 0));
                    let end = clamp(attr_i(n, "end", r));
                    dims = dims[start..end.max(start)].to_vec();
                    Val::constant(vec![dims.len()], dtype::INT64, Some(Data::I(dims)), vec![])
                };
                self.set(n.outputs.first().copied(), v);
                return Ok(());
            }
        }
        if known_domain && all_const {
            let ins_ref: Vec<Option<&Val>> = ins.iter().map(|v| v.as_ref()).collect();
            let sources: Vec<usize> = {
                let mut s: Vec<usize> = ins.iter().flatten().flat_map(|v| v.sources.iter().copied()).collect();
                s.sort_unstable();
                s.dedup();
                s
            };
            if let Ok(outs) = infer(n, &ins_ref) {
                let datas = fold(n, &ins_ref, &outs);
                for (k, (shape, dt)) in outs.into_iter().enumerate() {
                    let data = datas.as_ref().and_then(|d| d.get(k).cloned());
                    let v = match shape {
                        Some(s) => Val::constant(s, dt, data, sources.clone()),
                        None => Val {
                            shape: None,
                            dtype: dt,
                            data: None,
                            konst: true,
                            node: None,
                            sources: sources.clone(),
                        },
                    };
                    self.set(n.outputs.get(k).copied(), v);
                }
                return Ok(());
            }
        }
        // An op on the input: a row.
        let ins_ref: Vec<Option<&Val>> = ins.iter().map(|v| v.as_ref()).collect();
        let name = self.row_name(n, index);
        let (outs, mut c, why) = if !known_domain {
            let mut c = unknown(n);
            if self.functions.contains(n.op_type) {
                c.op = OpKind::Other(format!("function {}", c.op));
            }
            (vec![], c, None)
        } else {
            match infer(n, &ins_ref) {
                Ok(outs) => {
                    let c = match outs.first() {
                        Some((Some(o), _)) => op_cost(n, &ins_ref, o),
                        _ => None,
                    };
                    match c {
                        Some(c) => (outs, c, None),
                        None => (outs, unknown(n), None),
                    }
                }
                Err(e) if is_supported(n.op_type) => (vec![], unknown(n), Some(e)),
                Err(_) => (vec![], unknown(n), None),
            }
        };
        let widest_in = ins.iter().flatten().filter_map(|v| v.numel()).max().unwrap_or(1);
        for (s, _) in &outs {
            if let Some(s) = s
                && (numel(s) > MAX_ELEMS || numel(s).saturating_mul(widest_in) >= 1 << 62)
            {
                return Err(OnnxError::Shape(format!(
                    "node '{}' ({}): output {s:?} is too large to count",
                    n.name, n.op_type
                )));
            }
        }
        if let Some(e) = why {
            return Err(OnnxError::Shape(format!(
                "node '{}' ({}): {e}",
                if n.name.is_empty() { &name } else { n.name },
                n.op_type
            )));
        }
        // Params: every float initializer reached for the first time. BatchNorm's running mean
        // and variance are buffers, as in the zoo.
        let mut params = 0;
        let mut buffers = 0;
        for i in 0..n.inputs.len() {
            let p = self.take_params(n, i);
            if n.op_type == "BatchNormalization" && i >= 3 {
                buffers += p;
            } else {
                params += p;
            }
        }
        c.params = params;
        c.buffers = buffers;
        let data_inputs: Vec<Node> = ins.iter().flatten().filter(|v| !v.konst).filter_map(|v| v.node.clone()).collect();
        let refs: Vec<&Node> = data_inputs.iter().collect();
        let mut first: Option<Node> = None;
        for (k, out) in n.outputs.iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            let inferred = outs.get(k).and_then(|(s, _)| s.clone());
            let dt =
                outs.get(k).map(|(_, d)| *d).or(ins.iter().flatten().next().map(|v| v.dtype)).unwrap_or(dtype::FLOAT);
            let shape = inferred.or_else(|| self.declared_shape(out));
            let node = if k == 0 || n.op_type == "Split" {
                let mut cost = c.clone();
                if k > 0 {
                    cost.params = 0;
                    cost.buffers = 0;
                }
                let row = if n.op_type == "Split" { format!("{name}:{k}") } else { name.clone() };
                self.a.op(Some(&row), &refs, shape.clone().unwrap_or_default(), cost)
            } else {
                // Secondary outputs (max-pool indices, training statistics, dropout masks): no
                // row of their own; they stand for the op's first output.
                let id = first.as_ref().map(|f| f.id).unwrap_or(0);
                Node { id, shape: shape.clone().unwrap_or_default() }
            };
            if first.is_none() {
                first = Some(node.clone());
            }
            self.vals
                .insert(out, Val { shape, dtype: dt, data: None, konst: false, node: Some(node), sources: vec![] });
        }
        Ok(())
    }

    fn set(&mut self, name: Option<&'a str>, v: Val) {
        if let Some(name) = name
            && !name.is_empty()
        {
            self.vals.insert(name, v);
        }
    }
}

fn unknown(n: &NodeP<'_>) -> OpCost {
    let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
        n.op_type.to_string()
    } else {
        format!("{}::{}", n.domain, n.op_type)
    };
    OpCost::new(op).unknown_cost().spatial(Spatial::Unknown)
}

/// Ops with shape inference here: a shape error on one of them is an error in the file or the
/// input shape, not a missing formula.
fn is_supported(op: &str) -> bool {
    matches!(
        op,
        "Conv"
            | "ConvTranspose"
            | "MaxPool"
            | "AveragePool"
            | "Gemm"
            | "MatMul"
            | "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Reshape"
            | "Concat"
            | "BatchNormalization"
            | "GlobalAveragePool"
            | "Flatten"
    )
}

/// `Constant`: the value from whichever attribute holds it.
fn constant_node(n: &NodeP<'_>, dir: Option<&Path>) -> Result<Val, OnnxError> {
    if let Some(t) = attr(n, "value").and_then(|a| a.t.as_ref()) {
        return tensor_val(t, dir, vec![]);
    }
    if let Some(v) = attr(n, "value_int").and_then(|a| a.i) {
        return Ok(Val::constant(vec![], dtype::INT64, Some(Data::I(vec![v])), vec![]));
    }
    if let Some(v) = attr(n, "value_float").and_then(|a| a.f) {
        return Ok(Val::constant(vec![], dtype::FLOAT, Some(Data::F(vec![v as f64])), vec![]));
    }
    if let Some(a) = attr(n, "value_ints") {
        return Ok(Val::constant(vec![a.ints.len()], dtype::INT64, Some(Data::I(a.ints.clone())), vec![]));
    }
    if let Some(a) = attr(n, "value_floats") {
        let d = a.floats.iter().map(|&x| x as f64).collect::<Vec<_>>();
        return Ok(Val::constant(vec![d.len()], dtype::FLOAT, Some(Data::F(d)), vec![]));
    }
    Err(OnnxError::Malformed(format!("Constant node '{}' has no value attribute kiln reads", n.name)))
}

fn tensor_val(t: &TensorP<'_>, dir: Option<&Path>, sources: Vec<usize>) -> Result<Val, OnnxError> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(|| OnnxError::Malformed(format!("tensor '{}' has negative dims {:?}", t.name, t.dims)))?;
    let n = t.numel().filter(|&n| n <= MAX_ELEMS).ok_or_else(|| {
        OnnxError::Malformed(format!("tensor '{}' has dims {:?}: more elements than any model holds", t.name, t.dims))
    })?;
    if let (Some(raw), Some(size)) = (t.raw, dtype::size(t.data_type))
        && raw.len() as u64 != n * size as u64
    {
        return Err(OnnxError::Malformed(format!(
            "tensor '{}' holds {} bytes, its dims {:?} need {}",
            t.name,
            raw.len(),
            t.dims,
            n * size as u64
        )));
    }
    // Float tensors are weights unless tiny and in the file (scalars such as Clip's bounds,
    // Resize's scales): their values are never read.
    let weight = dtype::is_float(t.data_type) && (n > 16 || t.data_location_external);
    let data = if weight { None } else { decode(t, dir)? };
    Ok(Val::constant(shape, t.data_type, data, sources))
}

fn ints_of(v: Option<&Val>) -> Option<Vec<i64>> {
    v.and_then(|v| v.ints())
}

/// Reduction axes from an input (opset >= 13/18) or attribute.
fn reduce_axes(n: &NodeP<'_>, ins: &[Option<&Val>], rank: usize) -> OpResult<Vec<usize>> {
    let raw = if let Some(a) = attr_ints(n, "axes") {
        Some(a)
    } else if let Some(v) = ins.get(1).copied().flatten() {
        Some(v.ints().ok_or("axes are not constant")?)
    } else {
        None
    };
    match raw {
        Some(a) if !a.is_empty() => a.iter().map(|&x| axis(x, rank)).collect(),
        _ if attr_i(n, "noop_with_empty_axes", 0) == 1 => Ok(vec![]),
        _ => Ok((0..rank).collect()),
    }
}

/// Shape (and element type) of each output.
fn infer(n: &NodeP<'_>, ins: &[Option<&Val>]) -> OpResult<Vec<(Option<Vec<usize>>, i32)>> {
    let x = ins.first().copied().flatten();
    let xs =
        || -> OpResult<Vec<usize>> { x.and_then(|v| v.shape.clone()).ok_or_else(|| "input shape unknown".to_string()) };
    let dt = x.map(|v| v.dtype).unwrap_or(dtype::FLOAT);
    let one = |s: Vec<usize>| Ok(vec![(Some(s), dt)]);
    let op = n.op_type;
    if unary_flops(op).is_some()
        || matches!(
            op,
            "Clip"
                | "HardSigmoid"
                | "Identity"
                | "BatchNormalization"
                | "LayerNormalization"
                | "InstanceNormalization"
                | "GroupNormalization"
                | "Dropout"
        )
    {
        let s = xs()?;
        let mut outs = vec![(Some(s.clone()), dt)];
        if op == "Dropout" && n.outputs.len() > 1 {
            outs.push((Some(s), dtype::BOOL));
        }
        return Ok(outs);
    }
    match op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Mod" | "PRelu" | "Where"
        | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            let shapes: Vec<Vec<usize>> =
                ins.iter().flatten().map(|v| v.shape.clone().ok_or("input shape unknown")).collect::<Result<_, _>>()?;
            let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
            let out = broadcast(&refs)?;
            let t = match op {
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => dtype::BOOL,
                "Where" => ins.get(1).copied().flatten().map(|v| v.dtype).unwrap_or(dt),
                _ => dt,
            };
            Ok(vec![(Some(out), t)])
        }
        "Cast" => Ok(vec![(Some(xs()?), attr_i(n, "to", dtype::FLOAT as i64) as i32)]),
        "CastLike" => Ok(vec![(Some(xs()?), ins.get(1).copied().flatten().map(|v| v.dtype).unwrap_or(dt))]),
        "Conv" => {
            let s = xs()?;
            let w = ins.get(1).copied().flatten().and_then(|v| v.shape.clone()).ok_or("weight shape unknown")?;
            if w.len() != s.len() || s.len() < 3 {
                return Err(format!("weight {w:?} does not fit input {s:?}"));
            }
            let group = attr_i(n, "group", 1).max(1) as usize;
            if s[1] != w[1] * group {
                return Err(format!(
                    "input {s:?} has {} channels, weight {w:?} with group {group} expects {}",
                    s[1],
                    w[1] * group
                ));
            }
            let kernel = attr_ints(n, "kernel_shape")
                .map(|k| k.iter().map(|&v| v as usize).collect())
                .unwrap_or(w[2..].to_vec());
            let g = window_geom(n, &s, kernel, false)?;
            let mut out = vec![s[0], w[0]];
            out.extend(g.out);
            one(out)
        }
        "ConvTranspose" => {
            let s = xs()?;
            let w = ins.get(1).copied().flatten().and_then(|v| v.shape.clone()).ok_or("weight shape unknown")?;
            if w.len() != s.len() || s.len() < 3 || w[0] != s[1] {
                return Err(format!("weight {w:?} does not fit input {s:?}"));
            }
            let sp = s.len() - 2;
            let group = attr_i(n, "group", 1).max(1) as usize;
            let get = |name: &str, def: i64| attr_ints(n, name).filter(|v| v.len() == sp).unwrap_or(vec![def; sp]);
            let (st, di, op_) = (get("strides", 1), get("dilations", 1), get("output_padding", 0));
            let pads = attr_ints(n, "pads").filter(|v| v.len() == 2 * sp).unwrap_or(vec![0; 2 * sp]);
            if st
                .iter()
                .chain(&di)
                .chain(&op_)
                .chain(&pads)
                .chain(w[2..].iter().map(|&k| k as i64).collect::<Vec<_>>().iter())
                .any(|&v| !(0..=MAX_ATTR).contains(&v))
            {
                return Err(format!("strides, dilations, pads or kernel outside 0..={MAX_ATTR}"));
            }
            let mut out = vec![s[0], w[1] * group];
            if let Some(os) = attr_ints(n, "output_shape").filter(|v| v.len() >= sp) {
                out.extend(os[os.len() - sp..].iter().map(|&v| v.max(0) as usize));
            } else {
                for i in 0..sp {
                    let v = st[i] * (s[2 + i] as i64 - 1) + op_[i] + (w[2 + i] as i64 - 1) * di[i] + 1
                        - pads[i]
                        - pads[sp + i];
                    if v <= 0 {
                        return Err(format!("output size {v} along dim {}", i + 2));
                    }
                    out.push(v as usize);
                }
            }
            one(out)
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let s = xs()?;
            let k: Vec<usize> =
                attr_ints(n, "kernel_shape").ok_or("no kernel_shape")?.iter().map(|&v| v.max(0) as usize).collect();
            let g = window_geom(n, &s, k, attr_i(n, "ceil_mode", 0) == 1)?;
            let mut out = s[..2].to_vec();
            out.extend(g.out);
            let mut outs = vec![(Some(out.clone()), dt)];
            if n.outputs.len() > 1 {
                outs.push((Some(out), dtype::INT64));
            }
            Ok(outs)
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let s = xs()?;
            if s.len() < 3 {
                return Err(format!("input {s:?} has no spatial dims"));
            }
            let mut out = s[..2].to_vec();
            out.extend(std::iter::repeat_n(1, s.len() - 2));
            one(out)
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2" | "ReduceL1"
        | "ReduceSumSquare" | "ReduceLogSumExp" | "ArgMax" | "ArgMin" => {
            let s = xs()?;
            let axes = if op.starts_with("Arg") {
                vec![axis(attr_i(n, "axis", 0), s.len())?]
            } else {
                reduce_axes(n, ins, s.len())?
            };
            let keep = attr_i(n, "keepdims", 1) == 1;
            let mut out = vec![];
            for (i, &d) in s.iter().enumerate() {
                if axes.contains(&i) {
                    if keep {
                        out.push(1);
                    }
                } else {
                    out.push(d);
                }
            }
            Ok(vec![(Some(out), if op.starts_with("Arg") { dtype::INT64 } else { dt })])
        }
        "Gemm" => {
            let a = xs()?;
            let b = ins.get(1).copied().flatten().and_then(|v| v.shape.clone()).ok_or("B shape unknown")?;
            if a.len() != 2 || b.len() != 2 {
                return Err(format!("Gemm needs 2-d A and B, got {a:?} and {b:?}"));
            }
            let (m, k) = if attr_i(n, "transA", 0) == 1 { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, nn) = if attr_i(n, "transB", 0) == 1 { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(format!("A {a:?} and B {b:?} disagree on K"));
            }
            one(vec![m, nn])
        }
        "MatMul" => {
            let a = xs()?;
            let b = ins.get(1).copied().flatten().and_then(|v| v.shape.clone()).ok_or("B shape unknown")?;
            matmul_shape(&a, &b).map(|s| vec![(Some(s), dt)])
        }
        "Flatten" => {
            let s = xs()?;
            let ax = attr_i(n, "axis", 1);
            let ax = if ax < 0 { ax + s.len() as i64 } else { ax };
            if ax < 0 || ax as usize > s.len() {
                return Err(format!("axis {ax} out of range for {s:?}"));
            }
            let ax = ax as usize;
            one(vec![s[..ax].iter().product(), s[ax..].iter().product()])
        }
        "Reshape" => {
            let s = xs()?;
            let target = ints_of(ins.get(1).copied().flatten()).ok_or("the target shape is not constant")?;
            let allowzero = attr_i(n, "allowzero", 0) == 1;
            let mut out = vec![];
            let mut infer_at = None;
            for (i, &t) in target.iter().enumerate() {
                match t {
                    -1 if infer_at.is_none() => {
                        infer_at = Some(i);
                        out.push(1);
                    }
                    0 if !allowzero => out.push(*s.get(i).ok_or("0 in the target shape past the input's rank")?),
                    t if t >= 0 => out.push(t as usize),
                    _ => return Err(format!("target shape {target:?}")),
                }
            }
            let total = numel(&s);
            let known = numel(&out);
            if let Some(i) = infer_at {
                if known == 0 || !total.is_multiple_of(known) {
                    return Err(format!("cannot reshape {s:?} to {target:?}"));
                }
                out[i] = (total / known) as usize;
            } else if known != total {
                return Err(format!("cannot reshape {s:?} ({total} elements) to {target:?}"));
            }
            one(out)
        }
        "Transpose" => {
            let s = xs()?;
            let perm: Vec<usize> = match attr_ints(n, "perm") {
                Some(p) if !p.is_empty() => p.iter().map(|&v| axis(v, s.len())).collect::<OpResult<_>>()?,
                _ => (0..s.len()).rev().collect(),
            };
            if perm.len() != s.len() {
                return Err(format!("perm {perm:?} for {s:?}"));
            }
            one(perm.iter().map(|&p| s[p]).collect())
        }
        "Concat" => {
            let shapes: Vec<Vec<usize>> =
                ins.iter().flatten().map(|v| v.shape.clone().ok_or("input shape unknown")).collect::<Result<_, _>>()?;
            let first = shapes.first().ok_or("no inputs")?.clone();
            let ax = axis(attr_i(n, "axis", 0), first.len())?;
            let mut out = first.clone();
            out[ax] = 0;
            for s in &shapes {
                if s.len() != first.len() || s.iter().zip(&first).enumerate().any(|(i, (a, b))| i != ax && a != b) {
                    return Err(format!("inputs {shapes:?} do not concatenate on axis {ax}"));
                }
                out[ax] += s[ax];
            }
            one(out)
        }
        "Split" => {
            let s = xs()?;
            let ax = axis(attr_i(n, "axis", 0), s.len())?;
            let parts: Vec<usize> = if let Some(sp) = attr_ints(n, "split").filter(|v| !v.is_empty()) {
                sp.iter().map(|&v| v.max(0) as usize).collect()
            } else if let Some(sp) = ints_of(ins.get(1).copied().flatten()) {
                sp.iter().map(|&v| v.max(0) as usize).collect()
            } else {
                let k = attr_i(n, "num_outputs", n.outputs.len() as i64).max(1) as usize;
                let chunk = s[ax].div_ceil(k);
                (0..k).map(|i| chunk.min(s[ax].saturating_sub(i * chunk))).collect()
            };
            if parts.iter().sum::<usize>() != s[ax] {
                return Err(format!("split {parts:?} of dim {} ({})", ax, s[ax]));
            }
            Ok(parts
                .iter()
                .map(|&p| {
                    let mut o = s.clone();
                    o[ax] = p;
                    (Some(o), dt)
                })
                .collect())
        }
        "Slice" => {
            let s = xs()?;
            let spec = slice_spec(n, ins, &s)?;
            one(spec.iter().map(|r| r.len()).collect())
        }
        "Squeeze" => {
            let s = xs()?;
            let axes: Option<Vec<usize>> = match attr_ints(n, "axes").or_else(|| ints_of(ins.get(1).copied().flatten()))
            {
                Some(a) => Some(a.iter().map(|&v| axis(v, s.len())).collect::<OpResult<_>>()?),
                None if ins.get(1).copied().flatten().is_some() => return Err("axes are not constant".into()),
                None => None,
            };
            one(s
                .iter()
                .enumerate()
                .filter(|(i, d)| match &axes {
                    Some(a) => !a.contains(i),
                    None => **d != 1,
                })
                .map(|(_, &d)| d)
                .collect())
        }
        "Unsqueeze" => {
            let s = xs()?;
            let raw = attr_ints(n, "axes")
                .or_else(|| ints_of(ins.get(1).copied().flatten()))
                .ok_or("axes are not constant")?;
            let r = s.len() + raw.len();
            let mut axes: Vec<usize> = raw.iter().map(|&v| axis(v, r)).collect::<OpResult<_>>()?;
            axes.sort_unstable();
            let mut out = s.clone();
            for a in axes {
                out.insert(a.min(out.len()), 1);
            }
            one(out)
        }
        "Gather" => {
            let s = xs()?;
            let idx = ins.get(1).copied().flatten().and_then(|v| v.shape.clone()).ok_or("indices shape unknown")?;
            let ax = axis(attr_i(n, "axis", 0), s.len())?;
            let mut out = s[..ax].to_vec();
            out.extend(idx);
            out.extend(&s[ax + 1..]);
            one(out)
        }
        "ConstantOfShape" => {
            let shape = ints_of(x).ok_or("the shape is not constant")?;
            let t = attr(n, "value").and_then(|a| a.t.as_ref()).map(|t| t.data_type).unwrap_or(dtype::FLOAT);
            Ok(vec![(Some(shape.iter().map(|&v| v.max(0) as usize).collect()), t)])
        }
        "Range" => {
            let f = |i: usize| ins.get(i).copied().flatten().and_then(|v| v.floats()).and_then(|v| v.first().copied());
            let (a, b, d) = (
                f(0).ok_or("start not constant")?,
                f(1).ok_or("limit not constant")?,
                f(2).ok_or("delta not constant")?,
            );
            if d == 0.0 {
                return Err("delta 0".into());
            }
            one(vec![((b - a) / d).ceil().max(0.0) as usize])
        }
        "Expand" => {
            let s = xs()?;
            let t: Vec<usize> = ints_of(ins.get(1).copied().flatten())
                .ok_or("the shape is not constant")?
                .iter()
                .map(|&v| v.max(0) as usize)
                .collect();
            one(broadcast(&[&s, &t])?)
        }
        "Tile" => {
            let s = xs()?;
            let r = ints_of(ins.get(1).copied().flatten()).ok_or("repeats are not constant")?;
            if r.len() != s.len() {
                return Err(format!("repeats {r:?} for {s:?}"));
            }
            one(s.iter().zip(&r).map(|(&d, &k)| d * k.max(0) as usize).collect())
        }
        "Pad" => {
            let s = xs()?;
            let pads = attr_ints(n, "pads")
                .or_else(|| ints_of(ins.get(1).copied().flatten()))
                .ok_or("pads are not constant")?;
            let axes: Vec<usize> = match ints_of(ins.get(3).copied().flatten()) {
                Some(a) => a.iter().map(|&v| axis(v, s.len())).collect::<OpResult<_>>()?,
                None => (0..s.len()).collect(),
            };
            if pads.len() != 2 * axes.len() {
                return Err(format!("pads {pads:?} for {s:?}"));
            }
            let mut out = s.clone();
            for (j, &a) in axes.iter().enumerate() {
                let v = s[a] as i64 + pads[j] + pads[axes.len() + j];
                if v < 0 {
                    return Err(format!("pads {pads:?} crop more than {s:?}"));
                }
                out[a] = v as usize;
            }
            one(out)
        }
        "Resize" | "Upsample" => {
            let s = xs()?;
            let (scales_i, sizes_i) = if op == "Upsample" || ins.len() == 2 { (1, 99) } else { (2, 3) };
            if let Some(sz) = ints_of(ins.get(sizes_i).copied().flatten()).filter(|v| !v.is_empty()) {
                let axes: Vec<usize> = match attr_ints(n, "axes") {
                    Some(a) => a.iter().map(|&v| axis(v, s.len())).collect::<OpResult<_>>()?,
                    None => (s.len() - sz.len()..s.len()).collect(),
                };
                let mut out = s.clone();
                for (j, &a) in axes.iter().enumerate() {
                    out[a] = sz[j].max(0) as usize;
                }
                return one(out);
            }
            let sc = ins
                .get(scales_i)
                .copied()
                .flatten()
                .and_then(|v| v.floats())
                .or_else(|| attr(n, "scales").map(|a| a.floats.iter().map(|&v| v as f64).collect()))
                .filter(|v| !v.is_empty())
                .ok_or("neither scales nor sizes are constant")?;
            if sc.len() != s.len() {
                return Err(format!("scales {sc:?} for {s:?}"));
            }
            one(s.iter().zip(&sc).map(|(&d, &k)| (d as f64 * k).floor() as usize).collect())
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let s = xs()?;
            let b = attr_i(n, "blocksize", 1).max(1) as usize;
            if s.len() != 4 {
                return Err(format!("input {s:?}"));
            }
            if op == "DepthToSpace" {
                one(vec![s[0], s[1] / (b * b), s[2] * b, s[3] * b])
            } else {
                one(vec![s[0], s[1] * b * b, s[2] / b, s[3] / b])
            }
        }
        _ => Err(format!("no shape inference for {op}")),
    }
}

fn matmul_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let (a2, b2): (Vec<usize>, Vec<usize>) =
        (if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() }, if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() });
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, nn) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("MatMul of {a:?} and {b:?}: inner dims differ"));
    }
    let mut out = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(nn);
    }
    Ok(out)
}

/// Per axis, the indices a Slice keeps.
#[derive(Clone, Debug)]
struct AxisSlice {
    start: i64,
    step: i64,
    count: usize,
}
impl AxisSlice {
    fn len(&self) -> usize {
        self.count
    }
}

fn slice_spec(n: &NodeP<'_>, ins: &[Option<&Val>], s: &[usize]) -> OpResult<Vec<AxisSlice>> {
    let get = |attr_name: &str, i: usize| -> OpResult<Option<Vec<i64>>> {
        if let Some(a) = attr_ints(n, attr_name) {
            return Ok(Some(a));
        }
        match ins.get(i).copied().flatten() {
            Some(v) => v.ints().map(Some).ok_or_else(|| format!("{attr_name} are not constant")),
            None => Ok(None),
        }
    };
    let starts = get("starts", 1)?.ok_or("no starts")?;
    let ends = get("ends", 2)?.ok_or("no ends")?;
    let axes = get("axes", 3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get("steps", 4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut out: Vec<AxisSlice> = s.iter().map(|&d| AxisSlice { start: 0, step: 1, count: d }).collect();
    for j in 0..starts.len() {
        let a = axis(axes[j], s.len())?;
        let d = s[a] as i64;
        let step = steps[j];
        if step == 0 {
            return Err("step 0".into());
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (st, en) = (norm(starts[j]), norm(ends[j]));
        let (st, en) =
            if step > 0 { (st.clamp(0, d), en.clamp(0, d)) } else { (st.clamp(0, d - 1), en.clamp(-1, d - 1)) };
        let count = if step > 0 {
            if en > st { ((en - st) + step - 1) / step } else { 0 }
        } else if st > en {
            ((st - en) + (-step) - 1) / (-step)
        } else {
            0
        };
        out[a] = AxisSlice { start: st, step, count: count as usize };
    }
    Ok(out)
}

/// Values of each output for the ops that shape arithmetic uses; `None` when not computed.
fn fold(n: &NodeP<'_>, ins: &[Option<&Val>], outs: &[(Option<Vec<usize>>, i32)]) -> Option<Vec<Data>> {
    let out_shape = outs.first()?.0.as_ref()?;
    if numel(out_shape) > MAX_CONST_ELEMS {
        return None;
    }
    let x = ins.first().copied().flatten();
    let int_out = !dtype::is_float(outs[0].1);
    let bin = |f: &dyn Fn(&[f64]) -> f64| -> Option<Vec<Data>> {
        let vals: Vec<&Val> = ins.iter().flatten().copied().collect();
        Some(vec![eval_broadcast(&vals, out_shape, f, int_out)?])
    };
    match n.op_type {
        "Identity" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Dropout" => Some(vec![x?.data.clone()?]),
        "Cast" | "CastLike" => {
            let d = x?.data.clone()?;
            Some(vec![if int_out { Data::I(d.ints()) } else { Data::F(d.floats()) }])
        }
        "Add" | "Sum" => bin(&|a| a.iter().sum()),
        "Sub" => bin(&|a| a[0] - a[1]),
        "Mul" => bin(&|a| a[0] * a[1]),
        "Div" => bin(&|a| if int_out { if a[1] == 0.0 { 0.0 } else { (a[0] / a[1]).trunc() } } else { a[0] / a[1] }),
        "Mod" => bin(&|a| if a[1] == 0.0 { 0.0 } else { a[0] - (a[0] / a[1]).floor() * a[1] }),
        "Max" => bin(&|a| a.iter().cloned().fold(f64::MIN, f64::max)),
        "Min" => bin(&|a| a.iter().cloned().fold(f64::MAX, f64::min)),
        "Pow" => bin(&|a| a[0].powf(a[1])),
        "Equal" => bin(&|a| (a[0] == a[1]) as i64 as f64),
        "Less" => bin(&|a| (a[0] < a[1]) as i64 as f64),
        "Greater" => bin(&|a| (a[0] > a[1]) as i64 as f64),
        "Where" => bin(&|a| if a[0] != 0.0 { a[1] } else { a[2] }),
        "Neg" => bin(&|a| -a[0]),
        "Abs" => bin(&|a| a[0].abs()),
        "Floor" => bin(&|a| a[0].floor()),
        "Ceil" => bin(&|a| a[0].ceil()),
        "Sqrt" => bin(&|a| a[0].sqrt()),
        "Not" => bin(&|a| (a[0] == 0.0) as i64 as f64),
        "Concat" => {
            let parts: Vec<&Data> = ins.iter().flatten().map(|v| v.data.as_ref()).collect::<Option<_>>()?;
            let ax = attr_i(n, "axis", 0);
            let rank = out_shape.len();
            if rank <= 1 || (ax == 0 && ins.iter().flatten().all(|v| v.shape.as_ref().is_some_and(|s| s.len() == rank)))
            {
                // Along the first axis (or 1-d): row-major data concatenates.
                let ok = rank <= 1 || ax == 0 || ax == -(rank as i64);
                if ok {
                    return Some(vec![Data::concat(&parts)]);
                }
            }
            None
        }
        "Gather" => {
            let d = x?.data.as_ref()?;
            let s = x?.shape.as_ref()?;
            let ax = axis(attr_i(n, "axis", 0), s.len()).ok()?;
            let idx = ins.get(1).copied().flatten()?.ints()?;
            let (outer, dim, inner): (usize, usize, usize) =
                (s[..ax].iter().product(), s[ax], s[ax + 1..].iter().product());
            let mut pick = vec![];
            for o in 0..outer {
                for &i in &idx {
                    let i = if i < 0 { i + dim as i64 } else { i };
                    if i < 0 || i as usize >= dim {
                        return None;
                    }
                    for k in 0..inner {
                        pick.push((o * dim + i as usize) * inner + k);
                    }
                }
            }
            Some(vec![d.pick(&pick)?])
        }
        "Slice" => {
            let d = x?.data.as_ref()?;
            let s = x?.shape.as_ref()?;
            let spec = slice_spec(n, ins, s).ok()?;
            let strides: Vec<usize> = (0..s.len()).map(|i| s[i + 1..].iter().product()).collect();
            let mut pick = vec![];
            let total = numel(out_shape) as usize;
            let mut idx = vec![0usize; s.len()];
            for _ in 0..total {
                let flat: i64 = idx
                    .iter()
                    .enumerate()
                    .map(|(a, &i)| (spec[a].start + i as i64 * spec[a].step) * strides[a] as i64)
                    .sum();
                pick.push(flat as usize);
                for a in (0..s.len()).rev() {
                    idx[a] += 1;
                    if idx[a] < spec[a].count {
                        break;
                    }
                    idx[a] = 0;
                }
            }
            Some(vec![d.pick(&pick)?])
        }
        "ConstantOfShape" => {
            let v = attr(n, "value").and_then(|a| a.t.as_ref()).and_then(|t| decode(t, None).ok().flatten());
            let n_el = numel(out_shape) as usize;
            Some(vec![match v {
                Some(Data::I(v)) => Data::I(vec![*v.first()?; n_el]),
                Some(Data::F(v)) => Data::F(vec![*v.first()?; n_el]),
                None => Data::F(vec![0.0; n_el]),
            }])
        }
        "Range" => {
            let f = |i: usize| ins.get(i).copied().flatten().and_then(|v| v.floats()).and_then(|v| v.first().copied());
            let (a, d) = (f(0)?, f(2)?);
            let vals: Vec<f64> = (0..out_shape[0]).map(|i| a + i as f64 * d).collect();
            Some(vec![if int_out { Data::I(vals.iter().map(|&v| v as i64).collect()) } else { Data::F(vals) }])
        }
        "Expand" => bin(&|a| a[0]).filter(|_| ins.len() == 2).and_then(|_| {
            let vals = [x?];
            Some(vec![eval_broadcast(&vals, out_shape, &|a| a[0], int_out)?])
        }),
        _ => None,
    }
}

/// Costs of an op on the input (the output shape is known).
fn op_cost(n: &NodeP<'_>, ins: &[Option<&Val>], out: &[usize]) -> Option<OpCost> {
    let op = n.op_type;
    let x = ins.first().copied().flatten()?;
    let xs = x.shape.as_ref()?;
    let out_n = numel(out);
    let in_n = numel(xs);
    let const_in = |i: usize| ins.get(i).copied().flatten().filter(|v| v.konst);
    if let Some((name, per)) = unary_flops(op) {
        let name = if name == "Unary" { op } else { name };
        return Some(OpCost::new(name).flops(per * out_n));
    }
    Some(match op {
        "Clip" => {
            let bound = |i: usize, attr_name: &str| -> Option<f64> {
                attr_f(n, attr_name)
                    .map(|v| v as f64)
                    .or_else(|| ins.get(i).copied().flatten().and_then(|v| v.floats()).and_then(|v| v.first().copied()))
            };
            let (lo, hi) = (bound(1, "min"), bound(2, "max"));
            match (lo, hi) {
                (Some(l), Some(h)) if l == 0.0 && h == 6.0 => OpCost::new("ReLU6").flops(2 * out_n),
                (Some(0.0), None) => OpCost::new("ReLU").flops(out_n),
                (Some(_), Some(_)) => OpCost::new("Clip").flops(2 * out_n),
                _ => OpCost::new("Clip").flops(out_n),
            }
        }
        "HardSigmoid" => {
            let alpha = attr_f(n, "alpha").unwrap_or(0.2);
            let name = if (alpha - 1.0 / 6.0).abs() < 1e-4 { "Hardsigmoid" } else { "HardSigmoid(legacy)" };
            OpCost::new(name).flops(3 * out_n)
        }
        "PRelu" => OpCost::new("PReLU").flops(2 * out_n),
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" | "Mean" | "Pow" | "Mod" | "Where" | "Equal" | "Less"
        | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            let k = ins.iter().flatten().count().max(2) as u64 - 1;
            OpCost::new(op).flops(k * out_n)
        }
        "BatchNormalization" => {
            let c = xs.get(1).copied().unwrap_or(0);
            OpCost::new("BatchNorm").detail(format!("{c}")).flops(2 * in_n)
        }
        "LayerNormalization" | "InstanceNormalization" | "GroupNormalization" => {
            let name = match op {
                "LayerNormalization" => "LayerNorm",
                "InstanceNormalization" => "InstanceNorm",
                _ => "GroupNorm",
            };
            let affine = ins.len() > 1;
            OpCost::new(name).flops(if affine { 7 } else { 5 } * in_n)
        }
        "Conv" => {
            let w = const_in(1).or(ins.get(1).copied().flatten())?.shape.clone()?;
            let bias = ins.get(2).copied().flatten().is_some();
            let (_, macs, flops) = cost::conv(&w, bias, out);
            let group = attr_i(n, "group", 1).max(1) as usize;
            let sp = w.len() - 2;
            let kernel = w[2..].to_vec();
            let g = window_geom(n, xs, kernel, false).ok()?;
            let kind = if group > 1 && group == w[0] && w[1] == 1 {
                format!("Conv{sp}d(depthwise)")
            } else {
                format!("Conv{sp}d")
            };
            let mut detail = format!("{}->{} k{} s{}", w[1] * group, w[0], kdetail(&w[2..]), g.stride[0]);
            if g.dilation.iter().any(|&d| d != 1) {
                detail += &format!(" d{}", g.dilation[0]);
            }
            if group > 1 {
                detail += &format!(" g{group}");
            }
            OpCost::new(kind).detail(detail).macs(macs).flops(flops).spatial(window_spatial(&g))
        }
        "ConvTranspose" => {
            let w = ins.get(1).copied().flatten()?.shape.clone()?;
            let group = attr_i(n, "group", 1).max(1) as usize;
            let bias = ins.get(2).copied().flatten().map(|_| w[1] * group);
            let (_, macs, flops) = cost::conv_transpose(&w, bias, xs, out);
            let sp = w.len() - 2;
            let st = attr_ints(n, "strides").filter(|v| v.len() == sp).unwrap_or(vec![1; sp]);
            let di = attr_ints(n, "dilations").filter(|v| v.len() == sp).unwrap_or(vec![1; sp]);
            let taps = (0..sp).map(|i| (di[i] as usize * (w[2 + i] - 1) + 1).div_ceil(st[i].max(1) as usize)).collect();
            OpCost::new(format!("ConvTranspose{sp}d"))
                .detail(format!("{}->{} k{} s{}", w[0], out[1], kdetail(&w[2..]), st[0]))
                .macs(macs)
                .flops(flops)
                .spatial(Spatial::Upsample {
                    scale: (0..sp).map(|i| out[2 + i] as f64 / xs[2 + i] as f64).collect(),
                    taps,
                })
        }
        "MaxPool" | "AveragePool" => {
            let k: Vec<usize> = attr_ints(n, "kernel_shape")?.iter().map(|&v| v as usize).collect();
            let g = window_geom(n, xs, k.clone(), attr_i(n, "ceil_mode", 0) == 1).ok()?;
            let ka = numel(&k);
            let sp = k.len();
            let (name, flops) = if op == "MaxPool" {
                (format!("MaxPool{sp}d"), out_n * (ka - 1))
            } else {
                (format!("AvgPool{sp}d"), out_n * ka)
            };
            OpCost::new(name)
                .detail(format!("k{} s{}", kdetail(&k), g.stride[0]))
                .flops(flops)
                .spatial(window_spatial(&g))
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let name = if op == "GlobalAveragePool" { "GlobalAvgPool" } else { "GlobalMaxPool" };
            OpCost::new(name).flops(in_n).spatial(Spatial::Collapse)
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" | "ReduceSumSquare" => {
            let axes = reduce_axes(n, ins, xs.len()).ok()?;
            let positions: usize = xs.iter().skip(2).product();
            let mixes_space = xs.len() >= 3 && axes.iter().any(|&a| a >= 2) && positions > 1;
            let name = if op == "ReduceMean"
                && xs.len() >= 3
                && (2..xs.len()).all(|a| axes.contains(&a))
                && !axes.contains(&1)
            {
                "GlobalAvgPool".to_string()
            } else {
                op.to_string()
            };
            let per = if op == "ReduceSumSquare" || op == "ReduceL2" { 2 } else { 1 };
            let c = OpCost::new(name).detail(format!("axes {axes:?}")).flops(per * in_n);
            if mixes_space { c.spatial(Spatial::Collapse) } else { c }
        }
        "Gemm" => {
            let b = ins.get(1).copied().flatten()?.shape.clone()?;
            let (k, nn) = if attr_i(n, "transB", 0) == 1 { (b[1], b[0]) } else { (b[0], b[1]) };
            let bias = ins.get(2).copied().flatten().is_some();
            let (_, macs, flops) = cost::linear(k, nn, bias, out[0] as u64);
            OpCost::new(if const_in(1).is_some() { "Linear" } else { "Gemm" })
                .detail(format!("{k}->{nn}"))
                .macs(macs)
                .flops(flops)
        }
        "MatMul" => {
            let b = ins.get(1).copied().flatten()?;
            let bs = b.shape.as_ref()?;
            let k = if xs.len() == 1 { xs[0] } else { xs[xs.len() - 1] };
            let macs = out_n * k as u64;
            let c = OpCost::new(if b.konst { "Linear" } else { "MatMul" }).macs(macs).flops(2 * macs);
            let c = if b.konst { c.detail(format!("{k}->{}", bs.last().copied().unwrap_or(1))) } else { c };
            // Two activations: every output mixes positions of both (attention).
            if b.konst { c } else { c.spatial(Spatial::Collapse) }
        }
        "Resize" | "Upsample" => {
            let mode = attr_s(n, "mode").unwrap_or("nearest");
            let sp: Vec<usize> = (2..xs.len()).filter(|&i| i < out.len()).collect();
            let resized = sp.iter().filter(|&&i| out[i] != xs[i]).count().max(1);
            let scale: Vec<f64> = sp.iter().map(|&i| out[i] as f64 / xs[i] as f64).collect();
            let (name, per, taps) = match mode {
                "nearest" => ("Upsample(Nearest)", Some(0), 1),
                "linear" | "bilinear" if resized <= 2 && xs.len() == 4 => ("Upsample(Bilinear)", Some(7), 2),
                "linear" | "trilinear" if xs.len() == 5 => ("Upsample(Trilinear)", Some(15), 2),
                "linear" => ("Upsample(Linear)", Some((1 << (resized + 1)) - 1), 2),
                _ => ("Upsample(Cubic)", None, 4),
            };
            let c = OpCost::new(name)
                .detail(format!("{:?}->{:?}", &xs[2..], &out[2..]))
                .spatial(Spatial::Upsample { scale, taps: vec![taps; sp.len()] });
            match per {
                Some(p) => c.flops(p * out_n),
                None => OpCost { flops: Count::Unknown, ..c },
            }
        }
        "Pad" => {
            let pads = attr_ints(n, "pads").or_else(|| ints_of(ins.get(1).copied().flatten()))?;
            let r = xs.len();
            let begin: Vec<usize> = if pads.len() == 2 * r {
                (2..r).map(|i| pads[i].max(0) as usize).collect()
            } else {
                vec![0; r.saturating_sub(2)]
            };
            let sp = begin.len();
            OpCost::new("Pad").detail(format!("{pads:?}")).spatial(Spatial::Window {
                kernel: vec![1; sp],
                stride: vec![1; sp],
                padding: begin,
                dilation: vec![1; sp],
            })
        }
        "Reshape" | "Flatten" => {
            let positions: usize = xs.iter().skip(2).product();
            let sp = xs.len().saturating_sub(2);
            let keeps_space = sp > 0 && out.len() >= sp && out[out.len() - sp..] == xs[2..];
            let c = OpCost::new(if op == "Flatten" { "Flatten" } else { "Reshape" }).detail(format!("{out:?}")).view();
            if xs.len() >= 3 && positions > 1 && !keeps_space { c.spatial(Spatial::Collapse) } else { c }
        }
        "Split" | "Slice" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" | "Transpose" | "Concat" | "Gather"
        | "Expand" | "Tile" | "Cast" | "CastLike" => {
            let name = if op == "Slice" { "Split" } else { op };
            let c = OpCost::new(name);
            if structural(op) == Some(true) { c.view() } else { c }
        }
        "DepthToSpace" => {
            let b = attr_i(n, "blocksize", 1).max(1) as usize;
            OpCost::new("PixelShuffle").spatial(Spatial::Upsample { scale: vec![b as f64; 2], taps: vec![1; 2] })
        }
        "SpaceToDepth" => OpCost::new("SpaceToDepth")
            .spatial(Spatial::SpaceToDepth { factor: attr_i(n, "blocksize", 1).max(1) as usize }),
        _ => return None,
    })
}

/// Analyzes a decoded model at the given graph-input shape.
pub(crate) fn analyze_model(
    m: &Model<'_>,
    name: &str,
    dir: Option<&Path>,
    input: Option<&[usize]>,
    batch: usize,
) -> Result<Report, OnnxError> {
    let g = &m.graph;
    let mut ctx = Ctx {
        dir,
        vals: HashMap::new(),
        inits: vec![],
        counted: vec![],
        dim_params: HashMap::new(),
        value_info: HashMap::new(),
        a: Analyzer::new(),
        functions: m.functions.iter().copied().collect(),
    };
    for vi in g.outputs.iter().chain(&g.value_info) {
        if let Some(d) = &vi.dims {
            ctx.value_info.insert(vi.name, d.as_slice());
        }
    }
    for t in &g.initializers {
        let sources = if dtype::is_float(t.data_type) {
            ctx.inits.push((t.name, t.numel().unwrap_or(0)));
            ctx.counted.push(false);
            vec![ctx.inits.len() - 1]
        } else {
            vec![]
        };
        let v = tensor_val(t, dir, sources)?;
        ctx.vals.insert(t.name, v);
    }
    // Graph inputs (those that are not initializers, for files of IR < 4).
    let real: Vec<_> = g.inputs.iter().filter(|i| !ctx.vals.contains_key(i.name)).collect();
    if real.is_empty() {
        return Err(OnnxError::Malformed("the graph has no input".into()));
    }
    let mut model_input = vec![];
    for (k, vi) in real.iter().enumerate() {
        let dims = vi.dims.as_ref().ok_or_else(|| {
            OnnxError::Dynamic(format!(
                "input '{}' has no shape in the file: give it with --input, e.g. --input 1x3x224x224",
                vi.name
            ))
        })?;
        let dyn_shape = || {
            dims.iter()
                .map(|d| match d {
                    Dim::Value(v) => v.to_string(),
                    Dim::Param(p) => p.to_string(),
                    Dim::Unknown => "?".into(),
                })
                .collect::<Vec<_>>()
                .join("x")
        };
        let shape: Vec<usize> = if k == 0
            && let Some(given) = input
        {
            let given: Vec<usize> = if given.len() + 1 == dims.len() {
                std::iter::once(batch).chain(given.iter().copied()).collect()
            } else {
                given.to_vec()
            };
            if given.len() != dims.len() || given.contains(&0) {
                return Err(OnnxError::Input(format!(
                    "--input {} does not fit input '{}' of shape {}: give {} dims (or {} without the batch)",
                    given.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"),
                    vi.name,
                    dyn_shape(),
                    dims.len(),
                    dims.len().saturating_sub(1)
                )));
            }
            for (i, d) in dims.iter().enumerate() {
                match d {
                    Dim::Value(v) if *v as usize != given[i] && *v > 0 => {
                        return Err(OnnxError::Input(format!(
                            "--input {:?} does not fit input '{}' of fixed shape {} (dim {i} is {v}); export the model with that dim dynamic, or give {}",
                            given,
                            vi.name,
                            dyn_shape(),
                            dyn_shape()
                        )));
                    }
                    Dim::Param(p) => {
                        ctx.dim_params.insert(p, given[i]);
                    }
                    _ => {}
                }
            }
            given
        } else {
            dims.iter()
                .map(|d| match d {
                    Dim::Value(v) if *v > 0 => Some(*v as usize),
                    Dim::Param(p) if k > 0 => ctx.dim_params.get(p).copied(),
                    _ => None,
                })
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    OnnxError::Dynamic(format!(
                        "input '{}' has the dynamic shape {}: give the shape with --input, e.g. --input {}",
                        vi.name,
                        dyn_shape(),
                        dims.iter()
                            .map(|d| match d {
                                Dim::Value(v) if *v > 0 => v.to_string(),
                                _ => "1".into(),
                            })
                            .collect::<Vec<_>>()
                            .join("x")
                    ))
                })?
        };
        if numel(&shape) > MAX_ELEMS {
            return Err(OnnxError::Input(format!("input '{}' of shape {shape:?} is too large to analyze", vi.name)));
        }
        if k == 0 {
            model_input = shape.clone();
        }
        let node = ctx.a.input(shape.clone());
        let dt = if vi.elem_type == 0 { dtype::FLOAT } else { vi.elem_type };
        ctx.vals.insert(
            vi.name,
            Val { shape: Some(shape), dtype: dt, data: None, konst: false, node: Some(node), sources: vec![] },
        );
    }
    for (i, n) in g.nodes.iter().enumerate() {
        ctx.run_node(n, i)?;
    }
    let out = g.outputs.first().ok_or_else(|| OnnxError::Malformed("the graph has no output".into()))?;
    let out_val = ctx
        .vals
        .get(out.name)
        .ok_or_else(|| OnnxError::Malformed(format!("no node produces the graph output '{}'", out.name)))?;
    let out_node = out_val.node.clone().unwrap_or(Node { id: 0, shape: out_val.shape.clone().unwrap_or_default() });
    let mut report = ctx.a.finish(name, model_input, &out_node);
    // Opsets newer than kiln knows: analyzed with the newest semantics kiln has, and said so.
    for (domain, v) in &m.opsets {
        if (domain.is_empty() || *domain == "ai.onnx") && *v > MAX_OPSET {
            report.total.status = crate::Status::Partial;
            report.total.partial_ops.push(format!("opset {v} (kiln knows up to {MAX_OPSET}; analyzed as {MAX_OPSET})"));
        }
    }
    report.conventions.params = "params: the elements of the file's floating-point initializers that the graph reads, each counted once (at its first reader) even when shared; buffers: BatchNormalization's running mean and variance; integer shape constants are neither".into();
    report.conventions.flops += " ONNX ops beyond the zoo: Clip 2 (1 with one bound), GELU 9 (x/sqrt2, erf 5, +1, two multiplies), erf 5, ELU 5, SELU 6, softplus 5, mish 11, PReLU 2, other unary arithmetic (neg, abs, sqrt, exp, log, reciprocal, floor, ceil) 1, softmax 3 (exp, sum, divide), LayerNorm / InstanceNorm / GroupNorm 7 (5 without scale and bias), reductions 1 per input element (sum of squares 2), matmul 2 per MAC, pad / transpose / gather / expand / cast 0; cubic resize has no formula.";
    Ok(report)
}
