//! `gwctl clean`: arguments -> options -> `gwctl::ops`.

use std::process::ExitCode;

use crate::cli::CleanArgs;

/// Run `gwctl clean`.
pub(crate) fn run(_args: CleanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gwctl clean is not implemented yet")
}
