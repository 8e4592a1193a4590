//! `gwctl setup kong`: arguments -> options -> `gwctl::ops`.

use std::process::ExitCode;

use crate::cli::SetupKongArgs;

/// Run `gwctl setup kong`.
pub(crate) fn run(_args: SetupKongArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gwctl setup kong is not implemented yet")
}
