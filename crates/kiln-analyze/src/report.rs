//! The analysis report: serde data first, then terminal table, Markdown and JSON views of it.

use kiln_layers::OpKind;
use serde::{Serialize, Serializer};

/// A receptive field: a size in input pixels, `"global"`, or `"unknown"` when an op on the path
/// has no formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rf {
    /// Size in input pixels (max over spatial dims).
    Pixels(u64),
    /// Every output sees the whole input.
    Global,
    /// No formula on the path.
    Unknown,
}

impl Serialize for Rf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rf::Pixels(v) => s.serialize_u64(*v),
            Rf::Global => s.serialize_str("global"),
            Rf::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl std::fmt::Display for Rf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rf::Pixels(v) => write!(f, "{v}"),
            Rf::Global => write!(f, "global"),
            Rf::Unknown => write!(f, "unknown"),
        }
    }
}

/// Whether every metric of a row (or of the whole model) was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every metric computed exactly.
    Complete,
    /// Some op had no formula for some metric; the row's `missing` (or the total's
    /// `partial_ops`) says which.
    Partial,
}

/// One row: a primitive op, named by its path in the model.
#[derive(Clone, Debug, Serialize)]
pub struct Layer {
    /// Path in the model, e.g. `features.3.conv.1`.
    pub name: String,
    /// Op kind, e.g. `Conv2d(depthwise)` (serialized as its printed name).
    pub op: OpKind,
    /// Hyper-parameters in short.
    pub detail: String,
    /// Output shape.
    pub output_shape: Vec<usize>,
    /// Trainable parameters.
    pub params: u64,
    /// Buffers (BatchNorm running statistics).
    pub buffers: u64,
    /// MACs (`null` when unknown).
    pub macs: Option<u64>,
    /// FLOPs (`null` when unknown).
    pub flops: Option<u64>,
    /// Bytes of params + buffers.
    pub weight_bytes: u64,
    /// Bytes of the output activation (0 for views).
    pub output_bytes: u64,
    /// Receptive field of the output.
    pub receptive_field: Rf,
    /// Effective stride (jump) of the output.
    pub effective_stride: u64,
    /// Effective padding of the output.
    pub effective_padding: u64,
    /// `complete` or `partial`.
    pub status: Status,
    /// Metrics this row lacks a formula for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// Whole-model totals.
#[derive(Clone, Debug, Serialize)]
pub struct Total {
    /// Output shape of the model.
    pub output_shape: Vec<usize>,
    /// Trainable parameters.
    pub params: u64,
    /// Buffers.
    pub buffers: u64,
    /// MACs.
    pub macs: u64,
    /// FLOPs.
    pub flops: u64,
    /// Bytes of params + buffers.
    pub weight_bytes: u64,
    /// Sum of all layer outputs' bytes (what training keeps for backward, roughly).
    pub activation_bytes: u64,
    /// Estimated peak activation memory for inference.
    pub peak_activation_bytes: u64,
    /// Receptive field of the final feature map (input of the last global op).
    pub receptive_field: Rf,
    /// Effective stride there.
    pub effective_stride: u64,
    /// Effective padding there.
    pub effective_padding: u64,
    /// The row whose output the totals' receptive field describes.
    pub receptive_field_node: String,
    /// `complete` or `partial`.
    pub status: Status,
    /// The ops that lack a formula (when partial).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partial_ops: Vec<String>,
}

/// How each metric is counted; printed with every report.
#[derive(Clone, Debug, Serialize)]
pub struct Conventions {
    /// MACs.
    pub macs: String,
    /// FLOPs.
    pub flops: String,
    /// Params and buffers.
    pub params: String,
    /// Memory.
    pub memory: String,
    /// Receptive field.
    pub receptive_field: String,
}

/// A complete analysis.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Input shape.
    pub input: Vec<usize>,
    /// Totals.
    pub total: Total,
    /// One row per primitive op, in execution order.
    pub layers: Vec<Layer>,
    /// Counting conventions.
    pub conventions: Conventions,
}

fn group_name(name: &str, depth: usize) -> String {
    name.split('.').take(depth).collect::<Vec<_>>().join(".")
}

impl Report {
    /// The rows folded to `depth` path components: consecutive rows sharing their first `depth`
    /// components become one row with summed counts and the last row's output. `None` keeps
    /// every primitive op.
    pub fn folded(&self, depth: Option<usize>) -> Vec<Layer> {
        let Some(depth) = depth else { return self.layers.clone() };
        let depth = depth.max(1);
        let mut out: Vec<(String, Layer, usize)> = vec![];
        for l in &self.layers {
            let g = group_name(&l.name, depth);
            match out.last_mut() {
                Some((name, acc, n)) if *name == g => {
                    acc.params += l.params;
                    acc.buffers += l.buffers;
                    acc.macs = acc.macs.zip(l.macs).map(|(a, b)| a + b);
                    acc.flops = acc.flops.zip(l.flops).map(|(a, b)| a + b);
                    acc.weight_bytes += l.weight_bytes;
                    acc.output_bytes += l.output_bytes;
                    acc.output_shape = l.output_shape.clone();
                    acc.receptive_field = l.receptive_field;
                    acc.effective_stride = l.effective_stride;
                    acc.effective_padding = l.effective_padding;
                    if l.status == Status::Partial {
                        acc.status = Status::Partial;
                        acc.missing.extend(l.missing.iter().cloned());
                    }
                    *n += 1;
                }
                _ => {
                    let mut acc = l.clone();
                    acc.name = g.clone();
                    out.push((g, acc, 1));
                }
            }
        }
        out.into_iter()
            .map(|(_, mut l, n)| {
                if n > 1 {
                    l.op = OpKind::Other(format!("Block ({n} ops)"));
                    l.detail.clear();
                }
                l
            })
            .collect()
    }

    /// JSON (the schema in docs/zoo.md).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// A terminal table like torchinfo's.
    pub fn to_table(&self, depth: Option<usize>) -> String {
        let rows = self.folded(depth);
        let header = ["Layer (path)", "Op", "Output shape", "Params", "MACs", "FLOPs", "RF", "Stride", "Status"];
        let cells: Vec<[String; 9]> = rows
            .iter()
            .map(|l| {
                [
                    l.name.clone(),
                    if l.detail.is_empty() { l.op.to_string() } else { format!("{} {}", l.op, l.detail) },
                    format!("{:?}", l.output_shape),
                    thousands(l.params),
                    l.macs.map(thousands).unwrap_or_else(|| "?".into()),
                    l.flops.map(thousands).unwrap_or_else(|| "?".into()),
                    l.receptive_field.to_string(),
                    l.effective_stride.to_string(),
                    match l.status {
                        Status::Complete => "ok".into(),
                        Status::Partial => format!("partial: no {}", l.missing.join(", ")),
                    },
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for c in &cells {
            for (i, v) in c.iter().enumerate() {
                widths[i] = widths[i].max(v.chars().count());
            }
        }
        let total_width: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let rule = "=".repeat(total_width);
        let line = |vals: &[String]| -> String {
            vals.iter()
                .enumerate()
                .map(|(i, v)| {
                    let pad = widths[i] - v.chars().count();
                    if (3..=7).contains(&i) {
                        format!("{}{}", " ".repeat(pad), v)
                    } else {
                        format!("{}{}", v, " ".repeat(pad))
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut s = String::new();
        s += &format!("{}  input {:?}\n{rule}\n", self.model, self.input);
        s += &line(&header.map(String::from));
        s += &format!("\n{}\n", "-".repeat(total_width));
        for c in &cells {
            s += &line(c);
            s.push('\n');
        }
        s += &format!("{rule}\n");
        s += &self.totals_text();
        s
    }

    fn totals_text(&self) -> String {
        let t = &self.total;
        let mut s = String::new();
        s += &format!("Output shape:           {:?}\n", t.output_shape);
        s += &format!("Trainable params:       {}\n", thousands(t.params));
        s += &format!("Buffers (BN stats):     {}\n", thousands(t.buffers));
        s += &format!("MACs:                   {} ({:.3} G)\n", thousands(t.macs), t.macs as f64 / 1e9);
        s += &format!("FLOPs:                  {} ({:.3} G)\n", thousands(t.flops), t.flops as f64 / 1e9);
        s += &format!("Weights:                {}\n", mib(t.weight_bytes));
        s += &format!("Activations (sum):      {}\n", mib(t.activation_bytes));
        s += &format!("Peak activations (inf): {}\n", mib(t.peak_activation_bytes));
        s += &format!(
            "Receptive field:        {} (effective stride {}, effective padding {}) at {}\n",
            t.receptive_field, t.effective_stride, t.effective_padding, t.receptive_field_node
        );
        s += &match t.status {
            Status::Complete => "Status:                 complete\n".to_string(),
            Status::Partial => {
                format!("Status:                 partial (no formula for: {})\n", t.partial_ops.join(", "))
            }
        };
        s += "Conventions:\n";
        s += &format!("  MACs:  {}\n", self.conventions.macs);
        s += &format!("  FLOPs: {}\n", self.conventions.flops);
        s
    }

    /// A Markdown table.
    pub fn to_markdown(&self, depth: Option<usize>) -> String {
        let mut s = format!("## {} — input {:?}\n\n", self.model, self.input);
        s += "| Layer | Op | Output shape | Params | MACs | FLOPs | RF | Stride | Status |\n";
        s += "|---|---|---|---:|---:|---:|---:|---:|---|\n";
        for l in self.folded(depth) {
            s += &format!(
                "| `{}` | {} | {:?} | {} | {} | {} | {} | {} | {} |\n",
                l.name,
                if l.detail.is_empty() { l.op.to_string() } else { format!("{} {}", l.op, l.detail) },
                l.output_shape,
                thousands(l.params),
                l.macs.map(thousands).unwrap_or_else(|| "?".into()),
                l.flops.map(thousands).unwrap_or_else(|| "?".into()),
                l.receptive_field,
                l.effective_stride,
                match l.status {
                    Status::Complete => "complete".to_string(),
                    Status::Partial => format!("partial ({})", l.missing.join(", ")),
                }
            );
        }
        s += "\n```\n";
        s += &self.totals_text();
        s += "```\n";
        s
    }
}

/// `1234567` -> `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB ({} bytes)", bytes as f64 / (1024.0 * 1024.0), thousands(bytes))
}

/// `s` as one printable line: control characters (newlines, NULs, escapes that a hostile file can
/// put in a name) are written as `\n`, `\u{0}`..., so an error that quotes a name from a file
/// stays one line.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
