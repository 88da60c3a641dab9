//! CIFAR-10's binary version (`cifar-10-binary.tar.gz`, extracted): `data_batch_1.bin` ..
//! `data_batch_5.bin` (train) and `test_batch.bin` (test), optionally `batches.meta.txt` with the
//! class names.
//!
//! Every record is 3073 bytes: one label byte (0..9), then the 32x32 image as 1024 red, 1024
//! green and 1024 blue bytes (`[3, 32, 32]`, row-major) — exactly the `[C, H, W]` layout of
//! [`ImageDataset`].

use std::path::{Path, PathBuf};

use crate::dataset::{ImageDataset, Pixels, Split};
use crate::error::{DataError, Result, io_err};

/// Bytes per CIFAR-10 record: 1 label + 3 * 32 * 32 pixels.
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10's class names, used when the folder has no `batches.meta.txt`.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Appends the records of one CIFAR-10 binary batch file to `pixels` / `labels`.
fn read_batch(path: &Path, pixels: &mut Vec<u8>, labels: &mut Vec<usize>, num_classes: usize) -> Result<()> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if bytes.is_empty() || bytes.len() % CIFAR10_RECORD != 0 {
        let expected = (bytes.len() / CIFAR10_RECORD + 1) * CIFAR10_RECORD;
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found: bytes.len() });
    }
    for (k, rec) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        let label = rec[0] as usize;
        if label >= num_classes {
            return Err(DataError::BadLabel { path: path.to_path_buf(), index: k, label, limit: num_classes });
        }
        labels.push(label);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

/// Reads CIFAR-10 binary batch files into one split (`[3, 32, 32]` images, 10 classes).
pub fn read_cifar10_files(files: &[PathBuf], class_names: Vec<String>, split: Split) -> Result<ImageDataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        read_batch(f, &mut pixels, &mut labels, class_names.len())?;
    }
    ImageDataset::new(Pixels::U8(pixels), labels, [3, 32, 32], class_names, split)
}

/// The folder that holds the batch files: `dir` itself, or `dir/cifar-10-batches-bin` (the
/// archive's top folder).
pub(crate) fn cifar_root(dir: &Path) -> Option<PathBuf> {
    let has = |d: &Path| d.join("test_batch.bin").is_file() || d.join("data_batch_1.bin").is_file();
    if has(dir) {
        Some(dir.to_path_buf())
    } else {
        let sub = dir.join("cifar-10-batches-bin");
        has(&sub).then_some(sub)
    }
}

/// Reads a CIFAR-10 binary folder: `(train, test)`, `test` being `None` when `test_batch.bin`
/// is absent. Class names come from `batches.meta.txt` when present (one name a line).
pub fn read_cifar10_dir(dir: &Path) -> Result<(ImageDataset, Option<ImageDataset>)> {
    let root = cifar_root(dir).ok_or_else(|| DataError::MissingFile {
        dir: dir.to_path_buf(),
        what: "data_batch_1.bin / test_batch.bin".into(),
        hint: "extract cifar-10-binary.tar.gz and point at cifar-10-batches-bin".into(),
    })?;
    let names = match std::fs::read_to_string(root.join("batches.meta.txt")) {
        Ok(s) => {
            let v: Vec<String> = s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
            if v.len() == 10 { v } else { CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect() }
        }
        Err(_) => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    };
    let mut train_files: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(io_err(&root))? {
        let entry = entry.map_err(io_err(&root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(num) = name.strip_prefix("data_batch_").and_then(|s| s.strip_suffix(".bin")) {
            if let Ok(k) = num.parse::<u32>() {
                train_files.push((k, entry.path()));
            }
        }
    }
    train_files.sort();
    if train_files.is_empty() {
        return Err(DataError::MissingFile {
            dir: root,
            what: "data_batch_*.bin (training batches)".into(),
            hint: "extract all of cifar-10-binary.tar.gz into this folder".into(),
        });
    }
    let files: Vec<PathBuf> = train_files.into_iter().map(|(_, p)| p).collect();
    let train = read_cifar10_files(&files, names.clone(), Split::Train)?;
    let test_path = root.join("test_batch.bin");
    let test = if test_path.is_file() { Some(read_cifar10_files(&[test_path], names, Split::Test)?) } else { None };
    Ok((train, test))
}
