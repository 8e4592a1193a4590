//! `gwctl clean`: arguments -> [`gwctl::ops::clean`]: list what will go (stdout), ask on a
//! terminal (without one, `--yes` is required), remove, report; exit 1 when anything was kept.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use gwctl::ops::clean::engine::DockerEngine;
use gwctl::ops::clean::{self, CleanPlan};
use gwctl::ops::progress;

use crate::cli::CleanArgs;

/// Run `gwctl clean`.
pub(crate) fn run(args: CleanArgs) -> anyhow::Result<ExitCode> {
    let (project, from_dir) = match args.project.filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None => {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            let Some(p) = clean::default_project_name(&cwd) else {
                bail!(
                    "no project: pass --project or set COMPOSE_PROJECT_NAME (the current \
                     directory's name gives none)"
                );
            };
            (p, true)
        }
    };
    let rt = crate::small_runtime().context("starting the runtime")?;
    rt.block_on(async {
        let engine = DockerEngine::connect().await?;
        tracing::debug!(api_version = %engine.api_version(), "docker engine connected");
        let plan = clean::plan(&engine, &project, &args.path).await?;
        print_plan(&plan, from_dir)?;
        if plan.removes_nothing() {
            say("nothing to remove")?;
            return finish_in_use_only(&plan);
        }
        if args.dry_run {
            say("dry run: nothing was removed")?;
            return Ok(ExitCode::SUCCESS);
        }
        if !args.yes {
            confirm()?;
        }
        let reporter = progress::for_stderr();
        let report = clean::apply(&engine, &plan, reporter.as_ref()).await;
        drop(reporter);
        for v in &report.removed_volumes {
            say(&format!("removed volume {v}"))?;
        }
        for (dir, n) in &report.emptied_dirs {
            say(&format!(
                "emptied {} ({n} entr{} removed)",
                dir.display(),
                if *n == 1 { "y" } else { "ies" }
            ))?;
        }
        if report.is_complete() {
            return Ok(ExitCode::SUCCESS);
        }
        let kept: Vec<String> = report.kept.iter().map(ToString::to_string).collect();
        bail!("not everything was removed: {}", kept.join("; "))
    })
}

/// Nothing removable, but volumes in use still make the run a failure (CONTRACT: exit 1).
fn finish_in_use_only(plan: &CleanPlan) -> anyhow::Result<ExitCode> {
    let in_use: Vec<String> = plan
        .volumes_in_use()
        .map(|v| {
            format!(
                "volume {} is in use by {}: kept",
                v.name,
                v.used_by.join(", ")
            )
        })
        .collect();
    if in_use.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", in_use.join("; "))
    }
}

fn print_plan(plan: &CleanPlan, from_dir: bool) -> anyhow::Result<()> {
    let source = if from_dir {
        " (from the current directory's name, as docker compose does)"
    } else {
        ""
    };
    say(&format!(
        "project {}{source}: volumes labelled {}={}",
        plan.project,
        clean::PROJECT_LABEL,
        plan.project
    ))?;
    if plan.volumes.is_empty() {
        say("  no volumes")?;
    }
    for v in &plan.volumes {
        if v.used_by.is_empty() {
            say(&format!("  remove volume {}", v.name))?;
        } else {
            say(&format!(
                "  keep volume {} (in use by container{} {})",
                v.name,
                if v.used_by.len() == 1 { "" } else { "s" },
                v.used_by.join(", ")
            ))?;
        }
    }
    for d in &plan.dirs {
        let Some(dir) = &d.dir else {
            say(&format!(
                "  {} does not exist: nothing to empty",
                d.given.display()
            ))?;
            continue;
        };
        let shown = if d.given == *dir {
            dir.display().to_string()
        } else {
            format!("{} ({})", d.given.display(), dir.display())
        };
        if d.entries.is_empty() {
            say(&format!("  {shown} is already empty"))?;
            continue;
        }
        const SHOWN: usize = 10;
        let mut names = d
            .entries
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if d.entries.len() > SHOWN {
            names.push_str(&format!(", ... ({} more)", d.entries.len() - SHOWN));
        }
        say(&format!(
            "  empty {shown}: {} entr{} ({names})",
            d.entries.len(),
            if d.entries.len() == 1 { "y" } else { "ies" }
        ))?;
    }
    Ok(())
}

/// Ask on the terminal; without one, refuse (scripts must say `--yes`).
fn confirm() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to remove anything without confirmation: stdin is not a terminal; pass --yes"
        );
    }
    let mut err = std::io::stderr().lock();
    write!(err, "Remove the above? [y/N] ").context("writing to stderr")?;
    err.flush().context("writing to stderr")?;
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("not confirmed: nothing was removed"),
    }
}

/// One line on stdout.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
