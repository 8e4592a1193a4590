//! `gwctl register`: pick this host's address on one network and register `ADDR:PORT` as a
//! target of an upstream, optionally supervising the service as a child (exec mode).
//!
//! - [`addr`]: the pure address choice ([`pick_addr`]) and its selectors.
//! - [`admin`]: registering and deregistering through the Admin API, with jittered backoff and a
//!   deadline.
//! - [`exec`]: the child: health wait, signal forwarding, deregistration, exit status.
//!
//! [`choose`] and [`register`] are what `gwctl register` without a command calls; exec mode adds
//! [`exec::run_child`]. The address is chosen once: nothing here ever falls back to another
//! network.

pub mod addr;
pub mod admin;
pub mod exec;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

pub use addr::{Iface, NoMatch, Picked, Selector, SelectorError, pick_addr};
pub use admin::{Deregistered, Registered, Registration};
pub use exec::{ChildReport, HealthCheck, run_child};

use super::progress::Reporter;

/// Input of [`register`] and [`exec::run_child`]. Its `Debug` hides the admin token.
#[derive(Clone)]
pub struct RegisterOptions {
    /// The upstream's name.
    pub upstream: String,
    /// The address chosen by [`choose`].
    pub addr: IpAddr,
    /// The service's port.
    pub port: u16,
    /// Admin API base URL.
    pub admin_url: String,
    /// Sent as `Kong-Admin-Token` when set.
    pub admin_token: Option<String>,
    /// Target weight, 0-65535.
    pub weight: u32,
    /// How long to keep retrying (exec mode: health wait and registration together).
    pub wait: Duration,
}

impl fmt::Debug for RegisterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterOptions")
            .field("upstream", &self.upstream)
            .field("addr", &self.addr)
            .field("port", &self.port)
            .field("admin_url", &super::migrate::redact_url(&self.admin_url))
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("weight", &self.weight)
            .field("wait", &self.wait)
            .finish()
    }
}

impl RegisterOptions {
    /// `ADDR:PORT`, IPv6 in brackets: the target string Kong stores.
    pub fn target(&self) -> String {
        SocketAddr::new(self.addr, self.port).to_string()
    }

    /// The [`Registration`] these options describe (validates the URL, token and weight).
    pub fn registration(&self) -> Result<Registration, RegisterError> {
        // Kong's range is exactly u16's.
        let weight =
            u16::try_from(self.weight).map_err(|_| RegisterError::BadWeight(self.weight))?;
        Registration::new(
            &self.admin_url,
            self.admin_token.as_deref(),
            &self.upstream,
            self.target(),
            weight,
        )
    }
}

/// Why `gwctl register` failed. Messages never contain the admin token.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// `--prefix` or `--cidr` is malformed.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// The interfaces could not be listed.
    #[error("listing this host's network addresses failed")]
    Interfaces(#[source] std::io::Error),
    /// No address matched.
    #[error(transparent)]
    NoMatch(#[from] NoMatch),
    /// `--admin-url` is unusable.
    #[error("invalid --admin-url {url}: {reason}")]
    BadAdminUrl {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The token cannot be sent as a header (the value is not repeated here).
    #[error("invalid --admin-token: it must be visible ASCII text")]
    BadAdminToken,
    /// An empty upstream name.
    #[error("invalid --upstream: the name is empty")]
    BadUpstream,
    /// The weight is out of Kong's range.
    #[error("invalid --weight {0}: a target's weight is 0-65535")]
    BadWeight(u32),
    /// `--health-path` does not make a URL.
    #[error("invalid --health-path {path:?}: {reason}")]
    BadHealthPath {
        /// As given (with the leading `/`).
        path: String,
        /// Why.
        reason: String,
    },
    /// The upstream still did not exist when the deadline passed.
    #[error(
        "upstream {upstream} does not exist on the Admin API at {admin} (still missing after \
         {waited} s; is the gateway configured, e.g. by `gwctl setup kong`?): {cause}"
    )]
    UpstreamMissing {
        /// The upstream's name.
        upstream: String,
        /// The Admin API, redacted.
        admin: String,
        /// Seconds waited.
        waited: u64,
        /// The last answer.
        cause: String,
    },
    /// The Admin API stayed unreachable or kept failing until the deadline.
    #[error("{action} at {admin} failed for {waited} s, giving up: {cause}")]
    GaveUp {
        /// What was being done.
        action: String,
        /// The Admin API, redacted.
        admin: String,
        /// Seconds waited.
        waited: u64,
        /// The last failure.
        cause: String,
    },
    /// The Admin API refused the credentials.
    #[error(
        "the Admin API at {admin} refused the request ({status}: {message}); check --admin-token \
         (GWCTL_ADMIN_TOKEN)"
    )]
    Unauthorized {
        /// The Admin API, redacted.
        admin: String,
        /// 401 or 403.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The Admin API refused the request in a way retrying will not fix.
    #[error("{request} at {admin} answered {status}: {message}")]
    Refused {
        /// Method and path.
        request: String,
        /// The Admin API, redacted.
        admin: String,
        /// The HTTP status.
        status: u16,
        /// Kong's message.
        message: String,
    },
    /// Exec mode without a command.
    #[error("no command to run after --")]
    NoCommand,
    /// The signal handlers could not be installed.
    #[error("installing the SIGTERM/SIGINT handlers failed")]
    Signals(#[source] std::io::Error),
    /// The child could not be started.
    #[error("starting {program} failed")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("waiting for the child process failed")]
    Wait(#[source] std::io::Error),
    /// The child did not become healthy before the deadline; it was stopped.
    #[error("{what} was not healthy after {waited} s (last check: {cause}); the child was stopped")]
    NotHealthy {
        /// The URL or address probed.
        what: String,
        /// Seconds waited.
        waited: u64,
        /// The last probe's failure.
        cause: String,
    },
}

/// Choose this host's address for `selector` (one `getifaddrs` call, then [`pick_addr`]).
pub fn choose(selector: &Selector) -> Result<Picked, RegisterError> {
    let interfaces = addr::local_interfaces().map_err(RegisterError::Interfaces)?;
    Ok(pick_addr(&interfaces, selector)?)
}

/// Register `options.target()` with the upstream, retrying until `options.wait` has passed.
pub async fn register(
    options: &RegisterOptions,
    reporter: &dyn Reporter,
) -> Result<Registered, RegisterError> {
    let registration = options.registration()?;
    let attempted = std::sync::atomic::AtomicBool::new(false);
    registration
        .register(Instant::now() + options.wait, reporter, &attempted)
        .await
}

/// Delete `options.target()` from the upstream, retrying for up to `options.wait`.
pub async fn deregister(
    options: &RegisterOptions,
    reporter: &dyn Reporter,
) -> Result<Deregistered, RegisterError> {
    let registration = options.registration()?;
    registration
        .deregister(Instant::now() + options.wait, reporter)
        .await
}
