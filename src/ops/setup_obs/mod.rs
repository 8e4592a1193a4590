//! `gwctl setup obs`: configure OpenObserve and hand the collector its ingestion credentials.
//!
//! [`run`] waits for `GET /healthz`, makes sure the org's `trace_id_field_name` and
//! `span_id_field_name` are `trace_id` and `span_id` (`GET`, then `POST /api/{org}/settings` only
//! when they differ), reads the ingestion passcode (`GET /api/{org}/passcode`; never `PUT`, which
//! would rotate it), and writes the env file the collector reads
//! (`OPENOBSERVE_AUTH=Basic base64(email:passcode)`, `OPENOBSERVE_ORG=org`) atomically with mode
//! 0600. With `--collector-config` it also sets the `Authorization` header of the exporters that
//! point at OpenObserve, in place in the text (see [`collector`]).
//!
//! It converges: a second run finds the settings set and the files equal, and touches nothing.
//! No secret (password, passcode, the header) appears in an error, a report or a log line.
//! OpenObserve's answers are turned into errors that say what to do: 401 is "wrong credentials"
//! (naming the user), 404 an unknown org, and a server that never gets healthy is explained with
//! v0.91's strong root password rule (a weak one crash-loops it at first boot).

pub mod atomic;
pub mod collector;
pub mod envfile;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use self::atomic::Written;
use self::collector::CollectorError;
use super::progress::{Outcome, Reporter};

/// The org settings `setup obs` makes sure of: the log fields that link a log line to its trace.
pub const SETTINGS: [(&str, &str); 2] = [
    ("trace_id_field_name", "trace_id"),
    ("span_id_field_name", "span_id"),
];

/// Bounds on one HTTP attempt (the overall bound is `--wait`).
const MIN_ATTEMPT: Duration = Duration::from_secs(1);
const MAX_ATTEMPT: Duration = Duration::from_secs(10);

/// Input of [`run`]. Its `Debug` hides the password.
#[derive(Clone)]
pub struct SetupObsOptions {
    /// OpenObserve's base URL (`http://openobserve:5080`).
    pub url: String,
    /// The (root) user's email.
    pub user: String,
    /// The user's password.
    pub password: String,
    /// The organization (identifier) to configure and ingest into.
    pub org: String,
    /// The env file to write.
    pub env_file: PathBuf,
    /// How long the whole run may wait for OpenObserve (health, then retries of its API).
    pub wait: Duration,
    /// A collector config whose OpenObserve exporters get the `Authorization` header.
    pub collector_config: Option<PathBuf>,
}

impl fmt::Debug for SetupObsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupObsOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"***")
            .field("org", &self.org)
            .field("env_file", &self.env_file)
            .field("wait", &self.wait)
            .field("collector_config", &self.collector_config)
            .finish()
    }
}

/// Whether a step changed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It was already as wanted.
    Unchanged,
    /// It was changed.
    Changed,
}

impl Change {
    fn from_written(w: Written) -> Self {
        match w {
            Written::Unchanged => Self::Unchanged,
            Written::Replaced | Written::ModeFixed => Self::Changed,
        }
    }
}

/// What [`run`] did. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupObsReport {
    /// The org settings.
    pub settings: Change,
    /// The env file.
    pub env_file: Change,
    /// The exporters of the collector config that point at OpenObserve, and whether the file
    /// changed (`None` without `--collector-config`).
    pub collector: Option<(Vec<String>, Change)>,
    /// Things worth telling the operator that did not stop the run.
    pub warnings: Vec<String>,
}

impl SetupObsReport {
    /// Whether the run changed nothing.
    pub fn is_unchanged(&self) -> bool {
        self.settings == Change::Unchanged
            && self.env_file == Change::Unchanged
            && self
                .collector
                .as_ref()
                .is_none_or(|(_, c)| *c == Change::Unchanged)
    }
}

/// Why [`run`] failed. No variant carries the password, the passcode or the header.
#[derive(Debug, thiserror::Error)]
pub enum SetupObsError {
    /// An option is unusable.
    #[error("{0}")]
    BadOption(String),
    /// `/healthz` never answered 200 before the deadline.
    #[error(
        "OpenObserve at {url} did not become healthy within {waited_secs} s (last attempt: {cause}). \
         If it is starting for the first time, check its log for \"ZO_ROOT_USER_PASSWORD is too weak\": \
         since v0.91 OpenObserve refuses a weak root password at first boot and keeps restarting. \
         ZO_ROOT_USER_PASSWORD must be 8 to 128 characters with a lower-case letter, an upper-case \
         letter, a digit and a special character{weak}"
    )]
    NeverHealthy {
        /// The base URL.
        url: String,
        /// The wait that ran out.
        waited_secs: u64,
        /// The last attempt's failure.
        cause: String,
        /// `; the password given to gwctl lacks ...` when it breaks the rule, else empty.
        weak: String,
    },
    /// 401: the email or password is wrong.
    #[error(
        "OpenObserve at {url} rejected the credentials of user {user} (401 Unauthorized): wrong \
         email or password. Note that OpenObserve reads ZO_ROOT_USER_EMAIL and ZO_ROOT_USER_PASSWORD \
         only at its first start; changing them later has no effect"
    )]
    WrongCredentials {
        /// The base URL.
        url: String,
        /// The email that was refused.
        user: String,
    },
    /// 404 on an org route: the organization does not exist.
    #[error(
        "organization {org} not found on OpenObserve at {url} (404: {message}). Organizations \
         created through the API get a generated identifier (since v0.15): pass that identifier \
         with --org, or use `default`"
    )]
    OrgNotFound {
        /// The base URL.
        url: String,
        /// The org.
        org: String,
        /// OpenObserve's message.
        message: String,
    },
    /// OpenObserve refused a request (4xx other than 401/404).
    #[error("OpenObserve refused {what} ({status}): {message}{hint}")]
    Refused {
        /// `POST /api/ORG/settings`, ...
        what: String,
        /// The status.
        status: u16,
        /// OpenObserve's message.
        message: String,
        /// A hint about the likely cause, or empty.
        hint: String,
    },
    /// 5xx or a transport error until the deadline.
    #[error("{what} failed until the deadline: {cause}")]
    Unavailable {
        /// `POST /api/ORG/settings`, ...
        what: String,
        /// The last attempt's failure.
        cause: String,
    },
    /// An answer gwctl cannot use.
    #[error("unexpected answer to {what}: {reason}")]
    BadAnswer {
        /// `GET /api/ORG/passcode`, ...
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{action} {}", path.display())]
    File {
        /// `writing the env file`, ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The collector config cannot be edited.
    #[error("collector config {}: {source}", path.display())]
    Collector {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CollectorError,
    },
}

/// Run `gwctl setup obs`.
pub async fn run(
    options: SetupObsOptions,
    reporter: &dyn Reporter,
) -> Result<SetupObsReport, SetupObsError> {
    let base = parse_base_url(&options.url)?;
    check_org(&options.org)?;
    if options.user.trim().is_empty() {
        return Err(SetupObsError::BadOption("--user is empty".to_owned()));
    }
    if options.password.is_empty() {
        return Err(SetupObsError::BadOption("--password is empty".to_owned()));
    }
    // A broken collector config fails before anything waits or changes.
    let collector = match &options.collector_config {
        Some(path) => {
            let text = read_text(path, "reading the collector config")?;
            let exporters = collector::qualifying_exporters(&text, &base).map_err(|source| {
                SetupObsError::Collector {
                    path: path.clone(),
                    source,
                }
            })?;
            Some((path.clone(), text, exporters))
        }
        None => None,
    };
    let api = Api {
        http: reqwest::Client::builder()
            .build()
            .map_err(|e| SetupObsError::BadOption(format!("building the HTTP client: {e}")))?,
        base,
        user: options.user.clone(),
        password: options.password.clone(),
        org: options.org.clone(),
        deadline: Instant::now() + options.wait,
    };

    api.wait_healthy(options.wait, reporter).await?;
    let settings = api.ensure_settings(reporter).await?;
    let passcode = api.passcode(reporter).await?;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{passcode}", options.user))
    );

    // Prepare every file's new text before writing any.
    let collector = match collector {
        Some((path, text, exporters)) => {
            let new = collector::rewrite(&text, &exporters, &header).map_err(|source| {
                SetupObsError::Collector {
                    path: path.clone(),
                    source,
                }
            })?;
            Some((path, new, exporters))
        }
        None => None,
    };
    let env_path = atomic::resolve(&options.env_file).map_err(|source| SetupObsError::File {
        action: "resolving the env file",
        path: options.env_file.clone(),
        source,
    })?;
    let existing = match std::fs::read_to_string(&env_path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(SetupObsError::File {
                action: "reading the env file",
                path: env_path,
                source,
            });
        }
    };
    let env_text = envfile::render(existing.as_deref(), &header, &options.org);

    let step = format!("writing {}", env_path.display());
    reporter.started(&step);
    let written =
        atomic::replace(&env_path, env_text.as_bytes(), Some(0o600)).map_err(|source| {
            reporter.finished(&step, Outcome::Failed);
            SetupObsError::File {
                action: "writing the env file",
                path: env_path.clone(),
                source,
            }
        })?;
    let env_file = Change::from_written(written);
    reporter.finished(&step, outcome_of(env_file));

    let collector = match collector {
        Some((path, new, exporters)) => {
            let step = format!("setting the Authorization header in {}", path.display());
            reporter.started(&step);
            // Keep the file's mode and owner: the collector must still be able to read it.
            let written = atomic::replace(&path, new.as_bytes(), None).map_err(|source| {
                reporter.finished(&step, Outcome::Failed);
                SetupObsError::File {
                    action: "writing the collector config",
                    path: path.clone(),
                    source,
                }
            })?;
            let change = Change::from_written(written);
            reporter.finished(&step, outcome_of(change));
            Some((exporters, change))
        }
        None => None,
    };

    let mut warnings = Vec::new();
    if options.org != "default" {
        warnings.push(format!(
            "since OpenObserve v0.91 the passcode of the root user is the ingestion token of org \
             `default` whatever org is asked for; if ingestion into org {} answers 401, create an \
             ingestion token for that org or use org `default`",
            options.org
        ));
    }
    Ok(SetupObsReport {
        settings,
        env_file,
        collector,
        warnings,
    })
}

fn outcome_of(change: Change) -> Outcome {
    match change {
        Change::Changed => Outcome::Ok,
        Change::Unchanged => Outcome::Skipped,
    }
}

fn read_text(path: &Path, action: &'static str) -> Result<String, SetupObsError> {
    std::fs::read_to_string(path).map_err(|source| SetupObsError::File {
        action,
        path: path.to_owned(),
        source,
    })
}

/// `--url` as a base URL: http(s), no credentials in it, no query.
fn parse_base_url(raw: &str) -> Result<Url, SetupObsError> {
    let bad = |reason: &str| SetupObsError::BadOption(format!("invalid --url: {reason}"));
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo it: it may hold the password.
        return Err(bad(
            "it must not contain credentials; pass them with --user and --password",
        ));
    }
    if url.host_str().is_none() {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url)
}

/// An org identifier goes into URL paths and into the env file: keep it to what OpenObserve
/// generates and accepts (letters, digits, `_`, `-`).
fn check_org(org: &str) -> Result<(), SetupObsError> {
    if !org.is_empty()
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(SetupObsError::BadOption(format!(
            "invalid --org {org:?}: use the organization's identifier (letters, digits, `_`, `-`)"
        )))
    }
}

/// What OpenObserve's v0.91+ password rule finds missing in `password` (empty: it passes).
pub fn password_weaknesses(password: &str) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let len = password.chars().count();
    if !(8..=128).contains(&len) {
        missing.push("a length of 8 to 128 characters");
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        missing.push("a lower-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        missing.push("an upper-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        missing.push("a digit");
    }
    if !password.chars().any(|c| !c.is_ascii_alphanumeric()) {
        missing.push("a special character");
    }
    missing
}

/// One failed attempt: worth retrying (5xx, transport) or final.
enum Failure {
    Retry(String),
    Fatal(SetupObsError),
}

impl Failure {
    fn cause(&self) -> String {
        match self {
            Self::Retry(c) => c.clone(),
            Self::Fatal(e) => e.to_string(),
        }
    }
}

/// `{"code":400,"message":"..."}`, OpenObserve's error body.
#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

#[derive(Deserialize)]
struct DataBody<T> {
    data: T,
}

#[derive(Deserialize)]
struct PasscodeData {
    passcode: Option<String>,
}

#[derive(Deserialize)]
struct SuccessBody {
    successful: serde_json::Value,
}

/// The OpenObserve API as `setup obs` uses it.
struct Api {
    http: reqwest::Client,
    base: Url,
    user: String,
    password: String,
    org: String,
    deadline: Instant,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    fn attempt_timeout(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .clamp(MIN_ATTEMPT, MAX_ATTEMPT)
    }

    /// Poll `GET /healthz` until it answers 200 or the deadline passes.
    async fn wait_healthy(
        &self,
        wait: Duration,
        reporter: &dyn Reporter,
    ) -> Result<(), SetupObsError> {
        let url = self.url("/healthz");
        let step = format!("waiting for OpenObserve at {}", self.base);
        reporter.started(&step);
        let result = self
            .retrying(&step, reporter, || async {
                let resp = self
                    .http
                    .get(&url)
                    .timeout(self.attempt_timeout())
                    .send()
                    .await
                    .map_err(|e| Failure::Retry(transport_cause(&e)))?;
                let status = resp.status();
                if status == StatusCode::OK {
                    Ok(())
                } else {
                    Err(Failure::Retry(format!("GET /healthz answered {status}")))
                }
            })
            .await;
        if result.is_ok() {
            reporter.finished(&step, Outcome::Ok);
        }
        result.map_err(|failure| {
            let weak = password_weaknesses(&self.password);
            SetupObsError::NeverHealthy {
                url: self.base.to_string(),
                waited_secs: wait.as_secs(),
                cause: failure.cause(),
                weak: if weak.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; the password given to gwctl (if it is ZO_ROOT_USER_PASSWORD) lacks {}",
                        weak.join(", ")
                    )
                },
            }
        })
    }

    /// Make sure the org's trace and span field names are set; `Changed` when it had to POST.
    async fn ensure_settings(&self, reporter: &dyn Reporter) -> Result<Change, SetupObsError> {
        let path = format!("/api/{}/settings", self.org);
        let step = format!("org {} settings trace_id/span_id field names", self.org);
        let get_what = format!("GET {path}");
        reporter.started(&step);
        let current: serde_json::Value = self
            .retrying(&step, reporter, || async {
                let resp = self.send(self.http.get(self.url(&path)), &get_what).await?;
                self.json(resp, &get_what).await
            })
            .await
            .map_err(final_error)?;
        let data = current.get("data").unwrap_or(&serde_json::Value::Null);
        let already = SETTINGS
            .iter()
            .all(|(k, v)| data.get(*k).and_then(serde_json::Value::as_str) == Some(*v));
        if already {
            reporter.finished(&step, Outcome::Skipped);
            return Ok(Change::Unchanged);
        }
        let body: serde_json::Map<String, serde_json::Value> = SETTINGS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let post_what = format!("POST {path}");
        // Setting the same values again is idempotent, so it may be retried like a GET.
        let answer: SuccessBody = self
            .retrying(&step, reporter, || async {
                let resp = self
                    .send(self.http.post(self.url(&path)).json(&body), &post_what)
                    .await?;
                self.json(resp, &post_what).await
            })
            .await
            .map_err(final_error)?;
        // OpenObserve answers the *string* "true"; accept a boolean too.
        let ok = matches!(&answer.successful, serde_json::Value::String(s) if s == "true")
            || answer.successful == serde_json::Value::Bool(true);
        if !ok {
            reporter.finished(&step, Outcome::Failed);
            return Err(SetupObsError::BadAnswer {
                what: post_what,
                reason: format!("\"successful\" is {}", answer.successful),
            });
        }
        reporter.finished(&step, Outcome::Ok);
        Ok(Change::Changed)
    }

    /// The user's ingestion passcode (`GET`, never `PUT`: that would rotate it).
    async fn passcode(&self, reporter: &dyn Reporter) -> Result<String, SetupObsError> {
        let path = format!("/api/{}/passcode", self.org);
        let what = format!("GET {path}");
        let step = format!("reading the ingestion passcode of {}", self.user);
        reporter.started(&step);
        let body: DataBody<PasscodeData> = self
            .retrying(&step, reporter, || async {
                let resp = self.send(self.http.get(self.url(&path)), &what).await?;
                self.json(resp, &what).await
            })
            .await
            .map_err(final_error)?;
        match body.data.passcode {
            Some(p) if !p.is_empty() && p != "NOT_AVAILABLE" => {
                reporter.finished(&step, Outcome::Ok);
                Ok(p)
            }
            other => {
                reporter.finished(&step, Outcome::Failed);
                Err(SetupObsError::BadAnswer {
                    what,
                    reason: if other.is_some() {
                        format!(
                            "no usable passcode for {} (a service account without a static token?)",
                            self.user
                        )
                    } else {
                        "no data.passcode in the answer".to_owned()
                    },
                })
            }
        }
    }

    /// Send with Basic auth; turn transport errors and 5xx into retries, other non-2xx into
    /// their final errors.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Failure> {
        let resp = req
            .basic_auth(&self.user, Some(&self.password))
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.attempt_timeout())
            .send()
            .await
            .map_err(|e| Failure::Retry(transport_cause(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let message = error_message(resp).await;
        Err(self.classify(status, what, message))
    }

    fn classify(&self, status: StatusCode, what: &str, message: String) -> Failure {
        match status {
            StatusCode::UNAUTHORIZED => Failure::Fatal(SetupObsError::WrongCredentials {
                url: self.base.to_string(),
                user: self.user.clone(),
            }),
            StatusCode::NOT_FOUND if message.to_ascii_lowercase().contains("organization") => {
                Failure::Fatal(SetupObsError::OrgNotFound {
                    url: self.base.to_string(),
                    org: self.org.clone(),
                    message,
                })
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Failure::Retry(format!("{what} answered {s}: {message}"))
            }
            s => {
                let hint = if message.contains("No valid field found") {
                    ": this OpenObserve does not know trace_id_field_name/span_id_field_name \
                     (they need v0.13 or newer)"
                        .to_owned()
                } else {
                    String::new()
                };
                Failure::Fatal(SetupObsError::Refused {
                    what: what.to_owned(),
                    status: s.as_u16(),
                    message,
                    hint,
                })
            }
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<T, Failure> {
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Retry(transport_cause(&e)))?;
        serde_json::from_str(&text).map_err(|e| {
            Failure::Fatal(SetupObsError::BadAnswer {
                what: what.to_owned(),
                // The body may hold a secret (the passcode): name only the JSON error.
                reason: format!("not the expected JSON ({e})"),
            })
        })
    }

    /// Run `attempt` with jittered backoff until it succeeds, fails fatally, or the deadline
    /// passes. The caller has started `step`; this finishes it only on failure (the caller
    /// finishes it on success).
    async fn retrying<T, F, Fut>(
        &self,
        step: &str,
        reporter: &dyn Reporter,
        attempt: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = AtomicU32::new(0);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times();
        let mut attempt = attempt;
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            attempt()
        })
        .retry(backoff)
        .when(|f| matches!(f, Failure::Retry(_)))
        .adjust(|_, next| crate::ops::progress::until(self.deadline, next))
        .notify(|f, delay| {
            reporter.retrying(step, attempts.load(Ordering::Relaxed), &f.cause(), delay);
        })
        .await;
        if result.is_err() {
            reporter.finished(step, Outcome::Failed);
        }
        result
    }
}

/// The error a failed API step ends with.
fn final_error(failure: Failure) -> SetupObsError {
    match failure {
        Failure::Fatal(e) => e,
        Failure::Retry(cause) => SetupObsError::Unavailable {
            what: "OpenObserve's API".to_owned(),
            cause,
        },
    }
}

/// OpenObserve's `message`, or the start of the body.
async fn error_message(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(ErrorBody { message: Some(m) }) => m,
        _ => {
            let t = text.trim();
            if t.is_empty() {
                "(empty body)".to_owned()
            } else {
                t.chars().take(200).collect()
            }
        }
    }
}

/// A transport error's cause chain, without the URL's query (there is none) or any header.
fn transport_cause(err: &reqwest::Error) -> String {
    let mut out = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule_of_v0_91() {
        assert!(password_weaknesses("passComplex#123").is_empty());
        assert_eq!(
            password_weaknesses("secret"),
            [
                "a length of 8 to 128 characters",
                "an upper-case letter",
                "a digit",
                "a special character"
            ]
        );
        assert_eq!(password_weaknesses("Passw0rdé"), Vec::<&str>::new());
    }

    #[test]
    fn url_and_org_checks_never_echo_credentials() {
        let err = parse_base_url("http://root:hunter2@o2:5080")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_base_url("ftp://o2").is_err());
        assert!(parse_base_url("http://o2:5080/").is_ok());
        assert!(check_org("default").is_ok());
        assert!(check_org("3a1b_c-d").is_ok());
        assert!(check_org("a/b").is_err());
        assert!(check_org("a\nOPENOBSERVE_AUTH=x").is_err());
        assert!(check_org("").is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let o = SetupObsOptions {
            url: "http://o2".into(),
            user: "root@example.com".into(),
            password: "hunter2".into(),
            org: "default".into(),
            env_file: "x".into(),
            wait: Duration::from_secs(1),
            collector_config: None,
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
