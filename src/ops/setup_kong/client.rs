//! A small Kong Admin API client over reqwest: JSON bodies, the admin token as
//! `Kong-Admin-Token`, Kong's error bodies (kong-compat §1.6) turned into messages, lists read
//! through every page (`next`, kong-compat §1.4), and the wait for `GET /` with jittered
//! exponential backoff and a deadline.
//!
//! Only the wait retries: it is a GET. Writes are sent once; the caller stops at the first
//! error (a POST is not idempotent, and a PUT or PATCH that failed for a reason waiting will not
//! fix would only fail again).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::diff::Secrets;
use super::{Outcome, Reporter, SetupKongError};

/// Page size asked for (Kong's maximum).
const PAGE_SIZE: usize = 1000;
/// Pages read from one collection at most (a million entities at Kong's maximum page size).
const MAX_PAGES: usize = 1000;
/// Longest server message kept.
const MAX_MESSAGE: usize = 400;
/// Bounds on one attempt of the wait (the overall bound is `--wait`).
const MIN_ATTEMPT: Duration = Duration::from_secs(1);
const MAX_ATTEMPT: Duration = Duration::from_secs(10);

/// A request the Admin API refused, or that did not reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path (and query) sent, relative to the admin URL.
    pub path: String,
    /// The HTTP status; `None` when no answer came (connection refused, timeout).
    pub status: Option<u16>,
    /// The Admin API's message (Kong's `message` field), or the transport error.
    pub message: String,
}

impl ApiError {
    /// The error with every known secret cut out of its message.
    pub(crate) fn redacted(mut self, secrets: &Secrets) -> Self {
        self.message = secrets.redact(&self.message);
        self.path = secrets.redact(&self.path);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(
                f,
                "{} {} answered {s}: {}",
                self.method, self.path, self.message
            ),
            None => write!(f, "{} {}: {}", self.method, self.path, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// The Admin API of one node.
#[derive(Debug, Clone)]
pub(crate) struct AdminClient {
    http: reqwest::Client,
    /// The admin URL without a trailing slash.
    base: String,
    /// The admin URL as shown in messages (any password in it masked).
    shown: String,
    token: Option<String>,
}

/// One attempt of the wait.
enum Attempt {
    /// Not yet (connection refused, 5xx...).
    Retry(String),
    /// An answer waiting will not change (401, 404, not an Admin API...).
    Fatal(String),
}

impl Attempt {
    fn cause(&self) -> &str {
        match self {
            Self::Retry(c) | Self::Fatal(c) => c,
        }
    }
}

/// The text of an error and its causes (reqwest puts the useful part, e.g. "Connection
/// refused", in the sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn cut(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > MAX_MESSAGE {
        let head: String = s.chars().take(MAX_MESSAGE).collect();
        format!("{head}...")
    } else {
        s.to_owned()
    }
}

/// The message of an error answer: Kong's `message`, else the body, else the reason phrase.
pub(crate) fn message_of(status: u16, body: &Value) -> String {
    match body {
        Value::Object(m) => match m.get("message") {
            Some(Value::String(s)) => cut(s),
            _ => cut(&body.to_string()),
        },
        Value::String(s) if !s.trim().is_empty() => cut(s),
        _ => reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no message")
            .to_owned(),
    }
}

impl AdminClient {
    /// A client for the Admin API at `url`, sending `token` when given.
    pub(crate) fn new(url: &str, token: Option<&str>) -> Result<Self, SetupKongError> {
        let bad = |reason: &str| SetupKongError::BadUrl {
            url: mask_userinfo(url),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("expected http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("no host"));
        }
        if url.contains(['?', '#']) {
            return Err(bad("a query or fragment is not allowed"));
        }
        // The Admin API is never published beyond the host (CONTRACT.md): no proxy in between.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(&error_chain(&e)))?;
        let base = url.trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            shown: mask_userinfo(&base),
            base,
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }

    /// The admin URL as shown in messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Send one request; any answer is returned as (status, body), only transport failures are
    /// errors.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<(u16, Value), ApiError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Kong-Admin-Token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let fail = |e: reqwest::Error| ApiError {
            method: method.to_string(),
            path: path.to_owned(),
            status: None,
            // Without the URL: it may carry a password, and the path is said already.
            message: error_chain(&e.without_url()),
        };
        let resp = req.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(fail)?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// Send one request; a non-2xx answer is an error carrying the Admin API's message.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let (status, value) = self.exchange(method.clone(), path, body, None).await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(ApiError {
                method: method.to_string(),
                path: path.to_owned(),
                status: Some(status),
                message: message_of(status, &value),
            })
        }
    }

    /// Every row of a collection, following `next` through all pages.
    pub(crate) async fn list(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{path}{sep}size={PAGE_SIZE}"));
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        while let Some(page) = next.take() {
            let fail = |message: &str| ApiError {
                method: "GET".into(),
                path: page.clone(),
                status: None,
                message: message.to_owned(),
            };
            if seen.len() >= MAX_PAGES || !seen.insert(page.clone()) {
                return Err(fail("the pagination does not end (next repeats)"));
            }
            let body = self.send(Method::GET, &page, None).await?;
            let Some(data) = body.get("data").and_then(Value::as_array) else {
                return Err(fail("the answer has no data array"));
            };
            rows.extend(data.iter().cloned());
            next = match body.get("next") {
                Some(Value::String(n)) if !n.is_empty() => Some(self.relative(n)),
                _ => None,
            };
        }
        Ok(rows)
    }

    /// [`Self::list`], with a 404 meaning an empty collection (a plugin's collection on a Kong
    /// that does not enable the plugin).
    pub(crate) async fn list_if_present(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        match self.list(path).await {
            Err(e) if e.status == Some(404) => Ok(Vec::new()),
            other => other,
        }
    }

    /// A `next` link as a path relative to the admin URL (Kong gives `/services?offset=...`).
    fn relative(&self, next: &str) -> String {
        if let Some(rest) = next.strip_prefix(&self.base) {
            return rest.to_owned();
        }
        for scheme in ["http://", "https://"] {
            if let Some(rest) = next.strip_prefix(scheme) {
                return rest
                    .find('/')
                    .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned());
            }
        }
        next.to_owned()
    }

    /// Wait until `GET /` answers with a JSON object, retrying what waiting can fix
    /// (connection refused, timeouts, 5xx, 429) until `wait` runs out; returns the body.
    pub(crate) async fn wait_ready(
        &self,
        wait: Duration,
        reporter: &dyn Reporter,
    ) -> Result<Value, SetupKongError> {
        let step = format!("waiting for the Admin API at {}", self.shown);
        reporter.started(&step);
        let deadline = Instant::now() + wait;
        let attempts = AtomicU32::new(0);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times();
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = left.clamp(MIN_ATTEMPT, MAX_ATTEMPT);
            match self.exchange(Method::GET, "/", None, Some(timeout)).await {
                Err(e) => Err(Attempt::Retry(e.message)),
                Ok((200, body)) if body.is_object() => Ok(body),
                Ok((200, _)) => Err(Attempt::Fatal(
                    "GET / did not answer with a JSON object: not a Kong Admin API".to_owned(),
                )),
                Ok((status @ (429 | 500..=599), body)) => Err(Attempt::Retry(format!(
                    "{status}: {}",
                    message_of(status, &body)
                ))),
                Ok((status, body)) => {
                    let hint = match status {
                        401 | 403 => " (check --admin-token / GWCTL_ADMIN_TOKEN)",
                        404 => " (is this the Admin API's URL, not the proxy's?)",
                        _ => "",
                    };
                    Err(Attempt::Fatal(format!(
                        "{status}: {}{hint}",
                        message_of(status, &body)
                    )))
                }
            }
        })
        .retry(backoff)
        .when(|a| matches!(a, Attempt::Retry(_)))
        .adjust(|_, next| crate::ops::progress::until(deadline, next))
        .notify(|a, delay| {
            reporter.retrying(&step, attempts.load(Ordering::Relaxed), a.cause(), delay);
        })
        .await;
        match result {
            Ok(body) => {
                reporter.finished(&step, Outcome::Ok);
                Ok(body)
            }
            Err(a) => {
                reporter.finished(&step, Outcome::Failed);
                let url = self.shown.clone();
                Err(match a {
                    Attempt::Retry(cause) => SetupKongError::Unreachable {
                        url,
                        waited_secs: wait.as_secs(),
                        cause,
                    },
                    Attempt::Fatal(cause) => SetupKongError::Refused { url, cause },
                })
            }
        }
    }
}

/// `url` with the password of any `user:password@` masked.
fn mask_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(host_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:****@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_from_kong_error_bodies() {
        let unique = json!({"code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{name=\"svc\"}'", "fields": {"name": "svc"}});
        assert_eq!(
            message_of(409, &unique),
            "UNIQUE violation detected on '{name=\"svc\"}'"
        );
        assert_eq!(
            message_of(502, &json!("<html>bad gateway</html>\n")),
            "<html>bad gateway</html>"
        );
        assert_eq!(message_of(503, &Value::Null), "Service Unavailable");
        assert_eq!(message_of(400, &json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn urls() {
        assert!(AdminClient::new("127.0.0.1:8001", None).is_err());
        assert!(AdminClient::new("http://", None).is_err());
        assert!(AdminClient::new("http://h:1/?x", None).is_err());
        let c = AdminClient::new("http://admin:pw@127.0.0.1:8001/kong/", Some("t")).unwrap();
        assert_eq!(c.shown(), "http://admin:****@127.0.0.1:8001/kong");
        assert_eq!(c.relative("/services?offset=x"), "/services?offset=x");
        assert_eq!(
            c.relative("http://admin:pw@127.0.0.1:8001/kong/services?offset=x"),
            "/services?offset=x"
        );
        assert_eq!(
            c.relative("http://other:1/routes?offset=y"),
            "/routes?offset=y"
        );
        let e = AdminClient::new("ftp://x", None).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid admin URL \"ftp://x\": expected http:// or https://"
        );
    }
}
