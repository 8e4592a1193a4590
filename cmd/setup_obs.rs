//! `gwctl setup obs`: arguments -> options -> `gwctl::ops`.

use std::process::ExitCode;

use crate::cli::SetupObsArgs;

/// Run `gwctl setup obs`.
pub(crate) fn run(_args: SetupObsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gwctl setup obs is not implemented yet")
}
