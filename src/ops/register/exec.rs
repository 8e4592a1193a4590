//! Exec mode of `gwctl register` (`-- COMMAND ARGS`): run the service as a child, register it
//! once it is healthy, forward SIGTERM and SIGINT to it, deregister it when it exits, and hand
//! back its exit status (a signal-killed child counts as `128 + signal`, as a shell reports it).
//!
//! One deadline (`--wait` from the start) bounds waiting for health and registering. A child
//! that exits before it is registered is not registered (and any attempt already sent is undone);
//! a child that is not healthy in time, or a registration that fails, stops the child (SIGTERM,
//! then SIGKILL after [`STOP_GRACE`]) and is an error.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::Url;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use super::RegisterError;
use super::admin::{Deregistered, Registered, Registration};
use crate::ops::progress::{Outcome, Reporter};

/// How long deregistering may retry once the child has exited (an orchestrator stopping a
/// container does not wait long).
pub const DEREGISTER_WAIT: Duration = Duration::from_secs(10);

/// How long a child that must be stopped gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Bound on one health probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// When the child counts as healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `GET` of this URL answers 2xx.
    Http(Url),
    /// The port accepts TCP connections.
    Tcp(SocketAddr),
}

impl HealthCheck {
    /// `http://ADDR:PORT{path}` when a path is given (a missing leading `/` is added), else a
    /// TCP connect to `ADDR:PORT`.
    pub fn new(addr: IpAddr, port: u16, path: Option<&str>) -> Result<Self, RegisterError> {
        let socket = SocketAddr::new(addr, port);
        let Some(path) = path else {
            return Ok(Self::Tcp(socket));
        };
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Url::parse(&format!("http://{socket}{path}"))
            .map(Self::Http)
            .map_err(|e| RegisterError::BadHealthPath {
                path: path.clone(),
                reason: e.to_string(),
            })
    }

    fn describe(&self) -> String {
        match self {
            Self::Http(url) => format!("waiting for {url} to answer 2xx"),
            Self::Tcp(addr) => format!("waiting for {addr} to accept connections"),
        }
    }

    async fn probe(&self, client: &reqwest::Client, timeout: Duration) -> Result<(), String> {
        match self {
            Self::Http(url) => {
                let response = client
                    .get(url.clone())
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| one_line(&e))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("answered {}", status.as_u16()))
                }
            }
            Self::Tcp(addr) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            }
        }
    }

    /// Probe until healthy or `deadline`, with jittered backoff.
    async fn wait(&self, deadline: Instant, reporter: &dyn Reporter) -> Result<(), RegisterError> {
        let step = self.describe();
        reporter.started(&step);
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RegisterError::NotHealthy {
                what: step.clone(),
                waited: 0,
                cause: e.to_string(),
            })?;
        let attempts = AtomicU32::new(0);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(1))
            .without_max_times();
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let left = deadline.saturating_duration_since(Instant::now());
            self.probe(
                &client,
                left.clamp(Duration::from_millis(200), PROBE_TIMEOUT),
            )
            .await
        })
        .retry(backoff)
        .adjust(|_, next| crate::ops::progress::until(deadline, next))
        .notify(|cause, delay| {
            reporter.retrying(&step, attempts.load(Ordering::Relaxed), cause, delay);
        })
        .await;
        match result {
            Ok(()) => {
                reporter.finished(&step, Outcome::Ok);
                Ok(())
            }
            Err(cause) => {
                reporter.finished(&step, Outcome::Failed);
                Err(RegisterError::NotHealthy {
                    what: match self {
                        Self::Http(url) => url.to_string(),
                        Self::Tcp(addr) => addr.to_string(),
                    },
                    waited: started.elapsed().as_secs(),
                    cause,
                })
            }
        }
    }
}

/// How the child ended and what happened to its registration.
#[derive(Debug)]
pub struct ChildReport {
    /// The child's exit status.
    pub status: ExitStatus,
    /// The registration, when the child lived long enough to be registered.
    pub registered: Option<Registered>,
    /// The deregistration, when a registration was (or may have been) made.
    pub deregistered: Option<Result<Deregistered, RegisterError>>,
}

impl ChildReport {
    /// The exit code to end with: the child's.
    pub fn exit_code(&self) -> u8 {
        shell_status(self.status)
    }
}

/// An exit status as a shell reports it: the code, or `128 + N` for a child killed by signal N.
pub fn shell_status(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + sig).unwrap_or(u8::MAX),
        None => 1,
    }
}

/// Run `command` (program and arguments) as a child and supervise it as the module header says.
/// `on_registered` is called as soon as the registration succeeds (the child still runs).
pub async fn run_child(
    registration: &Registration,
    command: &[String],
    health: &HealthCheck,
    deadline: Instant,
    reporter: &dyn Reporter,
    on_registered: &dyn Fn(Registered),
) -> Result<ChildReport, RegisterError> {
    let Some((program, args)) = command.split_first() else {
        return Err(RegisterError::NoCommand);
    };
    // Install the handlers before the child exists: from here on a SIGTERM is ours to forward,
    // not a reason to die and orphan the child.
    let signals = |kind| signal(kind).map_err(RegisterError::Signals);
    let mut term = signals(SignalKind::terminate())?;
    let mut int = signals(SignalKind::interrupt())?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RegisterError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    tracing::info!(program = %program, pid = pid.map(Pid::as_raw), "child started");
    let forward = |sig: Signal| {
        if let Some(pid) = pid {
            tracing::info!(signal = %sig, pid = pid.as_raw(), "forwarding signal to the child");
            if let Err(err) = kill(pid, sig) {
                // ESRCH: it has just exited; its exit is picked up by `wait` below.
                tracing::debug!(error = %err, "forwarding the signal");
            }
        }
    };

    let attempted = AtomicBool::new(false);
    let mut phases = Box::pin(async {
        health.wait(deadline, reporter).await?;
        registration.register(deadline, reporter, &attempted).await
    });
    enum Before {
        Exited(ExitStatus),
        Registered(Registered),
        Failed(RegisterError),
    }
    let before = loop {
        tokio::select! {
            status = child.wait() => break Before::Exited(status.map_err(RegisterError::Wait)?),
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = int.recv() => forward(Signal::SIGINT),
            result = &mut phases => match result {
                Ok(registered) => break Before::Registered(registered),
                Err(err) => break Before::Failed(err),
            },
        }
    };
    // Stop any attempt in flight before undoing it.
    drop(phases);
    let attempted = attempted.load(Ordering::SeqCst);

    match before {
        Before::Exited(status) => {
            tracing::warn!(
                status = shell_status(status),
                "the child exited before it was registered"
            );
            let deregistered = undo(registration, attempted, reporter).await;
            Ok(ChildReport {
                status,
                registered: None,
                deregistered,
            })
        }
        Before::Failed(err) => {
            let status = stop(&mut child, pid, &mut term, &mut int).await;
            tracing::info!(status = ?status.as_ref().map(|s| shell_status(*s)), "child stopped");
            if let Some(Err(undo_err)) = undo(registration, attempted, reporter).await {
                tracing::warn!(error = %undo_err, "undoing a partial registration failed");
            }
            Err(err)
        }
        Before::Registered(registered) => {
            on_registered(registered);
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status.map_err(RegisterError::Wait)?,
                    _ = term.recv() => forward(Signal::SIGTERM),
                    _ = int.recv() => forward(Signal::SIGINT),
                }
            };
            tracing::info!(status = shell_status(status), "the child exited");
            let deregistered = registration
                .deregister(Instant::now() + DEREGISTER_WAIT, reporter)
                .await;
            Ok(ChildReport {
                status,
                registered: Some(registered),
                deregistered: Some(deregistered),
            })
        }
    }
}

/// Delete the target if a registration request was sent: a child that is gone must not stay
/// registered, whatever that request did.
async fn undo(
    registration: &Registration,
    attempted: bool,
    reporter: &dyn Reporter,
) -> Option<Result<Deregistered, RegisterError>> {
    if !attempted {
        return None;
    }
    Some(
        registration
            .deregister(Instant::now() + DEREGISTER_WAIT, reporter)
            .await,
    )
}

/// SIGTERM the child, give it [`STOP_GRACE`] (forwarding further signals), then SIGKILL.
async fn stop(
    child: &mut Child,
    pid: Option<Pid>,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Option<ExitStatus> {
    if let Some(Err(err)) = pid.map(|pid| kill(pid, Signal::SIGTERM)) {
        tracing::debug!(error = %err, "stopping the child");
    }
    let forward = |sig| {
        if let Some(Err(err)) = pid.map(|pid| kill(pid, sig)) {
            tracing::debug!(error = %err, "forwarding the signal");
        }
    };
    let grace = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            status = child.wait() => return status.ok(),
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = int.recv() => forward(Signal::SIGINT),
            () = &mut grace => break,
        }
    }
    if let Err(err) = child.start_kill() {
        tracing::debug!(error = %err, "killing the child");
    }
    child.wait().await.ok()
}

fn one_line(err: &reqwest::Error) -> String {
    let mut cause = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    cause
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn exit_status_as_a_shell_reports_it() {
        assert_eq!(shell_status(ExitStatus::from_raw(0)), 0);
        assert_eq!(shell_status(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(shell_status(ExitStatus::from_raw(255 << 8)), 255);
        // Killed by SIGTERM (15) and SIGKILL (9).
        assert_eq!(shell_status(ExitStatus::from_raw(15)), 143);
        assert_eq!(shell_status(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn health_checks() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            HealthCheck::new(ip, 80, None).unwrap(),
            HealthCheck::Tcp("10.1.2.3:80".parse().unwrap())
        );
        let HealthCheck::Http(url) = HealthCheck::new(ip, 80, Some("health")).unwrap() else {
            panic!("expected an HTTP check");
        };
        assert_eq!(url.as_str(), "http://10.1.2.3/health");
        let v6: IpAddr = "fd00::7".parse().unwrap();
        let HealthCheck::Http(url) = HealthCheck::new(v6, 8080, Some("/h?x=1")).unwrap() else {
            panic!("expected an HTTP check");
        };
        assert_eq!(url.as_str(), "http://[fd00::7]:8080/h?x=1");
    }
}
