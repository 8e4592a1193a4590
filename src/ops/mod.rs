//! The library side of the operational subcommands (`gwctl migrate`, later `setup`, `register`,
//! `clean`): each takes an `XOptions` and a [`Reporter`], does its work, and returns a report
//! for the binary to print. Nothing here writes to stdout or exits the process; progress goes
//! through the reporter (a spinner on a terminal, log lines otherwise, a recorder in tests).

pub mod migrate;
pub mod progress;

pub use progress::{Outcome, Reporter};
