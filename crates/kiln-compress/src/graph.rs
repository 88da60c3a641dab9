//! The dataflow graph of a model, recorded from its [`Trace`]: every primitive op with its
//! inputs, output shape and the Burn parameter ids of its tensors. Pruning, BN folding and
//! quantization read the model's structure from here, so they work on any model that implements
//! `Trace` — there is no table keyed by model names.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use kiln_layers::trace::{Node, OpCost, OpKind, Spatial, Trace, Tracer};

use crate::error::CompressError;

/// One recorded op.
#[derive(Clone, Debug)]
pub struct OpNode {
    /// Torch-style path (`features.3.conv.1`).
    pub path: String,
    /// Op kind (`Conv2d`, `Conv2d(depthwise)`, `BatchNorm`, `Linear`, `Add`, `Concat`...).
    pub op: OpKind,
    /// The op's detail string (kernel, stride, groups).
    pub detail: String,
    /// Ids of the input nodes (the graph input is node 0).
    pub inputs: Vec<usize>,
    /// Id of the output node.
    pub output: usize,
    /// Output shape.
    pub shape: Vec<usize>,
    /// How the op maps positions (kernel, stride, padding of windows).
    pub spatial: Spatial,
    /// `(suffix, param id)` of the op's tensors (`weight`, `bias`, `running_mean`...).
    pub tensors: Vec<(String, u64)>,
}

impl OpNode {
    /// The param id of the tensor with this suffix.
    pub fn tensor(&self, suffix: &str) -> Option<u64> {
        self.tensors.iter().find(|(s, _)| s == suffix).map(|(_, id)| *id)
    }

    /// Whether the op is a 2-D convolution (any groups).
    pub fn is_conv(&self) -> bool {
        self.op.is_conv()
    }
}

/// The recorded graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Ops in execution order.
    pub ops: Vec<OpNode>,
    /// Shape of every node by id (node 0 is the input).
    pub shapes: Vec<Vec<usize>>,
}

impl Graph {
    /// Records the graph of `model` at `input` (`[N, C, H, W]`).
    pub fn of<M: Trace + ?Sized>(model: &M, input: &[usize]) -> Result<Self, CompressError> {
        let mut rec = Recorder { graph: Graph::default(), scope: vec![] };
        rec.graph.shapes.push(input.to_vec());
        let x = Node { id: 0, shape: input.to_vec() };
        model.trace(&mut rec, x).map_err(|e| CompressError::Trace(e.to_string()))?;
        Ok(rec.graph)
    }

    /// The op that produced node `id` (`None` for the graph input).
    pub fn producer(&self, id: usize) -> Option<&OpNode> {
        self.ops.iter().find(|o| o.output == id)
    }

    /// The ops that read node `id`.
    pub fn consumers(&self, id: usize) -> Vec<&OpNode> {
        self.ops.iter().filter(|o| o.inputs.contains(&id)).collect()
    }

    /// Ops that own a weight (convolutions and linear layers), in order.
    pub fn weighted(&self) -> impl Iterator<Item = &OpNode> {
        self.ops.iter().filter(|o| o.op.is_weighted() && o.tensor("weight").is_some())
    }
}

struct Recorder {
    graph: Graph,
    scope: Vec<String>,
}

impl Tracer for Recorder {
    fn enter(&mut self, name: &str) {
        self.scope.push(name.to_string());
    }

    fn exit(&mut self) {
        self.scope.pop();
    }

    fn op(&mut self, name: Option<&str>, inputs: &[&Node], output: Vec<usize>, cost: OpCost) -> Node {
        let id = self.graph.shapes.len();
        self.graph.shapes.push(output.clone());
        let mut path = self.scope.join(".");
        if let Some(n) = name {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(n);
        }
        self.graph.ops.push(OpNode {
            path,
            op: cost.op,
            detail: cost.detail,
            inputs: inputs.iter().map(|n| n.id).collect(),
            output: id,
            shape: output.clone(),
            spatial: cost.spatial,
            tensors: cost.tensors,
        });
        Node { id, shape: output }
    }
}

/// A float tensor of a module: its param id, Burn path and values.
#[derive(Clone, Debug)]
pub struct ParamValue {
    /// Burn's module path (`conv1.weight`).
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major (the effective value when a reparameterization such as a mask is
    /// attached).
    pub values: Vec<f32>,
}

/// Every float tensor of `module` by param id (masks and other reparameterization state
/// excluded: only the tensors of the module itself).
pub fn param_values<M: Module>(module: &M) -> HashMap<u64, ParamValue> {
    struct V {
        scope: Vec<String>,
        depth_reparam: usize,
        out: HashMap<u64, ParamValue>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            if container_type == "Reparameterization" {
                self.depth_reparam += 1;
            }
            self.scope.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            if container_type == "Reparameterization" {
                self.depth_reparam -= 1;
            }
            self.scope.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.depth_reparam > 0 {
                return;
            }
            let t = p.val();
            let shape = t.dims().to_vec();
            let values = t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
            self.out.insert(p.id.val(), ParamValue { path: self.scope.join("."), shape, values });
        }
    }
    let mut v = V { scope: vec![], depth_reparam: 0, out: HashMap::new() };
    module.visit(&mut v);
    v.out
}

/// Replaces the tensors of `module` whose param id is in `new` by `(shape, values)`; ids, paths
/// and attached reparameterizations are kept.
pub fn replace_params<M: Module>(module: M, new: &HashMap<u64, (Vec<usize>, Vec<f32>)>) -> M {
    struct R<'a> {
        new: &'a HashMap<u64, (Vec<usize>, Vec<f32>)>,
    }
    impl burn::module::ModuleMapper for R<'_> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some((shape, values)) = self.new.get(&p.id.val()) else { return p };
            let (shape, values) = (shape.clone(), values.clone());
            p.map(move |t| {
                let device = t.device();
                let data = burn::tensor::TensorData::new(values, shape);
                let fresh = Tensor::<D>::from_data(data, &device);
                if t.is_require_grad() { fresh.require_grad() } else { fresh }
            })
        }
    }
    module.map(&mut R { new })
}
