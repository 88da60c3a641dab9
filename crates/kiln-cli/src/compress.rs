//! `cargo xtask compress`.

use kiln_models::Registry;

use crate::CliError;

/// Arguments of `compress`.
#[derive(clap::Args, Debug)]
pub(crate) struct CompressArgs {}

pub(crate) fn run(_registry: &Registry, _args: &CompressArgs) -> Result<(), CliError> {
    Err(CliError::Failed("`compress` is being built".into()))
}
