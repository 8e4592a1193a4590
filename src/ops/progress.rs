//! Progress reporting for the operational subcommands: one small [`Reporter`] trait, with an
//! indicatif spinner for terminals ([`Spinner`]), `tracing` log lines otherwise
//! ([`LogReporter`]), and a [`Recorder`] that keeps the events for tests.
//!
//! Library code only ever talks to the trait, so it never draws to the terminal itself and the
//! same code runs quietly inside the server.

use std::fmt;
use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded (and may have changed something).
    Ok,
    /// There was nothing to do.
    Skipped,
    /// It failed; the error is returned to the caller separately.
    Failed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        })
    }
}

/// Receives the progress of a long operation. Steps do not nest: a step is started, maybe
/// retried, then finished, before the next one starts.
pub trait Reporter: Send + Sync {
    /// A step began, e.g. `waiting for postgres at 127.0.0.1:5432`.
    fn started(&self, step: &str);
    /// Attempt number `attempt` of the current step failed with `cause`; the next one follows
    /// after `delay`.
    fn retrying(&self, step: &str, attempt: u32, cause: &str, delay: Duration);
    /// The current step ended.
    fn finished(&self, step: &str, outcome: Outcome);
}

/// The reporter for a command-line run: a [`Spinner`] when stderr is a terminal, plain
/// [`LogReporter`] lines otherwise (CI, containers, pipes).
pub fn for_stderr() -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Box::new(Spinner::new())
    } else {
        Box::new(LogReporter)
    }
}

/// Reports each event as one structured `tracing` line.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogReporter;

impl Reporter for LogReporter {
    fn started(&self, step: &str) {
        tracing::info!(step, "started");
    }

    fn retrying(&self, step: &str, attempt: u32, cause: &str, delay: Duration) {
        tracing::info!(
            step,
            attempt,
            cause,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "not yet, retrying"
        );
    }

    fn finished(&self, step: &str, outcome: Outcome) {
        match outcome {
            Outcome::Failed => tracing::warn!(step, %outcome, "finished"),
            Outcome::Ok | Outcome::Skipped => tracing::info!(step, %outcome, "finished"),
        }
    }
}

/// An indicatif spinner on stderr, one line per step, left on screen with its outcome.
#[derive(Debug, Default)]
pub struct Spinner {
    current: Mutex<Option<ProgressBar>>,
}

impl Spinner {
    /// A spinner drawing to stderr.
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> MutexGuard<'_, Option<ProgressBar>> {
        // A panic while holding this lock cannot leave the bar in a broken state worth refusing.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reporter for Spinner {
    fn started(&self, step: &str) {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(step.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Some(old) = self.current().replace(bar) {
            old.finish();
        }
    }

    fn retrying(&self, step: &str, attempt: u32, cause: &str, _delay: Duration) {
        if let Some(bar) = self.current().as_ref() {
            bar.set_message(format!("{step} (attempt {attempt}: {cause})"));
        }
    }

    fn finished(&self, step: &str, outcome: Outcome) {
        if let Some(bar) = self.current().take() {
            let mark = match outcome {
                Outcome::Ok => "✓",
                Outcome::Skipped => "-",
                Outcome::Failed => "✗",
            };
            // A finished bar leaves the cursor at the end of its line; print the outcome as a
            // whole line above the bar instead, then clear the bar.
            bar.println(format!("{mark} {step}"));
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        // An error path may never call `finished`: clear the line instead of leaving it spinning.
        if let Some(bar) = self.current().take() {
            bar.finish_and_clear();
        }
    }
}

/// One recorded [`Reporter`] event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// [`Reporter::started`].
    Started(String),
    /// [`Reporter::retrying`] (the delay is left out: it is random).
    Retrying {
        /// The step.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        cause: String,
    },
    /// [`Reporter::finished`].
    Finished(String, Outcome),
}

/// Keeps every event, for tests.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reporter for Recorder {
    fn started(&self, step: &str) {
        self.lock().push(Event::Started(step.to_owned()));
    }

    fn retrying(&self, step: &str, attempt: u32, cause: &str, _delay: Duration) {
        self.lock().push(Event::Retrying {
            step: step.to_owned(),
            attempt,
            cause: cause.to_owned(),
        });
    }

    fn finished(&self, step: &str, outcome: Outcome) {
        self.lock().push(Event::Finished(step.to_owned(), outcome));
    }
}

/// A retry's next delay capped to what is left before `deadline` (`None` once it passed: the
/// last error stands). For backon's `.adjust(|_, next| progress::until(deadline, next))`.
pub fn until(deadline: tokio::time::Instant, next: Option<Duration>) -> Option<Duration> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if left.is_zero() {
        None
    } else {
        next.map(|d| d.min(left))
    }
}
