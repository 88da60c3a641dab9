//! Crash-safe training checkpoints.
//!
//! burn-train saves three records at the end of every epoch (model, optimizer, learning-rate
//! scheduler), each from its own thread, and its `FileCheckpointer` writes them in place: a run
//! killed during a save leaves a truncated `model-N.bpk` that `--resume` would then trip on.
//! [`AtomicCheckpointer`] writes each record through [`kiln_data::write_atomic`] (temporary file,
//! fsync, rename, fsync of the folder), so a checkpoint file exists whole or not at all; the
//! newest epoch whose three files all exist ([`complete_epochs`]) is the one a resumed run
//! continues from. Two epochs are kept (the newest complete one and the one before it), so a kill
//! between the three saves of epoch N still leaves epoch N-1 whole.

use std::path::{Path, PathBuf};

use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

/// The record names burn-train saves for each epoch (`<name>-<epoch>.bpk`).
pub const RECORDS: [&str; 3] = ["model", "optim", "scheduler"];

/// Saves records as `<dir>/<name>-<epoch>.bpk`, each written atomically.
pub struct AtomicCheckpointer {
    dir: PathBuf,
    name: &'static str,
}

impl AtomicCheckpointer {
    /// A checkpointer for the record `name` in `dir` (created if needed).
    pub fn new(dir: &Path, name: &'static str) -> Self {
        let _ = std::fs::create_dir_all(dir);
        Self { dir: dir.to_path_buf(), name }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        record_path(&self.dir, self.name, epoch)
    }
}

fn record_path(dir: &Path, name: &str, epoch: usize) -> PathBuf {
    dir.join(format!("{name}-{epoch}.bpk"))
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record.checkpoint_into_bytes().map_err(CheckpointerError::Record)?;
        let path = self.path(epoch);
        // The path in the message: burn-train hands this error to the run's interrupter, and
        // the trainer reports it as one line (a full or read-only --out).
        kiln_data::write_atomic(&path, &bytes)
            .map_err(|e| CheckpointerError::Unknown(format!("{}: {e}", path.display())))
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.path(epoch)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CheckpointerError::IOError(e)),
            _ => Ok(()),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        R::load(self.path(epoch))
    }
}

/// The epochs, ascending, whose three records all exist in `dir` (temporary files of an
/// interrupted save are not records and are ignored).
pub fn complete_epochs(dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("model-")?.strip_suffix(".bpk")?.parse::<usize>().ok()
        })
        .filter(|&n| RECORDS.iter().all(|r| record_path(dir, r, n).is_file()))
        .collect();
    epochs.sort_unstable();
    epochs
}

/// Reads one checkpoint record the way burn-train will (after checking the burnpack header's
/// claims against the file, so a hostile header cannot make Burn's reader allocate what it
/// claims): `name` is `model`, `optim` or `scheduler`. The error names the file, on one line.
pub fn check_record(path: &Path, name: &str) -> Result<(), String> {
    use burn::optim::OptimizerRecord;
    use burn::optim::lr_scheduler::LrSchedulerRecord;
    use burn::store::ModuleRecord;
    let damaged =
        |e: String| format!("{} is damaged ({})", path.display(), e.split_whitespace().collect::<Vec<_>>().join(" "));
    kiln_models::weights::check_burnpack_header(path).map_err(damaged)?;
    let read = match name {
        "model" => ModuleRecord::load(path.to_path_buf()).map(|_| ()),
        "optim" => OptimizerRecord::load(path.to_path_buf()).map(|_| ()),
        _ => LrSchedulerRecord::load(path.to_path_buf()).map(|_| ()),
    };
    read.map_err(|e| damaged(e.to_string()))
}

/// Checks the three records of `epoch` in `dir` ([`check_record`]).
pub fn check_epoch(dir: &Path, epoch: usize) -> Result<(), String> {
    RECORDS.iter().try_for_each(|name| check_record(&record_path(dir, name, epoch), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_epochs_with_all_three_records_count() {
        let dir = std::env::temp_dir().join(format!("kiln-train-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, epoch) in [("model", 1), ("optim", 1), ("scheduler", 1), ("model", 2), ("optim", 2)] {
            std::fs::write(record_path(&dir, name, epoch), b"x").unwrap();
        }
        // What a save killed half-way leaves: a hidden temporary file, not a record.
        std::fs::write(dir.join(".scheduler-2.bpk.tmp-123"), b"x").unwrap();
        std::fs::write(dir.join("model-x.bpk"), b"x").unwrap();
        assert_eq!(complete_epochs(&dir), vec![1]);
        assert_eq!(kiln_data::fsutil::remove_temporaries(&dir), 1);
        assert!(!dir.join(".scheduler-2.bpk.tmp-123").exists());
        std::fs::write(record_path(&dir, "scheduler", 2), b"x").unwrap();
        assert_eq!(complete_epochs(&dir), vec![1, 2]);
        let c = AtomicCheckpointer::new(&dir, "model");
        <AtomicCheckpointer as Checkpointer<burn::store::ModuleRecord>>::delete(&c, 2).unwrap();
        <AtomicCheckpointer as Checkpointer<burn::store::ModuleRecord>>::delete(&c, 9).unwrap();
        assert_eq!(complete_epochs(&dir), vec![1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
