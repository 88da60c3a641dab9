//! Receptive-field, MAC and memory arithmetic on small graphs computed by hand.

use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::Device;
use kiln_analyze::{Rf, Status, analyze};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer, ops, trace_in};
use kiln_layers::{ActKind, ConvBnAct, ConvBnActConfig, DepthwiseSeparableConfig, UpsampleConfig, UpsampleMode};

fn conv(cin: usize, cout: usize, dilation: usize, device: &Device) -> ConvBnAct {
    ConvBnActConfig::new(cin, cout).with_dilation(dilation).with_norm(false).with_act(ActKind::Identity).init(device)
}

fn rf_of<M: Trace>(m: &M, input: &[usize]) -> (Rf, u64) {
    let r = analyze(m, "test", input).unwrap();
    (r.total.receptive_field, r.total.effective_stride)
}

#[test]
fn single_dilated_conv() {
    let device = Device::flex();
    for (d, expect) in [(1, 3), (2, 5), (3, 7)] {
        let m = vec![conv(1, 1, d, &device)];
        assert_eq!(rf_of(&m, &[1, 1, 32, 32]), (Rf::Pixels(expect), 1), "dilation {d}");
    }
}

#[test]
fn stacked_dilations_grow_exponentially() {
    let device = Device::flex();
    let m: Vec<ConvBnAct> = [1, 2, 4].iter().map(|&d| conv(1, 1, d, &device)).collect();
    let r = analyze(&m, "stack", &[1, 1, 32, 32]).unwrap();
    let rfs: Vec<Rf> = r.layers.iter().map(|l| l.receptive_field).collect();
    assert_eq!(rfs, vec![Rf::Pixels(3), Rf::Pixels(7), Rf::Pixels(15)]);
}

struct VggStage {
    convs: Vec<ConvBnAct>,
    pool: MaxPool2d,
}

impl Trace for VggStage {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let x = trace_in(t, "convs", &self.convs, x)?;
        trace_in(t, "pool", &self.pool, x)
    }
}

#[test]
fn two_vgg_stages_give_rf_16_stride_4() {
    let device = Device::flex();
    let stage = |cin| VggStage {
        convs: vec![conv(cin, 4, 1, &device), conv(4, 4, 1, &device)],
        pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
    };
    let m = vec![stage(3), stage(4)];
    let r = analyze(&m, "vgg-ish", &[1, 3, 32, 32]).unwrap();
    assert_eq!((r.total.receptive_field, r.total.effective_stride), (Rf::Pixels(16), 4));
    let rfs: Vec<Rf> = r.layers.iter().map(|l| l.receptive_field).collect();
    let px = |v: &[u64]| v.iter().map(|&p| Rf::Pixels(p)).collect::<Vec<_>>();
    assert_eq!(rfs, px(&[3, 5, 6, 10, 14, 16]));
    assert_eq!(r.total.output_shape, vec![1, 4, 8, 8]);
    // Effective padding: 1 + 1 + 0 + 2*1 + 2*1 = 6.
    assert_eq!(r.total.effective_padding, 6);
}

#[test]
fn depthwise_separable_mac_ratio() {
    let device = Device::flex();
    let ds = DepthwiseSeparableConfig::new(32, 64).init(&device);
    let std = ConvBnActConfig::new(32, 64).init(&device);
    let input = [1, 32, 112, 112];
    let ds_macs = analyze(&ds, "ds", &input).unwrap().total.macs;
    let std_macs = analyze(&std, "std", &input).unwrap().total.macs;
    assert_eq!(std_macs, 112 * 112 * 64 * 32 * 9);
    // ds / std == 1/64 + 1/9 == 73/576, exactly.
    assert_eq!(ds_macs * 576, std_macs * 73);
}

/// A residual block whose branch has a larger RF than its shortcut: the add takes the max.
struct Residual {
    branch: Vec<ConvBnAct>,
}

impl Trace for Residual {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let y = trace_in(t, "branch", &self.branch, x.clone())?;
        let s = ops::add(t, Some("add"), &[&y, &x])?;
        let c = ops::concat(t, Some("cat"), &[&s, &x], 1)?;
        ops::global_avg_pool(t, Some("pool"), &c, false)
    }
}

#[test]
fn dag_merges_take_the_max_over_paths_and_pooling_is_global() {
    let device = Device::flex();
    let m = Residual { branch: vec![conv(2, 2, 1, &device), conv(2, 2, 2, &device)] };
    let r = analyze(&m, "res", &[1, 2, 16, 16]).unwrap();
    let row = |n: &str| r.layers.iter().find(|l| l.name == n).unwrap().clone();
    assert_eq!(row("add").receptive_field, Rf::Pixels(7));
    assert_eq!(row("cat").receptive_field, Rf::Pixels(7));
    assert_eq!(row("cat").output_shape, vec![1, 4, 16, 16]);
    assert_eq!(row("pool").receptive_field, Rf::Global);
    assert_eq!(r.total.receptive_field, Rf::Pixels(7));
    assert_eq!(r.total.receptive_field_node, "cat");
    assert_eq!(r.total.output_shape, vec![1, 4]);
    // Add: one FLOP per element; concat none.
    assert_eq!(row("add").flops, Some(2 * 16 * 16));
    assert_eq!(row("cat").flops, Some(0));
    // Peak memory: input (2x16x16) + branch output + ... every tensor here is 2 or 4 channels.
    let f = 4 * 16 * 16;
    assert!(r.total.peak_activation_bytes >= (2 + 2 + 2) * f as u64);
    assert!(r.total.peak_activation_bytes <= (2 + 2 + 2 + 2 + 4) * f as u64);
}

#[test]
fn upsampling_divides_the_stride_and_reports_bilinear_flops() {
    let device = Device::flex();
    struct Down {
        c: ConvBnAct,
        up: kiln_layers::Upsample,
    }
    impl Trace for Down {
        fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
            let x = trace_in(t, "c", &self.c, x)?;
            trace_in(t, "up", &self.up, x)
        }
    }
    let m = Down {
        c: ConvBnActConfig::new(1, 1).with_stride(2).with_norm(false).init(&device),
        up: UpsampleConfig::new(UpsampleMode::Bilinear).with_scale_factor(Some(2.0)).init(),
    };
    let r = analyze(&m, "updown", &[1, 1, 16, 16]).unwrap();
    assert_eq!(r.total.output_shape, vec![1, 1, 16, 16]);
    assert_eq!(r.total.effective_stride, 1);
    // conv: 3; bilinear mixes 2 neighbours at jump 2: 3 + 2 = 5.
    assert_eq!(r.total.receptive_field, Rf::Pixels(5));
    assert_eq!(r.layers[2].flops, Some(7 * 16 * 16));
    assert_eq!(r.total.status, Status::Complete);
}

#[test]
fn json_schema_fields() {
    let device = Device::flex();
    let m = vec![conv(3, 8, 1, &device)];
    let r = analyze(&m, "one", &[1, 3, 8, 8]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for k in [
        "params",
        "buffers",
        "macs",
        "flops",
        "weight_bytes",
        "peak_activation_bytes",
        "receptive_field",
        "effective_stride",
        "status",
    ] {
        assert!(!v["total"][k].is_null(), "total.{k}");
    }
    for k in ["name", "op", "output_shape", "params", "macs", "flops", "receptive_field", "effective_stride", "status"]
    {
        assert!(!v["layers"][0][k].is_null(), "layers[0].{k}");
    }
    assert_eq!(v["input"], serde_json::json!([1, 3, 8, 8]));
    assert!(v["conventions"]["macs"].as_str().unwrap().contains("multiply-accumulate"));
    assert!(v["conventions"]["flops"].as_str().unwrap().contains("2 per MAC"));
    assert_eq!(v["total"]["params"], 3 * 8 * 9 + 8);
}
