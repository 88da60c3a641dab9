//! Every reader of a file that comes from elsewhere, fuzzed from real seed files (see
//! `crates/kiln-fuzz/corpus/README.md`): `.npy`, `.pth` (the pickle guard, then burn-store's
//! reader on what the guard lets through), MNIST IDX (raw and gzip), CIFAR-10 batches, PNG and
//! JPEG images, ONNX, and kiln's own files: `.kq8` (int8 weights), `.bpk` (burnpack weights), a
//! model folder's `model.json`, a compressed folder's plan and a training checkpoint record, written by kiln in the test from
//! a LeNet-5 quantized on the seed digits. One test runs them in turn (the panic hook and the
//! allocation record are per process / per thread), prints each target's counts, and fails with
//! the saved inputs if any property broke.
//!
//! `KILN_FUZZ_ITERS` scales the run (default 1: about a minute in all on the CI machine).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_fuzz::{Outcome, Target, default_bound, run};
use kiln_models::lenet::LeNet5Config;

#[global_allocator]
static ALLOC: kiln_fuzz::TrackingAlloc = kiln_fuzz::TrackingAlloc;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(corpus().join(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}

fn onnx_seed(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-analyze/tests/data").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()))
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An image may decode to what its file can hold ([`kiln_data::folder::decoded_limit`]), plus the
/// decoders' own row buffers.
fn image_bound(len: usize) -> usize {
    kiln_data::folder::decoded_limit(len) + default_bound(len)
}

fn digit_bytes(d: &kiln_data::ImageDataset) -> Vec<u8> {
    d.get(0).unwrap().0.iter().map(|&v| (v * 255.0) as u8).collect()
}

fn png_bytes(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<&[u8]>,
    data: &[u8],
) -> Vec<u8> {
    let mut out = vec![];
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        if let Some(p) = palette {
            e.set_palette(p.to_vec());
        }
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(data).unwrap();
    }
    out
}

fn iters(base: usize) -> usize {
    let scale: usize = std::env::var("KILN_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    base * scale.max(1)
}

#[test]
fn every_reader_survives_mutated_files() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-fuzz");
    let regressions = corpus().join("regressions");
    let tmp = out.join("files");
    std::fs::create_dir_all(&tmp).unwrap();
    let device = Device::flex();
    // Seeded: the .kq8 / .bpk seeds (and so every mutation of them) are the same on every run.
    device.seed(7);
    let lenet = LeNet5Config::new().init(&device);

    let npy = |b: &[u8]| kiln_models::npy::parse(b).map(|_| ());
    let pth = |b: &[u8]| {
        // kiln's loader: the pickle guard, then (what the guard accepts) burn-store's reader;
        // the tensors do not fit LeNet-5, so the refusal must still be one line naming the file.
        let path = tmp.join("in.pth");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        let mut m = lenet.clone();
        kiln_models::weights::load_pytorch(&mut m, &path, &[1, 1, 28, 28]).map(|_| ()).map_err(|e| e.to_string())
    };
    let idx_images =
        |b: &[u8]| kiln_data::idx::parse_idx_images(Path::new("x.idx3"), b).map(|_| ()).map_err(|e| e.to_string());
    let idx_labels =
        |b: &[u8]| kiln_data::idx::parse_idx_labels(Path::new("x.idx1"), b).map(|_| ()).map_err(|e| e.to_string());
    let images_gz = gz(&seed("mnist-2-images.idx3"));
    let labels_gz = tmp.join("labels.gz");
    std::fs::write(&labels_gz, gz(&seed("mnist-2-labels.idx1"))).unwrap();
    let idx_pair_gz = |b: &[u8]| {
        let path = tmp.join("images.gz");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        kiln_data::idx::read_idx_pair(&path, &labels_gz, Some(10), kiln_data::Split::Train)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    // kiln's own files, written from a LeNet-5 calibrated on the two seed digits.
    let digits = kiln_data::idx::read_idx_pair(
        &corpus().join("mnist-2-images.idx3"),
        &corpus().join("mnist-2-labels.idx1"),
        Some(10),
        kiln_data::Split::Train,
    )
    .unwrap();
    let q =
        kiln_compress::quantize(&lenet, [1, 28, 28], &digits, &kiln_compress::QuantConfig::default(), &device).unwrap();
    let kq8_seed = tmp.join("seed.kq8");
    q.save(&kq8_seed).unwrap();
    let bpk_seed = tmp.join("seed.bpk");
    kiln_models::weights::save_burnpack(&lenet, &bpk_seed).unwrap();
    let kq8 = |b: &[u8]| {
        let path = tmp.join("in.kq8");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        kiln_compress::quantize::load_kq8(lenet.clone(), &path).map(|_| ()).map_err(|e| e.to_string())
    };
    let bpk = |b: &[u8]| {
        let path = tmp.join("in.bpk");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        kiln_models::weights::load_burnpack(lenet.clone(), &path).map(|_| ()).map_err(|e| e.to_string())
    };
    let onnx =
        |b: &[u8]| kiln_analyze::onnx::analyze_bytes(b, "fuzz", None, None, 1).map(|_| ()).map_err(|e| e.to_string());
    // CIFAR-10 binary batches: two records (label + [3, 32, 32]) made from the seed digits.
    let cifar_seed: Vec<u8> = (0..2)
        .flat_map(|k| {
            let (img, label) = digits.get(k).unwrap();
            let mut rec = vec![label as u8];
            for _ in 0..3 {
                rec.extend((0..32 * 32).map(|i| {
                    let (y, x) = (i / 32, i % 32);
                    if (2..30).contains(&y) && (2..30).contains(&x) {
                        (img[(y - 2) * 28 + x - 2] * 255.0) as u8
                    } else {
                        0
                    }
                }));
            }
            rec
        })
        .collect();
    let cifar = |b: &[u8]| {
        let path = tmp.join("data_batch_1.bin");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        let names = kiln_data::cifar::CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
        kiln_data::cifar::read_cifar10_files(&[path], names, kiln_data::Split::Train)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    // PNG: the first seed digit as 8-bit grey, and a 1-bit palette image (the colour expansion
    // that multiplies a PNG's size the most); JPEG: the corpus's baseline and progressive files.
    let png_seeds = vec![
        png_bytes(28, 28, png::ColorType::Grayscale, png::BitDepth::Eight, None, &digit_bytes(&digits)),
        png_bytes(16, 4, png::ColorType::Indexed, png::BitDepth::One, Some(&[0, 0, 0, 255, 128, 0]), &[0b1010_0110; 8]),
    ];
    let image =
        |b: &[u8]| kiln_data::folder::decode_image_bytes(Path::new("x.png"), b).map(|_| ()).map_err(|e| e.to_string());
    // A trained model folder's model.json (next to LeNet-5's weights), read the way `run` and
    // `compress --from` read it: spec, then the architecture, then the weights.
    let model_dir = tmp.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    kiln_models::weights::save_burnpack(&lenet, &model_dir.join("model.bpk")).unwrap();
    let spec = kiln_train::saved::ModelSpec {
        format: kiln_train::saved::SPEC_FORMAT,
        model: "lenet5".into(),
        num_classes: 10,
        width_mult: 1.0,
        in_channels: 1,
        dropout: None,
        task: kiln_train::model::Task::Classification,
        input: kiln_train::data::InputAdapter {
            data_shape: [1, 28, 28],
            model_shape: [1, 28, 28],
            scaler: kiln_data::Scaler::fit(kiln_data::ScaleKind::ZScore, &digits).unwrap(),
            repeat_channels: false,
            resize: false,
            description: "28x28 (native)".into(),
        },
        class_names: (0..10).map(|d| d.to_string()).collect(),
        dataset: "mnist".into(),
    };
    let spec_seed = serde_json::to_vec_pretty(&spec).unwrap();
    let registry = kiln_models::Registry::builtin();
    let model_json = |b: &[u8]| {
        std::fs::write(model_dir.join("model.json"), b).map_err(|e| e.to_string())?;
        kiln_train::saved::load(&registry, &model_dir, &device).map(|_| ()).map_err(|e| e.to_string())
    };
    // A compressed model folder's plan (compress.json, next to the weights it describes), read
    // the way `run --weights` / `analyze --from` read a `compress` output.
    let plan_dir = tmp.join("compressed");
    let plan = kiln_compress::SavedPlan::new("lenet5", vec![1, 28, 28], 10, 1.0);
    kiln_compress::save_compressed(&lenet, &plan, &plan_dir).unwrap();
    let plan_seed = std::fs::read(plan_dir.join(kiln_compress::io::PLAN_FILE)).unwrap();
    let plan_json = |b: &[u8]| {
        std::fs::write(plan_dir.join(kiln_compress::io::PLAN_FILE), b).map_err(|e| e.to_string())?;
        kiln_compress::load_compressed(lenet.clone(), &plan_dir).map(|_| ()).map_err(|e| e.to_string())
    };
    // A training checkpoint record, read the way `train --resume` checks one before burn-train
    // loads it (a model record is LeNet-5's burnpack).
    let checkpoint = |b: &[u8]| {
        let path = tmp.join("model-1.bpk");
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        kiln_train::checkpoint::check_record(&path, "model")
    };

    let targets = [
        Target {
            name: "npy",
            seeds: vec![seed("numpy-f4.npy"), seed("small-f4.npy"), seed("small-f8-v2.npy")],
            iterations: iters(40_000),
            bound: default_bound,
            read: &npy,
            file: None,
        },
        Target {
            name: "pth",
            seeds: vec![seed("tiny-zip.pth"), seed("tiny-legacy.pth")],
            iterations: iters(15_000),
            bound: default_bound,
            read: &pth,
            file: Some("in.pth"),
        },
        Target {
            name: "idx-images",
            seeds: vec![seed("mnist-2-images.idx3")],
            iterations: iters(20_000),
            bound: default_bound,
            read: &idx_images,
            file: Some("x.idx3"),
        },
        Target {
            name: "idx-labels",
            seeds: vec![seed("mnist-2-labels.idx1")],
            iterations: iters(20_000),
            bound: default_bound,
            read: &idx_labels,
            file: Some("x.idx1"),
        },
        Target {
            name: "idx-gz",
            seeds: vec![images_gz],
            iterations: iters(10_000),
            bound: default_bound,
            read: &idx_pair_gz,
            file: Some("images.gz"),
        },
        Target {
            name: "onnx",
            seeds: vec![onnx_seed("resnet18-torchscript.onnx"), onnx_seed("resnet18-dynamo.onnx")],
            iterations: iters(5_000),
            bound: default_bound,
            read: &onnx,
            file: None,
        },
        Target {
            name: "kq8",
            seeds: vec![std::fs::read(&kq8_seed).unwrap()],
            iterations: iters(3_000),
            bound: default_bound,
            read: &kq8,
            file: Some("in.kq8"),
        },
        Target {
            name: "bpk",
            seeds: vec![std::fs::read(&bpk_seed).unwrap()],
            iterations: iters(3_000),
            bound: default_bound,
            read: &bpk,
            file: Some("in.bpk"),
        },
        Target {
            name: "cifar",
            seeds: vec![cifar_seed],
            iterations: iters(5_000),
            bound: default_bound,
            read: &cifar,
            file: Some("data_batch_1.bin"),
        },
        Target {
            name: "png",
            seeds: png_seeds,
            iterations: iters(10_000),
            bound: image_bound,
            read: &image,
            file: Some("x.png"),
        },
        Target {
            name: "jpeg",
            seeds: vec![seed("digit-baseline.jpg"), seed("color-progressive.jpg")],
            iterations: iters(10_000),
            bound: image_bound,
            read: &image,
            file: Some("x.png"),
        },
        Target {
            name: "model-json",
            seeds: vec![spec_seed],
            iterations: iters(3_000),
            bound: default_bound,
            read: &model_json,
            file: Some("model.json"),
        },
        Target {
            name: "plan",
            seeds: vec![plan_seed],
            iterations: iters(3_000),
            bound: default_bound,
            read: &plan_json,
            file: Some("compress.json"),
        },
        Target {
            name: "checkpoint",
            seeds: vec![std::fs::read(&bpk_seed).unwrap()],
            iterations: iters(2_000),
            bound: default_bound,
            read: &checkpoint,
            file: Some("model-1.bpk"),
        },
    ];
    let mut outcomes: Vec<Outcome> = vec![];
    for (i, t) in targets.iter().enumerate() {
        let o = run(t, &regressions, &out, 0x5EED + i as u64);
        eprintln!("{o}");
        outcomes.push(o);
    }
    let failures: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.failures.iter().map(move |(what, path)| format!("{}: {what} ({})", o.name, path.display())))
        .collect();
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // The seeds themselves are valid files: each target accepted at least its seeds (the .pth
    // seeds pass the guard; their tensors are not LeNet-5's, so the loader refuses them).
    for s in ["tiny-zip.pth", "tiny-legacy.pth"] {
        assert!(kiln_models::pickle_guard::check_bytes(&seed(s)).is_ok(), "{s}");
    }
    for (o, t) in outcomes.iter().zip(&targets) {
        assert!(o.accepted >= t.seeds.len() || t.name == "pth", "{o}");
    }
}
