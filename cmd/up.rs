//! `gwctl up`: arguments -> options -> `gwctl::ops`.

use std::process::ExitCode;

use crate::cli::UpArgs;

/// Run `gwctl up`.
pub(crate) fn run(_args: UpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gwctl up is not implemented yet")
}
