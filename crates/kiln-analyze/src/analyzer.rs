//! The [`Tracer`] that turns a traced forward pass into a [`Report`].

use kiln_layers::trace::{Count, Node, OpCost, Spatial, Trace, Tracer, cost};

use crate::AnalyzeError;
use crate::report::{Conventions, Layer, Report, Rf, Status, Total};

const F32_BYTES: u64 = 4;

/// Receptive-field state of one tensor, per spatial dimension.
#[derive(Clone, Debug)]
struct RfState {
    /// Receptive field size in input pixels (per dim).
    rf: Vec<f64>,
    /// Effective stride: input pixels between adjacent outputs (per dim).
    jump: Vec<f64>,
    /// Effective padding (per dim).
    pad: Vec<f64>,
    /// Every output sees the whole input.
    global: bool,
    /// An op without a receptive-field formula was crossed.
    unknown: bool,
}

#[derive(Clone, Debug)]
struct NodeInfo {
    rf: RfState,
    /// Storage this tensor lives in (views share their source's storage).
    storage: usize,
}

/// Records ops into rows and propagates receptive fields. Use [`analyze`] unless you need to
/// drive a trace by hand (several inputs, say).
pub struct Analyzer {
    scopes: Vec<String>,
    nodes: Vec<NodeInfo>,
    layers: Vec<Layer>,
    /// For each row: the node ids it read and the node it produced.
    edges: Vec<(Vec<usize>, usize)>,
    storage_bytes: Vec<u64>,
    /// Input of the last op that collapsed the spatial dims.
    last_collapse_input: Option<usize>,
    inputs: Vec<usize>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyzer {
    /// An empty analyzer.
    pub fn new() -> Self {
        Self {
            scopes: vec![],
            nodes: vec![],
            layers: vec![],
            edges: vec![],
            storage_bytes: vec![],
            last_collapse_input: None,
            inputs: vec![],
        }
    }

    /// Declares a model input of the given shape (batch first).
    pub fn input(&mut self, shape: Vec<usize>) -> Node {
        let spatial = shape.len().saturating_sub(2);
        let rf = RfState {
            rf: vec![1.0; spatial],
            jump: vec![1.0; spatial],
            pad: vec![0.0; spatial],
            global: false,
            unknown: false,
        };
        let id = self.push_node(shape.clone(), rf, None);
        self.inputs.push(id);
        Node { id, shape }
    }

    fn push_node(&mut self, shape: Vec<usize>, rf: RfState, view_of: Option<usize>) -> usize {
        let storage = match view_of {
            Some(src) => self.nodes[src].storage,
            None => {
                let bytes = shape.iter().map(|&d| d as u64).product::<u64>() * F32_BYTES;
                self.storage_bytes.push(bytes);
                self.storage_bytes.len() - 1
            }
        };
        self.nodes.push(NodeInfo { rf, storage });
        self.nodes.len() - 1
    }

    fn path(&self, name: Option<&str>) -> String {
        let mut parts: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        if let Some(n) = name {
            parts.push(n);
        }
        parts.join(".")
    }

    /// Merges the receptive fields of several inputs: the max over aligned paths; global if any
    /// path is global.
    fn merge(&self, inputs: &[&Node]) -> RfState {
        let states: Vec<&RfState> = inputs.iter().map(|n| &self.nodes[n.id].rf).collect();
        let mut out = states[0].clone();
        for s in &states[1..] {
            out.global |= s.global;
            out.unknown |= s.unknown;
            if s.rf.len() == out.rf.len() {
                for i in 0..out.rf.len() {
                    out.rf[i] = out.rf[i].max(s.rf[i]);
                    out.jump[i] = out.jump[i].max(s.jump[i]);
                    out.pad[i] = out.pad[i].max(s.pad[i]);
                }
            } else if s.rf.len() > out.rf.len() {
                let (g, u) = (out.global, out.unknown);
                out = (*s).clone();
                out.global |= g;
                out.unknown |= u;
            }
        }
        out
    }

    fn propagate(&mut self, inputs: &[&Node], spatial: &Spatial) -> RfState {
        let mut s = if inputs.is_empty() {
            RfState { rf: vec![], jump: vec![], pad: vec![], global: false, unknown: false }
        } else {
            self.merge(inputs)
        };
        match spatial {
            Spatial::Pointwise => {}
            Spatial::Window { kernel, stride, padding, dilation } => {
                for i in 0..s.rf.len().min(kernel.len()) {
                    let k_eff = (dilation[i] * (kernel[i] - 1) + 1) as f64;
                    s.rf[i] += (k_eff - 1.0) * s.jump[i];
                    s.pad[i] += padding[i] as f64 * s.jump[i];
                    s.jump[i] *= stride[i] as f64;
                }
            }
            Spatial::SpaceToDepth { factor } => {
                for i in 0..s.rf.len() {
                    s.rf[i] += (*factor as f64 - 1.0) * s.jump[i];
                    s.jump[i] *= *factor as f64;
                }
            }
            Spatial::Upsample { scale, taps } => {
                for i in 0..s.rf.len().min(scale.len()) {
                    s.rf[i] += (taps[i] as f64 - 1.0) * s.jump[i];
                    s.jump[i] /= scale[i];
                }
            }
            Spatial::Collapse => {
                if let Some(first) = inputs.first() {
                    self.last_collapse_input = Some(first.id);
                }
                s.global = true;
            }
            Spatial::Unknown => s.unknown = true,
        }
        s
    }

    fn rf_of(&self, id: usize) -> (Rf, u64, u64) {
        let s = &self.nodes[id].rf;
        let stride = s.jump.iter().cloned().fold(0.0f64, f64::max).round() as u64;
        let pad = s.pad.iter().cloned().fold(0.0f64, f64::max).round() as u64;
        let rf = if s.unknown {
            Rf::Unknown
        } else if s.global || s.rf.is_empty() {
            Rf::Global
        } else {
            Rf::Pixels(s.rf.iter().cloned().fold(0.0f64, f64::max).round() as u64)
        };
        (rf, stride.max(if s.jump.is_empty() { 0 } else { 1 }), pad)
    }

    /// Finishes the analysis: totals, memory and the report.
    pub fn finish(self, model: &str, input: Vec<usize>, output: &Node) -> Report {
        // Peak activation memory: walk the ops in order; a storage is live from the op that
        // creates it to the last op that reads it (the model output stays live to the end).
        let n_ops = self.edges.len();
        let mut first_use = vec![usize::MAX; self.storage_bytes.len()];
        let mut last_use = vec![0usize; self.storage_bytes.len()];
        for &i in &self.inputs {
            let st = self.nodes[i].storage;
            first_use[st] = 0;
        }
        for (op, (ins, out)) in self.edges.iter().enumerate() {
            let st = self.nodes[*out].storage;
            first_use[st] = first_use[st].min(op);
            last_use[st] = last_use[st].max(op);
            for &i in ins {
                let st = self.nodes[i].storage;
                last_use[st] = last_use[st].max(op);
            }
        }
        last_use[self.nodes[output.id].storage] = n_ops;
        let mut peak = 0u64;
        for op in 0..n_ops.max(1) {
            let live: u64 = (0..self.storage_bytes.len())
                .filter(|&s| first_use[s] <= op && last_use[s] >= op)
                .map(|s| self.storage_bytes[s])
                .sum();
            peak = peak.max(live);
        }

        let mut total = Total {
            output_shape: output.shape.clone(),
            params: 0,
            buffers: 0,
            macs: 0,
            flops: 0,
            weight_bytes: 0,
            activation_bytes: 0,
            peak_activation_bytes: peak,
            receptive_field: Rf::Global,
            effective_stride: 0,
            effective_padding: 0,
            receptive_field_node: String::new(),
            status: Status::Complete,
            partial_ops: vec![],
        };
        for l in &self.layers {
            total.params += l.params;
            total.buffers += l.buffers;
            total.macs += l.macs.unwrap_or(0);
            total.flops += l.flops.unwrap_or(0);
            total.weight_bytes += l.weight_bytes;
            total.activation_bytes += l.output_bytes;
            if l.status != Status::Complete && !total.partial_ops.iter().any(|o| *o == l.op.as_str()) {
                total.partial_ops.push(l.op.to_string());
            }
        }
        if !total.partial_ops.is_empty() {
            total.status = Status::Partial;
        }
        let rf_node = self.last_collapse_input.unwrap_or(output.id);
        let (rf, stride, pad) = self.rf_of(rf_node);
        total.receptive_field = rf;
        total.effective_stride = stride;
        total.effective_padding = pad;
        total.receptive_field_node = self
            .edges
            .iter()
            .position(|(_, out)| *out == rf_node)
            .map(|i| self.layers[i].name.clone())
            .unwrap_or_else(|| "input".into());
        if total.receptive_field == Rf::Unknown {
            total.status = Status::Partial;
        }
        Report {
            model: model.to_string(),
            input,
            total,
            layers: self.layers,
            conventions: Conventions {
                macs: cost::MAC_CONVENTION.into(),
                flops: cost::FLOP_CONVENTION.into(),
                params: "params: trainable parameters (PyTorch's count); buffers: BatchNorm running mean and variance (Burn's num_params() counts both)".into(),
                memory: "float32 (4 bytes per element). weight_bytes: params + buffers. output_bytes: the layer's output activation. peak_activation_bytes: inference estimate, the largest sum of live activations while ops run in order, each freed after its last reader (views such as flatten and channel split share their source)".into(),
                receptive_field: "input pixels seen by one output (max over height/width and over aligned paths of the graph); \"global\" once an op mixes all positions (global pooling, squeeze-excite, flatten into a classifier). The total is taken at the input of the last such op: the final feature map".into(),
            },
        }
    }
}

impl Tracer for Analyzer {
    fn enter(&mut self, name: &str) {
        self.scopes.push(name.to_string());
    }

    fn exit(&mut self) {
        self.scopes.pop();
    }

    fn op(&mut self, name: Option<&str>, inputs: &[&Node], output: Vec<usize>, cost: OpCost) -> Node {
        let rf = self.propagate(inputs, &cost.spatial);
        let view_of = if cost.view { inputs.first().map(|n| n.id) } else { None };
        let id = self.push_node(output.clone(), rf, view_of);
        let (receptive_field, effective_stride, effective_padding) = self.rf_of(id);
        let mut missing = vec![];
        if cost.macs == Count::Unknown {
            missing.push("macs");
        }
        if cost.flops == Count::Unknown {
            missing.push("flops");
        }
        if cost.spatial == Spatial::Unknown {
            missing.push("receptive field");
        }
        let status = if missing.is_empty() { Status::Complete } else { Status::Partial };
        let output_bytes = if cost.view { 0 } else { output.iter().map(|&d| d as u64).product::<u64>() * F32_BYTES };
        self.layers.push(Layer {
            name: self.path(name),
            op: cost.op,
            detail: cost.detail,
            output_shape: output.clone(),
            params: cost.params,
            buffers: cost.buffers,
            macs: cost.macs.known(),
            flops: cost.flops.known(),
            weight_bytes: (cost.params + cost.buffers) * F32_BYTES,
            output_bytes,
            receptive_field,
            effective_stride,
            effective_padding,
            status,
            missing: missing.iter().map(|s| s.to_string()).collect(),
        });
        self.edges.push((inputs.iter().map(|n| n.id).collect(), id));
        Node { id, shape: output }
    }
}

/// Analyzes `model` on an input of shape `input` (batch first, e.g. `[1, 3, 224, 224]`).
pub fn analyze<M: Trace + ?Sized>(model: &M, name: &str, input: &[usize]) -> Result<Report, AnalyzeError> {
    if input.is_empty() || input.contains(&0) {
        return Err(AnalyzeError::BadInput(input.to_vec()));
    }
    let mut a = Analyzer::new();
    let x = a.input(input.to_vec());
    let out = model.trace(&mut a, x).map_err(|source| AnalyzeError::Trace { input: input.to_vec(), source })?;
    Ok(a.finish(name, input.to_vec(), &out))
}
