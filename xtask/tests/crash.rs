//! Killed runs: `cargo xtask train` and `cargo xtask compress` as child processes, killed with
//! SIGKILL at chosen points (mid-epoch, half-way through a checkpoint, half-way through the final
//! model), then resumed (train) or rerun (compress). A resumed run must continue from the last
//! complete checkpoint and end with exactly the uninterrupted run's metrics and weights.
//!
//! The kill points are armed with `KILN_FAILPOINT` (see `kiln_data::fsutil::FAILPOINT_ENV`): the
//! process sends itself SIGKILL there, so the moment is exact and the test is not a race.

#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn xtask(args: &[&str], failpoint: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).env_remove("KILN_FAILPOINT");
    if let Some(f) = failpoint {
        c.env("KILN_FAILPOINT", f);
    }
    c.output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

fn killed(out: &Output, what: &str) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{what} should die by SIGKILL: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// metrics.json without what legitimately differs between two runs (wall-clock seconds, the
/// config's output folder and resume flag).
fn metrics(dir: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    for e in v["epochs"].as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("seconds");
    }
    v.as_object_mut().unwrap().remove("config");
    v
}

/// The tensor bytes of a burnpack file: what follows its 10-byte header and the metadata whose
/// length the header's last 4 bytes give (the metadata holds Burn's parameter ids, drawn at
/// random in each process, so two equal models differ there and only there).
fn tensor_data(path: &Path) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    let meta = u32::from_le_bytes(b[6..10].try_into().unwrap()) as usize;
    b[10 + meta..].to_vec()
}

/// The epochs whose model, optimizer and scheduler records are all on disk (what `--resume`
/// continues from).
fn complete_checkpoints(dir: &Path) -> Vec<usize> {
    kiln_train::checkpoint::complete_epochs(&dir.join("checkpoint"))
}

const TRAIN: [&str; 16] = [
    "train",
    "lenet5",
    "--epochs",
    "3",
    "--train-limit",
    "400",
    "--batch-size",
    "50",
    "--dropout",
    "0.2",
    "--augment",
    "flip",
    "--seed",
    "11",
    "--progress",
    "quiet",
];

fn train(out: &Path, extra: &[&str], failpoint: Option<&str>) -> Output {
    let mut args: Vec<&str> = TRAIN.to_vec();
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    xtask(&args, failpoint)
}

#[test]
fn killed_training_resumes_to_the_uninterrupted_result() {
    let reference = tmp("train-ref");
    ok(&train(&reference, &[], None), "uninterrupted run");
    let want = metrics(&reference);
    let want_weights = tensor_data(&reference.join("model.bpk"));
    assert_eq!(want["epochs"].as_array().unwrap().len(), 3);

    // (failpoint, the checkpoint the resumed run must start from): 400 images in batches of 50
    // are 8 steps an epoch, so step 14 is late in epoch 2 (the checkpoint of epoch 1, written in the background, is done).
    for (point, from) in [("train-batch@14", 1), ("write:model-2.bpk", 1), ("write:model.bpk", 3)] {
        let out = tmp(&format!("train-{}", point.replace([':', '@', '.'], "-")));
        killed(&train(&out, &[], Some(point)), point);
        assert!(!out.join("metrics.json").exists() && !out.join("model.bpk").exists(), "{point}: no final outputs");
        assert_eq!(complete_checkpoints(&out).last(), Some(&from), "{point}: last complete checkpoint");
        let resumed = train(&out, &["--resume"], None);
        ok(&resumed, point);
        let resumed_from = String::from_utf8_lossy(&resumed.stderr).to_string();
        assert_eq!(metrics(&out), want, "{point}: metrics after resuming ({resumed_from})");
        assert!(tensor_data(&out.join("model.bpk")) == want_weights, "{point}: weights differ");
        // Nothing an interrupted writer left behind survives the resumed run.
        for dir in [out.clone(), out.join("checkpoint")] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                assert!(!name.contains(".tmp-") && !name.ends_with(".partial"), "{point}: {name} left in {dir:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    // A finished run is not resumed again.
    let again = train(&reference, &["--resume"], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has 3 epochs"));
    let _ = std::fs::remove_dir_all(&reference);
}

#[test]
fn training_that_diverges_stops_with_its_epoch_and_step_and_keeps_the_last_checkpoint() {
    let out = tmp("nan");
    // Plain gradient steps this large overflow LeNet-5's logits within a few batches.
    let r = train(&out, &["--optimizer", "sgd", "--lr", "1e12"], None);
    assert_eq!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("the training loss became") && err.contains("at epoch 1 of 3, step "), "{err}");
    assert!(!out.join("model.bpk").exists() && !out.join("metrics.json").exists());
    assert!(complete_checkpoints(&out).is_empty(), "no checkpoint of NaN weights");
    let _ = std::fs::remove_dir_all(&out);

    // Diverging after a good epoch: one epoch at a sane rate, then resumed to 3 epochs at the
    // rate that diverges. The run stops in epoch 2 naming checkpoint 1, which is left as it was,
    // as is the model the first run wrote; no checkpoint of epoch 2 appears.
    let out = tmp("nan-late");
    let o = out.to_str().unwrap();
    let base = [
        "train",
        "lenet5",
        "--train-limit",
        "400",
        "--batch-size",
        "50",
        "--optimizer",
        "sgd",
        "--progress",
        "quiet",
        "--out",
        o,
    ];
    let mut first = base.to_vec();
    first.extend(["--epochs", "1", "--lr", "0.01"]);
    ok(&xtask(&first, None), "one good epoch");
    let ckpt = out.join("checkpoint");
    let before: Vec<Vec<u8>> = ["model", "optim", "scheduler"]
        .iter()
        .map(|r| std::fs::read(ckpt.join(format!("{r}-1.bpk"))).unwrap())
        .collect();
    let model_before = std::fs::read(out.join("model.bpk")).unwrap();
    let mut second = base.to_vec();
    second.extend(["--epochs", "3", "--lr", "1e12", "--resume"]);
    let r = xtask(&second, None);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("at epoch 2 of 3, step ") && err.contains("the last good checkpoint is epoch 1"), "{err}");
    let after: Vec<Vec<u8>> = ["model", "optim", "scheduler"]
        .iter()
        .map(|r| std::fs::read(ckpt.join(format!("{r}-1.bpk"))).unwrap())
        .collect();
    assert!(after == before, "checkpoint 1 changed");
    assert!(std::fs::read(out.join("model.bpk")).unwrap() == model_before, "the first run's model changed");
    assert_eq!(complete_checkpoints(&out), vec![1]);
    let _ = std::fs::remove_dir_all(&out);
}

fn compress(from: &Path, out: &Path, failpoint: Option<&str>) -> Output {
    let args = [
        "compress",
        "lenet5",
        "--from",
        from.to_str().unwrap(),
        "--prune-channels",
        "0.5",
        "--finetune-epochs",
        "1",
        "--quantize",
        "int8",
        "--latency-runs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    xtask(&args, failpoint)
}

/// report.json without the measured latencies.
fn report(dir: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    for s in v["stages"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("latency_ms");
    }
    v
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn killed_compression_leaves_the_previous_model_and_reruns_to_the_same_result() {
    let trained = tmp("compress-trained");
    let t = trained.to_str().unwrap();
    let args = ["train", "lenet5", "--epochs", "1", "--train-limit", "400", "--progress", "quiet", "--out", t];
    ok(&xtask(&args, None), "training the model to compress");

    let out = tmp("compress");
    ok(&compress(&trained, &out, None), "first compression");
    let want_report = report(&out);
    let want_model = files(&out.join("model"));
    assert!(
        want_model.iter().any(|(n, _)| n == "model.kq8"),
        "{:?}",
        want_model.iter().map(|f| &f.0).collect::<Vec<_>>()
    );

    for point in ["finetune-batch@3", "write:model.kq8@2", "replace-dir:model"] {
        killed(&compress(&trained, &out, Some(point)), point);
        // The previous run's model folder, whole, and its report.
        assert!(files(&out.join("model")) == want_model, "{point}: out/model is not the previous model");
        assert_eq!(report(&out), want_report, "{point}");
        ok(&compress(&trained, &out, None), point);
        assert_eq!(report(&out), want_report, "{point}: rerun");
        assert!(files(&out.join("model")) == want_model, "{point}: rerun model");
        let stray: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "{point}: {stray:?}");
    }
    // An output folder that cannot be created: one line, exit code 2.
    let bad = compress(&trained, Path::new("/proc/kiln-cannot-write-here"), None);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).trim().lines().count(), 1);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&trained);
}

#[test]
fn an_output_folder_that_cannot_be_written_is_one_line_and_exit_code_2() {
    // /proc refuses new entries even to root (the tests run as root, so chmod would not).
    let r = train(Path::new("/proc/kiln-cannot-write-here"), &[], None);
    assert_eq!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/proc/kiln-cannot-write-here"), "{err}");
}

#[test]
fn a_full_output_folder_is_one_line_and_exit_code_2_with_nothing_half_written() {
    // A 96 KiB tmpfs: the first checkpoint (LeNet-5's 62 k parameters, 247 KB) does not fit.
    let mnt = tmp("full");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs", mnt.to_str().unwrap()])
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: this machine cannot mount a small tmpfs (needs root with CAP_SYS_ADMIN)");
        return;
    }
    let out = mnt.join("run");
    let r = train(&out, &[], None);
    let mut left = vec![];
    for dir in [out.clone(), out.join("checkpoint")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            left.push(e.unwrap().file_name().to_string_lossy().to_string());
        }
    }
    let _ = Command::new("umount").arg(&mnt).status();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device") && err.contains("-1.bpk"), "{err}");
    assert!(left.iter().all(|n| !n.contains(".tmp-") && n != "model.bpk" && n != "model-1.bpk"), "{left:?}");
    let _ = std::fs::remove_dir_all(&mnt);
}
