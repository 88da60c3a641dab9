//! `cargo xtask train`.

use kiln_models::Registry;

use crate::CliError;

/// Arguments of `train`.
#[derive(clap::Args, Debug)]
pub(crate) struct TrainArgs {}

pub(crate) fn run(_registry: &Registry, _args: &TrainArgs) -> Result<(), CliError> {
    Err(CliError::Failed("`train` is being built".into()))
}
