//! `cluster` and `rbm` through the CLI entry point: exit codes, one-line errors, output files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_models::Registry;

fn run(args: &[&str]) -> ExitCode {
    let mut all = vec!["cargo xtask"];
    all.extend_from_slice(args);
    kiln_cli::main_with(Registry::builtin(), all)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-unsup-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Width and height from a PNG's IHDR chunk (bytes 16..24, big-endian).
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn cluster_writes_report_assignments_and_centroids() {
    let out = tmp("cluster");
    let o = out.to_str().unwrap();
    let code = run(&[
        "cluster",
        "--k",
        "10",
        "--limit",
        "600",
        "--restarts",
        "2",
        "--seed",
        "1",
        "--format",
        "json",
        "--out",
        o,
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("clusters.json")).unwrap()).unwrap();
    assert_eq!(v["k"], 10);
    assert_eq!(v["n"], 600);
    assert_eq!(v["dim"], 784);
    assert_eq!(v["assignments"].as_array().unwrap().len(), 600);
    assert_eq!(v["restarts_inertia"].as_array().unwrap().len(), 2);
    assert_eq!(v["cluster_sizes"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).sum::<u64>(), 600);
    let purity = v["purity"].as_f64().unwrap();
    assert!(purity > 0.45 && purity <= 1.0, "purity {purity}");
    assert!(v["nmi"].as_f64().unwrap() > 0.35);
    assert_eq!(v["config"]["init"], "plus-plus");
    // 10 centroids of 28x28 at scale 2 in one row: 10 * 56 + 11 borders wide, 56 + 2 high.
    assert_eq!(png_size(&out.join("centroids.png")), (10 * 56 + 11, 58));
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn rbm_writes_metrics_filters_and_samples() {
    let out = tmp("rbm");
    let o = out.to_str().unwrap();
    let code = run(&["rbm", "--limit", "500", "--epochs", "2", "--hidden", "16", "--gibbs-every", "5", "--out", o]);
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let h = v["history"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    let (e1, e2) = (h[0]["reconstruction_error"].as_f64().unwrap(), h[1]["reconstruction_error"].as_f64().unwrap());
    assert!(e2 < e1 && e1 < 0.2, "{e1} -> {e2}");
    assert!(h[1]["free_energy_val"].is_number());
    assert_eq!(v["config"]["hidden"], 16);
    assert_eq!(v["train_samples"], 500);
    // 16 filters in a 4x4 grid, 10 chains x (data + 8 snapshots), 28x28 at scale 2.
    assert_eq!(png_size(&out.join("filters.png")), (4 * 56 + 5, 4 * 56 + 5));
    assert_eq!(png_size(&out.join("samples.png")), (10 * 56 + 11, 9 * 56 + 10));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_dataset_and_flags_fail_without_output() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    assert_eq!(run(&["cluster", "--dataset", "/no/such/dataset", "--out", o]), ExitCode::from(2));
    assert!(!out.exists(), "nothing written on a failed load");
    assert_eq!(run(&["cluster", "--k", "0"]), ExitCode::from(2));
    assert_eq!(run(&["cluster", "--k", "5000"]), ExitCode::from(2));
    assert_eq!(run(&["cluster", "--init", "spiral"]), ExitCode::from(2));
    assert_eq!(run(&["cluster", "--split", "validation"]), ExitCode::from(2));
    assert_eq!(run(&["rbm", "--dataset", "/no/such/dataset", "--out", o]), ExitCode::from(2));
    assert_eq!(run(&["rbm", "--out", o, "--cd-k", "0", "--limit", "10"]), ExitCode::from(2));
    assert_eq!(run(&["rbm"]), ExitCode::from(2), "--out is required");
    let _ = std::fs::remove_dir_all(&out);
}
