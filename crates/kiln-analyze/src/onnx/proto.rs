//! The subset of `onnx.proto` the analyzer reads, decoded from the wire format into borrowed
//! structs. Tensor payloads (`raw_data`, `float_data`, ...) are kept as slices of the file and
//! decoded only on request, for small integer / scalar constants: weights are never copied.
//!
//! Nesting is fixed (model -> graph -> node -> attribute -> tensor); sub-graphs of control-flow
//! attributes (`If`, `Loop`, `Scan`) are skipped by their length, not parsed, so no input can
//! make the reader recurse.

use super::OnnxError;
use super::wire::{Fields, Value};

/// ONNX `TensorProto.DataType` values the analyzer names.
pub(crate) mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    /// Floating-point element types (what counts as parameters).
    pub fn is_float(t: i32) -> bool {
        matches!(t, FLOAT | FLOAT16 | DOUBLE | BFLOAT16 | 17..=20 | 23)
    }

    /// Bytes per element of fixed-size types.
    pub fn size(t: i32) -> Option<usize> {
        Some(match t {
            UINT8 | INT8 | BOOL => 1,
            UINT16 | INT16 | FLOAT16 | BFLOAT16 => 2,
            FLOAT | INT32 | UINT32 => 4,
            INT64 | DOUBLE | UINT64 => 8,
            _ => return None,
        })
    }
}

/// `ModelProto`.
#[derive(Debug, Default)]
pub(crate) struct Model<'a> {
    pub ir_version: i64,
    pub producer: &'a str,
    /// `(domain, version)`; the default domain is `""`.
    pub opsets: Vec<(&'a str, i64)>,
    pub graph: Graph<'a>,
    pub has_graph: bool,
    /// Names of model-local functions (`FunctionProto`), which nodes may call.
    pub functions: Vec<&'a str>,
}

/// `GraphProto`.
#[derive(Debug, Default)]
pub(crate) struct Graph<'a> {
    pub name: &'a str,
    pub nodes: Vec<NodeP<'a>>,
    pub initializers: Vec<TensorP<'a>>,
    pub inputs: Vec<ValueInfo<'a>>,
    pub outputs: Vec<ValueInfo<'a>>,
    pub value_info: Vec<ValueInfo<'a>>,
}

/// `NodeProto`.
#[derive(Debug, Default)]
pub(crate) struct NodeP<'a> {
    pub inputs: Vec<&'a str>,
    pub outputs: Vec<&'a str>,
    pub name: &'a str,
    pub op_type: &'a str,
    pub domain: &'a str,
    pub attrs: Vec<Attr<'a>>,
    /// `metadata_props` (the dynamo exporter's module scopes live here).
    pub metadata: Vec<(&'a str, &'a str)>,
}

/// `AttributeProto`.
#[derive(Debug, Default)]
pub(crate) struct Attr<'a> {
    pub name: &'a str,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<&'a [u8]>,
    pub t: Option<TensorP<'a>>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    /// A sub-graph (skipped, not parsed).
    pub has_graph: bool,
}

/// `TensorProto`, payload unread.
#[derive(Debug, Default, Clone)]
pub(crate) struct TensorP<'a> {
    pub name: &'a str,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub raw: Option<&'a [u8]>,
    /// Typed payload fields `(field number, value)`: float_data 4, int32_data 5, int64_data 7,
    /// double_data 10, uint64_data 11.
    pub typed: Vec<(u32, Value<'a>)>,
    /// `external_data` entries (`location`, `offset`, `length`).
    pub external: Vec<(&'a str, &'a str)>,
    pub data_location_external: bool,
}

/// `ValueInfoProto` with a tensor type.
#[derive(Debug, Default, Clone)]
pub(crate) struct ValueInfo<'a> {
    pub name: &'a str,
    pub elem_type: i32,
    /// `None` when the shape is not given at all.
    pub dims: Option<Vec<Dim<'a>>>,
}

/// `TensorShapeProto.Dimension`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim<'a> {
    Value(i64),
    Param(&'a str),
    Unknown,
}

impl<'a> TensorP<'a> {
    /// Number of elements (`None` when a dim is negative or the product overflows).
    pub fn numel(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |acc, &d| if d < 0 { None } else { acc.checked_mul(d as u64) })
    }
}

/// Decodes a `ModelProto`.
pub(crate) fn model(buf: &[u8]) -> Result<Model<'_>, OnnxError> {
    let mut m = Model::default();
    let mut f = Fields::new(buf, "ModelProto");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => m.ir_version = v.int("ModelProto.ir_version")?,
            2 => m.producer = v.str("ModelProto.producer_name")?,
            7 => {
                m.graph = graph(v.bytes("ModelProto.graph")?)?;
                m.has_graph = true;
            }
            8 => {
                let mut g = Fields::new(v.bytes("ModelProto.opset_import")?, "OperatorSetIdProto");
                let (mut domain, mut version) = ("", 0);
                while let Some((n, v)) = g.next_field()? {
                    match n {
                        1 => domain = v.str("OperatorSetIdProto.domain")?,
                        2 => version = v.int("OperatorSetIdProto.version")?,
                        _ => {}
                    }
                }
                m.opsets.push((domain, version));
            }
            25 => {
                let mut g = Fields::new(v.bytes("ModelProto.functions")?, "FunctionProto");
                while let Some((n, v)) = g.next_field()? {
                    if n == 1 {
                        m.functions.push(v.str("FunctionProto.name")?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

fn graph(buf: &[u8]) -> Result<Graph<'_>, OnnxError> {
    let mut g = Graph::default();
    let mut f = Fields::new(buf, "GraphProto");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => g.nodes.push(node(v.bytes("GraphProto.node")?)?),
            2 => g.name = v.str("GraphProto.name")?,
            5 => g.initializers.push(tensor(v.bytes("GraphProto.initializer")?)?),
            11 => g.inputs.push(value_info(v.bytes("GraphProto.input")?)?),
            12 => g.outputs.push(value_info(v.bytes("GraphProto.output")?)?),
            13 => g.value_info.push(value_info(v.bytes("GraphProto.value_info")?)?),
            _ => {}
        }
    }
    Ok(g)
}

fn string_entry(buf: &[u8]) -> Result<(&str, &str), OnnxError> {
    let mut f = Fields::new(buf, "StringStringEntryProto");
    let (mut k, mut val) = ("", "");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => k = v.str("StringStringEntryProto.key")?,
            2 => val = v.str("StringStringEntryProto.value")?,
            _ => {}
        }
    }
    Ok((k, val))
}

fn node(buf: &[u8]) -> Result<NodeP<'_>, OnnxError> {
    let mut nd = NodeP::default();
    let mut f = Fields::new(buf, "NodeProto");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => nd.inputs.push(v.str("NodeProto.input")?),
            2 => nd.outputs.push(v.str("NodeProto.output")?),
            3 => nd.name = v.str("NodeProto.name")?,
            4 => nd.op_type = v.str("NodeProto.op_type")?,
            5 => nd.attrs.push(attr(v.bytes("NodeProto.attribute")?)?),
            7 => nd.domain = v.str("NodeProto.domain")?,
            9 => nd.metadata.push(string_entry(v.bytes("NodeProto.metadata_props")?)?),
            _ => {}
        }
    }
    Ok(nd)
}

fn attr(buf: &[u8]) -> Result<Attr<'_>, OnnxError> {
    let mut a = Attr::default();
    let mut f = Fields::new(buf, "AttributeProto");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => a.name = v.str("AttributeProto.name")?,
            2 => a.f = Some(v.float("AttributeProto.f")?),
            3 => a.i = Some(v.int("AttributeProto.i")?),
            4 => a.s = Some(v.bytes("AttributeProto.s")?),
            5 => a.t = Some(tensor(v.bytes("AttributeProto.t")?)?),
            6 | 11 => a.has_graph = true,
            7 => v.floats_into(&mut a.floats, "AttributeProto.floats")?,
            8 => v.ints_into(&mut a.ints, "AttributeProto.ints")?,
            _ => {}
        }
    }
    Ok(a)
}

fn tensor(buf: &[u8]) -> Result<TensorP<'_>, OnnxError> {
    let mut t = TensorP::default();
    let mut f = Fields::new(buf, "TensorProto");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => v.ints_into(&mut t.dims, "TensorProto.dims")?,
            2 => t.data_type = v.int("TensorProto.data_type")? as i32,
            8 => t.name = v.str("TensorProto.name")?,
            9 => t.raw = Some(v.bytes("TensorProto.raw_data")?),
            4 | 5 | 7 | 10 | 11 => t.typed.push((n, v)),
            13 => t.external.push(string_entry(v.bytes("TensorProto.external_data")?)?),
            14 => t.data_location_external = v.int("TensorProto.data_location")? == 1,
            _ => {}
        }
    }
    Ok(t)
}

fn value_info(buf: &[u8]) -> Result<ValueInfo<'_>, OnnxError> {
    let mut vi = ValueInfo::default();
    let mut f = Fields::new(buf, "ValueInfoProto");
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => vi.name = v.str("ValueInfoProto.name")?,
            2 => {
                let mut tp = Fields::new(v.bytes("ValueInfoProto.type")?, "TypeProto");
                while let Some((n, v)) = tp.next_field()? {
                    if n != 1 {
                        continue; // sequence / map / optional types: no tensor shape
                    }
                    let mut tt = Fields::new(v.bytes("TypeProto.tensor_type")?, "TypeProto.Tensor");
                    while let Some((n, v)) = tt.next_field()? {
                        match n {
                            1 => vi.elem_type = v.int("TypeProto.Tensor.elem_type")? as i32,
                            2 => {
                                let mut dims = vec![];
                                let mut sh = Fields::new(v.bytes("TypeProto.Tensor.shape")?, "TensorShapeProto");
                                while let Some((n, v)) = sh.next_field()? {
                                    if n != 1 {
                                        continue;
                                    }
                                    let mut d = Dim::Unknown;
                                    let mut df = Fields::new(v.bytes("TensorShapeProto.dim")?, "Dimension");
                                    while let Some((n, v)) = df.next_field()? {
                                        match n {
                                            1 => d = Dim::Value(v.int("Dimension.dim_value")?),
                                            2 => d = Dim::Param(v.str("Dimension.dim_param")?),
                                            _ => {}
                                        }
                                    }
                                    dims.push(d);
                                }
                                vi.dims = Some(dims);
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vi)
}
