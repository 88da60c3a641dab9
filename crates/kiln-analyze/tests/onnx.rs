//! ONNX analysis: files exported from torchvision by `scripts/export-onnx.py` (graph only, with
//! both of torch's exporters), and small models written here byte by byte to exercise shape
//! folding, dynamic shapes and bad input.

use std::path::PathBuf;

use kiln_analyze::onnx::{OnnxError, analyze_bytes, analyze_file};
use kiln_analyze::{Rf, Status};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// `(file, PyTorch forward-hook MACs, float initializer elements in the file (onnx.load), RF,
/// effective stride)`. The hook counts and initializer sums were printed by
/// `scripts/export-onnx.py` / `onnx` in Python; the RFs are the zoo's (`cargo xtask analyze`).
const EXPORTS: [(&str, u64, u64, u64, u64); 4] = [
    ("resnet18-dynamo.onnx", 1_814_073_344, 11_679_912, 435, 32),
    ("resnet18-torchscript.onnx", 1_814_073_344, 11_680_872, 435, 32),
    ("mobilenet_v2-dynamo.onnx", 300_774_272, 3_469_762, 491, 32),
    ("mobilenet_v2-torchscript.onnx", 300_774_272, 3_475_008, 491, 32),
];

#[test]
fn torchvision_exports_match_pytorch_hooks_and_the_file() {
    for (file, macs, float_elems, rf, stride) in EXPORTS {
        let r = analyze_file(&data(file), None, 1).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(r.total.status, Status::Complete, "{file}: {:?}", r.total.partial_ops);
        assert_eq!(r.total.macs, macs, "{file}");
        assert_eq!(r.total.params + r.total.buffers, float_elems, "{file}");
        assert_eq!((r.total.receptive_field, r.total.effective_stride), (Rf::Pixels(rf), stride), "{file}");
        assert_eq!(r.total.output_shape, vec![1, 1000], "{file}");
        assert_eq!(r.input, vec![1, 3, 224, 224]);
        // The classifier sees everything.
        assert_eq!(r.layers.last().unwrap().receptive_field, Rf::Global, "{file}");
        // Every row has a name from the file (module scope, weight or node name).
        assert!(r.layers.iter().all(|l| !l.name.is_empty()), "{file}");
    }
}

#[test]
fn torchvision_export_rows_are_named_by_module() {
    let r = analyze_file(&data("resnet18-torchscript.onnx"), None, 1).unwrap();
    let names: Vec<&str> = r.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names[0], "conv1");
    assert!(names.contains(&"layer1.0.conv1") && names.contains(&"fc"), "{names:?}");
    let r = analyze_file(&data("resnet18-dynamo.onnx"), None, 1).unwrap();
    let names: Vec<&str> = r.layers.iter().map(|l| l.name.as_str()).collect();
    assert!(names.contains(&"layer4.1.conv2") && names.contains(&"fc"), "{names:?}");
    // A fixed-size export refuses another size, in one line naming the fix.
    let e = analyze_file(&data("resnet18-dynamo.onnx"), Some(&[1, 3, 160, 160]), 1).unwrap_err().to_string();
    assert!(e.contains("fixed shape") && !e.contains('\n'), "{e}");
}

// ---- A protobuf writer, enough to make small ONNX files here. ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn int(field: u32, v: i64, out: &mut Vec<u8>) {
    varint((field as u64) << 3, out);
    varint(v as u64, out);
}
fn bytes(field: u32, b: &[u8], out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}
fn msg(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = vec![];
    f(&mut v);
    v
}
fn attr_ints(name: &str, ints: &[i64]) -> Vec<u8> {
    msg(|m| {
        bytes(1, name.as_bytes(), m);
        for &i in ints {
            int(8, i, m);
        }
        int(20, 7, m);
    })
}
fn attr_int(name: &str, i: i64) -> Vec<u8> {
    msg(|m| {
        bytes(1, name.as_bytes(), m);
        int(3, i, m);
        int(20, 2, m);
    })
}
fn node(op: &str, name: &str, ins: &[&str], outs: &[&str], attrs: &[Vec<u8>]) -> Vec<u8> {
    msg(|m| {
        for i in ins {
            bytes(1, i.as_bytes(), m);
        }
        for o in outs {
            bytes(2, o.as_bytes(), m);
        }
        bytes(3, name.as_bytes(), m);
        bytes(4, op.as_bytes(), m);
        for a in attrs {
            bytes(5, a, m);
        }
    })
}
/// A float32 initializer of zeros (values are never read) or an int64 one with values.
fn init(name: &str, dims: &[i64], ints: Option<&[i64]>) -> Vec<u8> {
    msg(|m| {
        for &d in dims {
            int(1, d, m);
        }
        int(2, if ints.is_some() { 7 } else { 1 }, m);
        bytes(8, name.as_bytes(), m);
        let raw: Vec<u8> = match ints {
            Some(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            None => vec![0; 4 * dims.iter().product::<i64>() as usize],
        };
        bytes(9, &raw, m);
    })
}
fn value_info(name: &str, dims: &[Result<i64, &str>]) -> Vec<u8> {
    let shape = msg(|m| {
        for d in dims {
            let dim = msg(|dm| match d {
                Ok(v) => int(1, *v, dm),
                Err(p) => bytes(2, p.as_bytes(), dm),
            });
            bytes(1, &dim, m);
        }
    });
    let tensor = msg(|m| {
        int(1, 1, m);
        if !dims.is_empty() {
            bytes(2, &shape, m);
        }
    });
    let ty = msg(|m| bytes(1, &tensor, m));
    msg(|m| {
        bytes(1, name.as_bytes(), m);
        bytes(2, &ty, m);
    })
}
fn model(
    nodes: &[Vec<u8>],
    inits: &[Vec<u8>],
    input: &[Result<i64, &str>],
    extra_vi: &[Vec<u8>],
    opset: i64,
) -> Vec<u8> {
    let graph = msg(|g| {
        for n in nodes {
            bytes(1, n, g);
        }
        bytes(2, b"test", g);
        for i in inits {
            bytes(5, i, g);
        }
        bytes(11, &value_info("x", input), g);
        bytes(12, &value_info("y", &[]), g);
        for v in extra_vi {
            bytes(13, v, g);
        }
    });
    msg(|m| {
        int(1, 9, m);
        bytes(2, b"kiln-test", m);
        bytes(7, &graph, m);
        let op = msg(|o| {
            bytes(1, b"", o);
            int(2, opset, o);
        });
        bytes(8, &op, m);
    })
}

/// x[N,3,8,8] -> Conv(4, k3, s2, p1) -> Relu -> MaxPool(k2, s2) -> Reshape to [N, -1] with the
/// batch read from Shape -> Gather -> Unsqueeze -> Concat (the TorchScript exporter's
/// `x.view(x.size(0), -1)`), -> Gemm(16 -> 5) -> optional op -> y.
fn small_net(extra: Option<&str>, opset: i64) -> Vec<u8> {
    let mut nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["c"],
            &[attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])],
        ),
        node("Relu", "/features/relu/Relu", &["c"], &["r"], &[]),
        node("MaxPool", "pool", &["r"], &["p"], &[attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])]),
        node("Shape", "shape", &["p"], &["s"], &[]),
        node("Gather", "gather", &["s", "zero"], &["n"], &[attr_int("axis", 0)]),
        node("Unsqueeze", "unsq", &["n", "axes0"], &["n1"], &[]),
        node("Concat", "cat", &["n1", "minus1"], &["target"], &[attr_int("axis", 0)]),
        node("Reshape", "flat", &["p", "target"], &["f"], &[]),
        node(
            "Gemm",
            "fc",
            &["f", "fc.weight", "fc.bias"],
            &[if extra.is_some() { "g" } else { "y" }],
            &[attr_int("transB", 1)],
        ),
    ];
    if let Some(op) = extra {
        nodes.push(node(op, "mystery", &["g"], &["y"], &[]));
    }
    let inits = [
        init("w", &[4, 3, 3, 3], None),
        init("b", &[4], None),
        init("fc.weight", &[5, 16], None),
        init("fc.bias", &[5], None),
        init("zero", &[], Some(&[0])),
        init("axes0", &[1], Some(&[0])),
        init("minus1", &[1], Some(&[-1])),
    ];
    let vi = [value_info("y", &[Err("N"), Ok(5)])];
    model(&nodes, &inits, &[Err("N"), Ok(3), Ok(8), Ok(8)], &vi, opset)
}

#[test]
fn dynamic_batch_is_resolved_from_the_input_and_shape_arithmetic_folds() {
    let bytes = small_net(None, 17);
    for (input, batch) in [(&[2usize, 3, 8, 8][..], 2usize), (&[3, 8, 8][..], 2)] {
        let r = analyze_bytes(&bytes, "small", None, Some(input), batch).unwrap();
        assert_eq!(r.total.status, Status::Complete, "{:?}", r.total.partial_ops);
        assert_eq!(r.input, vec![2, 3, 8, 8]);
        assert_eq!(r.total.output_shape, vec![2, 5]);
        // conv: 2*4*4*4 outputs x 27; fc: 2 x 16 x 5.
        assert_eq!(r.total.macs, 2 * 4 * 4 * 4 * 27 + 2 * 16 * 5);
        assert_eq!(r.total.params, 4 * 27 + 4 + 80 + 5);
        // The shape arithmetic is folded: no rows for Shape / Gather / Unsqueeze / Concat.
        let ops: Vec<&str> = r.layers.iter().map(|l| l.op.as_str()).collect();
        assert_eq!(ops, ["Conv2d", "ReLU", "MaxPool2d", "Reshape", "Linear"]);
        // RF: conv 3 (jump 2), pool 3 + 1*2 = 5 (jump 4); the reshape collapses to global.
        assert_eq!(
            (r.total.receptive_field, r.total.effective_stride, r.total.effective_padding),
            (Rf::Pixels(5), 4, 1)
        );
        assert_eq!(r.layers[3].receptive_field, Rf::Global);
        assert_eq!(r.layers[1].name, "features.relu");
        assert_eq!(r.layers[4].name, "fc");
        // Same schema as the zoo's JSON.
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["total"]["macs"], r.total.macs);
        assert_eq!(v["layers"][0]["receptive_field"], 3);
    }
    // No --input for a dynamic shape: one line naming the fix.
    let e = analyze_bytes(&bytes, "small", None, None, 1).unwrap_err();
    assert!(matches!(e, OnnxError::Dynamic(_)));
    let e = e.to_string();
    assert!(e.contains("dynamic shape Nx3x8x8") && e.contains("--input 1x3x8x8") && !e.contains('\n'), "{e}");
    // A wrong rank or channel count.
    let e = analyze_bytes(&bytes, "small", None, Some(&[8, 8]), 1).unwrap_err().to_string();
    assert!(e.contains("give 4 dims"), "{e}");
    let e = analyze_bytes(&bytes, "small", None, Some(&[1, 4, 8, 8]), 1).unwrap_err().to_string();
    assert!(e.contains("fixed shape"), "{e}");
}

#[test]
fn unknown_ops_and_opsets_are_partial_not_refused() {
    let r = analyze_bytes(&small_net(Some("FancyNewOp"), 17), "small", None, Some(&[1, 3, 8, 8]), 1).unwrap();
    assert_eq!(r.total.status, Status::Partial);
    assert_eq!(r.total.partial_ops, vec!["FancyNewOp".to_string()]);
    let last = r.layers.last().unwrap();
    assert_eq!((last.macs, last.flops, last.receptive_field), (None, None, Rf::Unknown));
    // Its output shape comes from the file's value_info, the batch bound from the input.
    assert_eq!(last.output_shape, vec![1, 5]);
    // The rest is still counted.
    assert_eq!(r.total.macs, 4 * 4 * 4 * 27 + 16 * 5);
    // A known op after the unknown one keeps being counted.
    let r = analyze_bytes(&small_net(Some("Sigmoid"), 99), "small", None, Some(&[1, 3, 8, 8]), 1).unwrap();
    assert_eq!(r.total.status, Status::Partial);
    assert!(r.total.partial_ops[0].starts_with("opset 99"), "{:?}", r.total.partial_ops);
    assert_eq!(r.layers.last().unwrap().flops, Some(4 * 5));
}

#[test]
fn bad_files_are_one_error_never_a_panic() {
    let good = small_net(None, 17);
    // Every truncation of a valid file that cuts into its graph is one error, never a panic
    // (the last 6 bytes are the opset entry, after the graph).
    for cut in 0..good.len() - 6 {
        let r = analyze_bytes(&good[..cut], "t", None, Some(&[1, 3, 8, 8]), 1);
        let e = r.err().unwrap_or_else(|| panic!("cut at {cut} analyzed")).to_string();
        assert!(!e.contains('\n'), "{e}");
    }
    for junk in [&b"hello, this is not onnx"[..], &[0xff; 64][..], &[][..], b"\x08\x07"] {
        let e = analyze_bytes(junk, "t", None, None, 1).unwrap_err().to_string();
        assert!(e.starts_with("not a valid ONNX model"), "{e}");
    }
    // Flipping each byte never panics.
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x5a;
        let _ = analyze_bytes(&b, "t", None, Some(&[1, 3, 8, 8]), 1);
    }
    let e = analyze_file(&data("no-such.onnx"), None, 1).unwrap_err().to_string();
    assert!(e.contains("no-such.onnx"), "{e}");
}

#[test]
fn external_data_is_read_only_for_shape_constants_and_checked() {
    // The Reshape target lives in an external file; the weights' external data does not exist
    // and is never opened.
    let dir = std::env::temp_dir().join(format!("kiln-onnx-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("m.onnx.data"),
        [0u8; 8].iter().chain(&(-1i64).to_le_bytes()).copied().collect::<Vec<u8>>(),
    )
    .unwrap();
    let ext = |name: &str, dims: &[i64], ty: i64, location: &str, offset: &str, length: &str| {
        msg(|m| {
            for &d in dims {
                int(1, d, m);
            }
            int(2, ty, m);
            bytes(8, name.as_bytes(), m);
            for (k, v) in [("location", location), ("offset", offset), ("length", length)] {
                bytes(
                    13,
                    &msg(|e| {
                        bytes(1, k.as_bytes(), e);
                        bytes(2, v.as_bytes(), e);
                    }),
                    m,
                );
            }
            int(14, 1, m);
        })
    };
    let build = |location: &str, offset: &str| {
        let nodes = [
            node("Conv", "conv", &["x", "w"], &["c"], &[attr_ints("kernel_shape", &[1, 1])]),
            node("Reshape", "flat", &["c", "target"], &["y"], &[]),
        ];
        let inits = [
            ext("w", &[2, 3, 1, 1], 1, "weights-that-are-not-there.bin", "0", "24"),
            ext("target", &[2], 7, location, offset, "16"),
        ];
        model(&nodes, &inits, &[Ok(1), Ok(3), Ok(4), Ok(4)], &[], 17)
    };
    let bytes_ok = build("m.onnx.data", "0");
    // target = [0, -1]: keep the batch, flatten the rest.
    std::fs::write(dir.join("m.onnx.data"), [0i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
        .unwrap();
    std::fs::write(dir.join("m.onnx"), &bytes_ok).unwrap();
    let r = analyze_file(&dir.join("m.onnx"), None, 1).unwrap();
    assert_eq!(r.total.output_shape, vec![1, 32]);
    assert_eq!(r.total.params, 6);
    for (location, offset, why) in [
        ("../m.onnx.data", "0", "not a plain name"),
        ("/etc/passwd", "0", "not a plain name"),
        ("m.onnx.data", "8", "past the end"),
    ] {
        std::fs::write(dir.join("bad.onnx"), build(location, offset)).unwrap();
        let e = analyze_file(&dir.join("bad.onnx"), None, 1).unwrap_err().to_string();
        assert!(e.contains(why), "{location}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
