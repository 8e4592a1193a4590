//! `gwctl setup kong`: arguments -> [`gwctl::ops::setup_kong::SetupKongOptions`] -> run; prints
//! one line per change (with `--dry-run`, the field-level diffs under it) and the summary line
//! on stdout. A failed run prints the changes it had applied before the error goes to stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use gwctl::ops::progress;
use gwctl::ops::setup_kong::{self, Change, SetupKongError, SetupKongOptions};

use crate::cli::SetupKongArgs;

/// Run `gwctl setup kong`.
pub(crate) fn run(args: SetupKongArgs) -> anyhow::Result<ExitCode> {
    let options = SetupKongOptions {
        file: args.file,
        admin_url: args.admin_url,
        admin_token: args.admin_token,
        dry_run: args.dry_run,
        prune: args.prune,
        wait: Duration::from_secs(args.wait),
        // `${{ env "NAME" }}` placeholders read the process environment.
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let reporter = progress::for_stderr();
    let rt = crate::small_runtime().context("starting the runtime")?;
    let result = rt.block_on(setup_kong::run(&options, reporter.as_ref()));
    // Finish the spinner before anything is printed.
    drop(reporter);
    match result {
        Ok(report) => {
            for change in &report.changes {
                say(&change.to_string())?;
                if report.dry_run {
                    for line in change.diff_lines() {
                        say(&line)?;
                    }
                }
            }
            say(&report.summary())?;
            if report.dry_run {
                tracing::info!(server = %report.server.describe(), "dry run: nothing was changed");
            }
            if report.not_in_file > 0 {
                tracing::info!(
                    count = report.not_in_file,
                    "entities on the server that the file does not name were left alone (--prune deletes them)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if let SetupKongError::Apply { applied, .. } = &err {
                print_changes(applied)?;
            }
            Err(err.into())
        }
    }
}

fn print_changes(changes: &[Change]) -> anyhow::Result<()> {
    for c in changes {
        say(&c.to_string())?;
    }
    Ok(())
}

/// One line of the command's result on stdout.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
