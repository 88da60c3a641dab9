//! Shared helpers for kiln's criterion benches (`cargo bench -p kiln-benches`).

use burn::tensor::Device;

/// The CPU backends every bench runs on, by name.
#[allow(deprecated)]
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    vec![("flex", Device::flex()), ("ndarray", Device::ndarray())]
}
