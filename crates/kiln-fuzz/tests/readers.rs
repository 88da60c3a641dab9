//! Every reader of a file that comes from elsewhere, fuzzed from real seed files (see
//! `crates/kiln-fuzz/corpus/README.md`): `.npy`, `.pth` (the pickle guard, then burn-store's
//! reader on what the guard lets through), MNIST IDX (raw and gzip), ONNX, and kiln's own model
//! files: `.kq8` (int8 weights) and `.bpk` (burnpack weights), written by kiln in the test from a
//! LeNet-5 quantized on the seed digits. One test runs them in
//! turn (the panic hook and the allocation record are per process / per thread), prints each
//! target's counts, and fails with the saved inputs if any property broke.
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
        kiln_models::pickle_guard::check_bytes(b).map_err(|e| format!("{e:?}"))?;
        // What the guard accepts goes on to burn-store's reader, through kiln's loader (the
        // tensors do not fit LeNet-5: the refusal must still be one line, never a panic).
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

    let targets = [
        Target {
            name: "npy",
            seeds: vec![seed("numpy-f4.npy"), seed("small-f4.npy"), seed("small-f8-v2.npy")],
            iterations: iters(40_000),
            bound: default_bound,
            read: &npy,
        },
        Target {
            name: "pth",
            seeds: vec![seed("tiny-zip.pth"), seed("tiny-legacy.pth")],
            iterations: iters(15_000),
            bound: default_bound,
            read: &pth,
        },
        Target {
            name: "idx-images",
            seeds: vec![seed("mnist-2-images.idx3")],
            iterations: iters(20_000),
            bound: default_bound,
            read: &idx_images,
        },
        Target {
            name: "idx-labels",
            seeds: vec![seed("mnist-2-labels.idx1")],
            iterations: iters(20_000),
            bound: default_bound,
            read: &idx_labels,
        },
        Target {
            name: "idx-gz",
            seeds: vec![images_gz],
            iterations: iters(10_000),
            bound: default_bound,
            read: &idx_pair_gz,
        },
        Target {
            name: "onnx",
            seeds: vec![onnx_seed("resnet18-torchscript.onnx"), onnx_seed("resnet18-dynamo.onnx")],
            iterations: iters(5_000),
            bound: default_bound,
            read: &onnx,
        },
        Target {
            name: "kq8",
            seeds: vec![std::fs::read(&kq8_seed).unwrap()],
            iterations: iters(3_000),
            bound: default_bound,
            read: &kq8,
        },
        Target {
            name: "bpk",
            seeds: vec![std::fs::read(&bpk_seed).unwrap()],
            iterations: iters(3_000),
            bound: default_bound,
            read: &bpk,
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
