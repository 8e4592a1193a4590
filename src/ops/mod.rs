//! The library side of the operational subcommands (`gwctl migrate`, `setup kong`, `setup obs`,
//! `register`, `clean`): each takes an `XOptions` and a [`Reporter`], does its work, and returns a report
//! for the binary to print. Nothing here writes to stdout or exits the process; progress goes
//! through the reporter (a spinner on a terminal, log lines otherwise, a recorder in tests).

pub mod clean;
pub mod migrate;
pub mod progress;
pub mod register;
pub mod setup_kong;
pub mod setup_obs;
pub mod up;

pub use progress::{Outcome, Reporter};
