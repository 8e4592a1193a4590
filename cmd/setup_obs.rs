//! `gwctl setup obs`: arguments -> [`gwctl::ops::setup_obs::SetupObsOptions`] -> run -> one line
//! per file or setting on stdout (never a secret), warnings on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use gwctl::ops::progress;
use gwctl::ops::setup_obs::{self, Change, SetupObsOptions};

use crate::cli::SetupObsArgs;

/// Run `gwctl setup obs`.
pub(crate) fn run(args: SetupObsArgs) -> anyhow::Result<ExitCode> {
    let options = SetupObsOptions {
        url: args.url,
        user: args.user,
        password: args.password,
        org: args.org,
        env_file: args.env_file,
        wait: Duration::from_secs(args.wait),
        collector_config: args.collector_config,
    };
    let env_file = options.env_file.clone();
    let org = options.org.clone();
    let collector_path = options.collector_config.clone();
    let reporter = progress::for_stderr();
    let rt = crate::small_runtime().context("starting the runtime")?;
    let result = rt.block_on(setup_obs::run(options, reporter.as_ref()));
    // Finish the spinner before anything is printed.
    drop(reporter);
    let report = result?;
    let word = |c: Change| match c {
        Change::Changed => "updated",
        Change::Unchanged => "unchanged",
    };
    let mut lines = vec![
        format!(
            "org {org} settings trace_id_field_name/span_id_field_name: {}",
            word(report.settings)
        ),
        format!("env file {}: {}", env_file.display(), word(report.env_file)),
    ];
    if let (Some((exporters, change)), Some(path)) = (&report.collector, &collector_path) {
        lines.push(format!(
            "collector config {} (exporters {}): {}",
            path.display(),
            exporters.join(", "),
            word(*change)
        ));
    }
    lines.push(if report.is_unchanged() {
        "OpenObserve setup: nothing to do".to_owned()
    } else {
        "OpenObserve setup: done".to_owned()
    });
    let mut err = std::io::stderr().lock();
    for w in &report.warnings {
        writeln!(err, "warning: {w}").context("writing to stderr")?;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
