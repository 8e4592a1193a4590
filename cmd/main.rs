//! The `gwctl` binary: parse arguments, set up logging, run one subcommand, map the outcome to the
//! exit codes of CONTRACT.md (0 ok, 1 failed, 2 usage; `migrate status` may exit 3).

mod clean;
mod cli;
mod health;
mod migrate;
mod register;
mod serve;
mod setup;
mod setup_kong;
mod setup_obs;
mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat};

// mimalloc: measurably faster than glibc malloc for the proxy's many small, short-lived
// allocations (header values, request futures), and it returns memory to the OS promptly.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No transparent huge pages: touching a few kilobytes of a fresh allocator arena would make
    // the kernel back it with a whole 2 MB page (an idle gateway held 8 MB of them: 25 MB RSS
    // instead of 16 MB). mimalloc is built without its MADV_HUGEPAGE (feature `no_thp`); this
    // covers kernels set to THP "always". The proxy's working set is small and hot; huge pages buy
    // it nothing measurable. (This process only; best effort.)
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    let json = match cli.log_format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stdout().is_terminal(),
    };
    if let Err(err) = gwctl::telemetry::init_logging(&cli.log_level, json) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Health(args) => health::run(&args),
        Command::Migrate(args) => migrate::run(args),
        Command::Setup(args) => setup::run(args),
        Command::Register(args) => register::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Up(args) => up::run(args, json),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            // One line per cause, `error: ...` first.
            let mut chain = err.chain();
            if let Some(first) = chain.next() {
                eprintln!("error: {first}");
            }
            for cause in chain {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

/// A current-thread runtime for the short-lived subcommands.
fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
