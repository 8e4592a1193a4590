//! `gwctl register`: arguments -> options -> `gwctl::ops`.

use std::process::ExitCode;

use crate::cli::RegisterArgs;

/// Run `gwctl register`.
pub(crate) fn run(_args: RegisterArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gwctl register is not implemented yet")
}
