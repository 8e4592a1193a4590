//! `gwctl register`: flags -> [`gwctl::ops::register::RegisterOptions`]; choose the address,
//! then print it (`--dry-run`), register it, or supervise `-- COMMAND` and end with its status.
//!
//! Results go to stdout (`registered ...`, the address for `--dry-run`); the warning about
//! several matching addresses goes to stderr, so `ADDR=$(gwctl register --dry-run ...)` stays
//! clean.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use gwctl::ops::progress;
use gwctl::ops::register::{
    self, ChildReport, Deregistered, HealthCheck, RegisterOptions, Registered, Registration,
    Selector,
};
use tokio::time::Instant;

use crate::cli::RegisterArgs;

/// Run `gwctl register`.
pub(crate) fn run(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let selector = match (&args.prefix, &args.cidr) {
        (Some(prefix), _) => Selector::prefix(prefix)?,
        (None, Some(cidr)) => Selector::cidr(cidr)?,
        // clap requires one of them.
        (None, None) => anyhow::bail!("one of --prefix or --cidr is required"),
    };
    let picked = register::choose(&selector)?;
    if let Some(warning) = picked.warning(&selector) {
        warn(&warning);
    }
    if args.health_path.is_some() && args.command.is_empty() {
        warn("--health-path only applies with `-- COMMAND` (exec mode); ignored");
    }
    if args.dry_run {
        say(&picked.chosen.addr.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = RegisterOptions {
        upstream: args.upstream,
        addr: picked.chosen.addr,
        port: args.port,
        admin_url: args.admin_url,
        admin_token: args.admin_token,
        weight: args.weight,
        wait: Duration::from_secs(args.wait),
    };
    // Validate everything before starting a child or a runtime.
    let registration = options.registration()?;
    tracing::info!(
        addr = %picked.chosen.addr,
        interface = %picked.chosen.name,
        %selector,
        "address chosen"
    );
    let rt = crate::small_runtime().context("starting the runtime")?;
    if args.command.is_empty() {
        let reporter = progress::for_stderr();
        let result = rt.block_on(register::register(&options, reporter.as_ref()));
        drop(reporter);
        say(&registered_line(&registration, result?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let health = HealthCheck::new(options.addr, options.port, args.health_path.as_deref())?;
    let deadline = Instant::now() + options.wait;
    let reporter = progress::for_stderr();
    let announce = |registered: Registered| {
        // A closed stdout must not stop the supervision; the registration stands either way.
        if let Err(err) = say(&registered_line(&registration, registered)) {
            tracing::warn!(error = %err, "printing the registration");
        }
    };
    let report = rt.block_on(async {
        register::run_child(
            &registration,
            &args.command,
            &health,
            deadline,
            reporter.as_ref(),
            &announce,
        )
        .await
    });
    drop(reporter);
    child_exit(&registration, report?)
}

/// Print how the child's registration ended and choose the exit code: the child's, except that
/// a failed deregistration of a child that exited 0 is a failure (1).
fn child_exit(registration: &Registration, report: ChildReport) -> anyhow::Result<ExitCode> {
    let code = report.exit_code();
    match report.deregistered {
        Some(Ok(deregistered)) => say(&deregistered_line(registration, deregistered))?,
        Some(Err(err)) => {
            // Not silent: the target may still be registered, pointing at nothing.
            eprintln!("error: {err}");
            if code == 0 {
                return Ok(ExitCode::from(1));
            }
        }
        None => {}
    }
    Ok(ExitCode::from(code))
}

fn registered_line(r: &Registration, registered: Registered) -> String {
    let (target, upstream, weight) = (r.target(), r.upstream(), r.weight());
    match registered {
        Registered::Created => {
            format!("registered {target} with upstream {upstream} (weight {weight})")
        }
        Registered::Unchanged => {
            format!("{target} was already registered with upstream {upstream} (weight {weight})")
        }
        Registered::WeightUpdated { from } => format!(
            "{target} was already registered with upstream {upstream}; weight {from} -> {weight}"
        ),
    }
}

fn deregistered_line(r: &Registration, deregistered: Deregistered) -> String {
    let (target, upstream) = (r.target(), r.upstream());
    match deregistered {
        Deregistered::Deleted => format!("deregistered {target} from upstream {upstream}"),
        Deregistered::AlreadyGone => {
            format!("{target} was no longer registered with upstream {upstream}")
        }
    }
}

/// One line of the command's result on stdout.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// One warning line on stderr.
fn warn(line: &str) {
    eprintln!("warning: {line}");
}
