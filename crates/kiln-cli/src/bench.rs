//! `cargo xtask bench`.

use kiln_models::Registry;

use crate::CliError;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {}

pub(crate) fn run(_registry: &Registry, _args: &BenchArgs) -> Result<(), CliError> {
    Err(CliError::Failed("`bench` is being built".into()))
}
