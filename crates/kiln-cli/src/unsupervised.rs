//! `cargo xtask cluster` and `cargo xtask rbm`.

use kiln_models::Registry;

use crate::CliError;

/// Arguments of `cluster`.
#[derive(clap::Args, Debug)]
pub(crate) struct ClusterArgs {}

/// Arguments of `rbm`.
#[derive(clap::Args, Debug)]
pub(crate) struct RbmArgs {}

pub(crate) fn run_cluster(_registry: &Registry, _args: &ClusterArgs) -> Result<(), CliError> {
    Err(CliError::Failed("`cluster` is being built".into()))
}

pub(crate) fn run_rbm(_registry: &Registry, _args: &RbmArgs) -> Result<(), CliError> {
    Err(CliError::Failed("`rbm` is being built".into()))
}
