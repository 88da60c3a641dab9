//! Shared helpers of the trainer's tests.
#![allow(dead_code)]

use std::path::PathBuf;

use kiln_train::{Display, TrainConfig};

/// A fresh output folder under the target dir.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A quiet config on mnist-5k.
pub fn config(model: &str, name: &str) -> TrainConfig {
    let mut c = TrainConfig::new(model);
    c.out = out_dir(name);
    c.display = Display::Quiet;
    c
}
