//! `gwctl setup kong|obs`: dispatch to the two setup subcommands.

use std::process::ExitCode;

use crate::cli::{SetupArgs, SetupTarget};

/// Run `gwctl setup ...`.
pub(crate) fn run(args: SetupArgs) -> anyhow::Result<ExitCode> {
    match args.target {
        SetupTarget::Kong(a) => crate::setup_kong::run(a),
        SetupTarget::Obs(a) => crate::setup_obs::run(a),
    }
}
