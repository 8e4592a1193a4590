//! `gwctl migrate [up|status]`: turn flags into [`gwctl::ops::migrate::MigrateOptions`], run
//! them, print the outcome on stdout and map it to the exit code (status: 3 when some
//! migrations are pending).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use gwctl::ops::migrate::{self, Action, MigrateOptions, MigrateReport};
use gwctl::ops::progress;

use crate::cli::{MigrateAction, MigrateArgs};

/// `migrate status` exit code when migrations are pending (CONTRACT.md).
const PENDING: u8 = 3;

pub(crate) fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let Some(database_url) = args.database_url.filter(|url| !url.trim().is_empty()) else {
        bail!("--database-url (or GWCTL_DATABASE_URL) is required");
    };
    let action = match args.action {
        MigrateAction::Up => Action::Up,
        MigrateAction::Status => Action::Status,
    };
    let options = MigrateOptions {
        database_url,
        action,
        wait: Duration::from_secs(args.wait),
    };
    let reporter = progress::for_stderr();
    let rt = crate::small_runtime().context("starting the runtime")?;
    let result = rt.block_on(migrate::run(options, reporter.as_ref()));
    // Finish the spinner before anything is printed.
    drop(reporter);
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            // What a failed `up` did apply before the failure is still worth knowing.
            if let migrate::MigrateError::Apply { applied_now, .. } = &err {
                print_applied(applied_now)?;
            }
            return Err(err.into());
        }
    };
    match action {
        Action::Up => {
            print_applied(&report.applied_now)?;
            if report.applied_now.is_empty() {
                say(&format!(
                    "database is up to date (version {})",
                    report.version()
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Status => print_status(&report),
    }
}

fn print_applied(applied: &[migrate::MigrationInfo]) -> anyhow::Result<()> {
    for m in applied {
        say(&format!("applied {m}"))?;
    }
    Ok(())
}

fn print_status(report: &MigrateReport) -> anyhow::Result<ExitCode> {
    for m in &report.applied {
        say(&format!("applied V{} {}", m.version, m.name))?;
    }
    for m in &report.pending {
        say(&format!("pending V{} {}", m.version, m.name))?;
    }
    if report.is_up_to_date() {
        say(&format!(
            "database is up to date (version {})",
            report.version()
        ))?;
        Ok(ExitCode::SUCCESS)
    } else {
        let n = report.pending.len();
        say(&format!(
            "{n} migration{} pending (database at version {})",
            if n == 1 { "" } else { "s" },
            report.version()
        ))?;
        Ok(ExitCode::from(PENDING))
    }
}

/// One line of the command's result on stdout.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
