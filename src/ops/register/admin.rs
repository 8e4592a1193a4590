//! The Admin API side of `gwctl register`: add `ADDR:PORT` to an upstream's targets
//! ([`Registration::register`]) and remove it again ([`Registration::deregister`]), against
//! `gwctl serve` and Kong 3.x alike.
//!
//! Registering is `POST /upstreams/{name}/targets`. Kong 3.x keeps `(upstream, target)` unique,
//! so a second POST answers 409; then the existing target is read and, when its weight differs,
//! PATCHed. That makes the POST safe to retry: whatever an earlier attempt did, the next one
//! converges. A 404 means the upstream does not exist yet (`setup kong` may still be running) and
//! is retried like an unreachable Admin API or a 5xx, with jittered backoff, until the deadline.
//! Credentials refused (401/403) and other client errors stop at once: waiting will not fix them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::RegisterError;
use crate::ops::migrate::redact_url;
use crate::ops::progress::{Outcome, Reporter};

/// Bounds on one Admin API request (the overall bound is the caller's deadline).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_REQUEST: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Registration::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The target was created.
    Created,
    /// It was already there with this weight.
    Unchanged,
    /// It was already there with another weight, which was updated.
    WeightUpdated {
        /// The weight it had.
        from: u16,
    },
}

/// What [`Registration::deregister`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deregistered {
    /// The target was deleted.
    Deleted,
    /// It was not there (any more), or its upstream was gone.
    AlreadyGone,
}

/// One target of one upstream on one Admin API. Its `Debug` leaves the token out.
pub struct Registration {
    client: reqwest::Client,
    admin: Url,
    upstream: String,
    target: String,
    weight: u16,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("admin", &self.admin_display())
            .field("upstream", &self.upstream)
            .field("target", &self.target)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// One failed attempt: worth retrying, or final.
enum Failure {
    Retry(String),
    Fatal(RegisterError),
}

impl Registration {
    /// A registration of `target` (`ADDR:PORT`, IPv6 in brackets) with weight `weight` in
    /// upstream `upstream` through the Admin API at `admin_url`, sending `admin_token` as
    /// `Kong-Admin-Token` when given.
    pub fn new(
        admin_url: &str,
        admin_token: Option<&str>,
        upstream: &str,
        target: String,
        weight: u16,
    ) -> Result<Self, RegisterError> {
        let bad = |reason: &str| RegisterError::BadAdminUrl {
            url: redact_url(admin_url),
            reason: reason.to_owned(),
        };
        let admin = Url::parse(admin_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(admin.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if admin.cannot_be_a_base() {
            return Err(bad("it cannot be a base URL"));
        }
        if upstream.is_empty() {
            return Err(RegisterError::BadUpstream);
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = admin_token.filter(|t| !t.is_empty()) {
            let mut value =
                HeaderValue::from_str(token).map_err(|_| RegisterError::BadAdminToken)?;
            value.set_sensitive(true);
            headers.insert("kong-admin-token", value);
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .default_headers(headers)
            .build()
            .map_err(|e| bad(&format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            admin,
            upstream: upstream.to_owned(),
            target,
            weight,
        })
    }

    /// The target, `ADDR:PORT`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The weight registered.
    pub fn weight(&self) -> u16 {
        self.weight
    }

    /// The Admin API URL, safe to show (a password in it is redacted).
    pub fn admin_display(&self) -> String {
        redact_url(self.admin.as_str().trim_end_matches('/'))
    }

    /// Register the target, retrying until `deadline`. Sets `attempted` before the first request
    /// goes out, so a caller that gives up half-way knows whether to clean up.
    pub async fn register(
        &self,
        deadline: Instant,
        reporter: &dyn Reporter,
        attempted: &AtomicBool,
    ) -> Result<Registered, RegisterError> {
        let step = format!(
            "registering {} with upstream {} at {}",
            self.target,
            self.upstream,
            self.admin_display()
        );
        let started = Instant::now();
        let result = self
            .retrying(&step, deadline, reporter, || async {
                attempted.store(true, Ordering::SeqCst);
                self.register_once(deadline).await
            })
            .await;
        result.map_err(|failure| match failure {
            Failure::Fatal(err) => err,
            Failure::Retry(cause) => {
                let waited = started.elapsed().as_secs();
                if cause.starts_with(UPSTREAM_MISSING) {
                    RegisterError::UpstreamMissing {
                        upstream: self.upstream.clone(),
                        admin: self.admin_display(),
                        waited,
                        cause,
                    }
                } else {
                    RegisterError::GaveUp {
                        action: format!("registering {}", self.target),
                        admin: self.admin_display(),
                        waited,
                        cause,
                    }
                }
            }
        })
    }

    /// Delete the target, retrying an unreachable Admin API or a 5xx until `deadline`. A target
    /// (or upstream) that is already gone is a success.
    pub async fn deregister(
        &self,
        deadline: Instant,
        reporter: &dyn Reporter,
    ) -> Result<Deregistered, RegisterError> {
        let step = format!(
            "deregistering {} from upstream {}",
            self.target, self.upstream
        );
        let started = Instant::now();
        let result = self
            .retrying(&step, deadline, reporter, || self.deregister_once(deadline))
            .await;
        result.map_err(|failure| match failure {
            Failure::Fatal(err) => err,
            Failure::Retry(cause) => RegisterError::GaveUp {
                action: format!("deregistering {}", self.target),
                admin: self.admin_display(),
                waited: started.elapsed().as_secs(),
                cause,
            },
        })
    }

    /// Run `attempt` until it succeeds, fails for good, or `deadline` passes, reporting `step`.
    async fn retrying<T, F, Fut>(
        &self,
        step: &str,
        deadline: Instant,
        reporter: &dyn Reporter,
        attempt: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        reporter.started(step);
        let attempts = AtomicU32::new(0);
        let mut attempt = attempt;
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times();
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            attempt()
        })
        .retry(backoff)
        .when(|failure| matches!(failure, Failure::Retry(_)))
        .adjust(|_, next| crate::ops::progress::until(deadline, next))
        .notify(|failure, delay| {
            if let Failure::Retry(cause) = failure {
                reporter.retrying(step, attempts.load(Ordering::Relaxed), cause, delay);
            }
        })
        .await;
        reporter.finished(
            step,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
        );
        result
    }

    async fn register_once(&self, deadline: Instant) -> Result<Registered, Failure> {
        let url = self.url(&["upstreams", &self.upstream, "targets"]);
        let body = json!({ "target": self.target, "weight": self.weight });
        let (status, answer) = self.send(Method::POST, url, Some(&body), deadline).await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                // An Admin API that answers an existing target with 200 (or upserts) may have
                // kept its old weight: converge on ours.
                match answer.get("weight").and_then(Value::as_u64) {
                    Some(w) if w != u64::from(self.weight) => self.update_weight(w, deadline).await,
                    _ if status == StatusCode::OK => Ok(Registered::Unchanged),
                    _ => Ok(Registered::Created),
                }
            }
            StatusCode::CONFLICT => self.reconcile(deadline).await,
            StatusCode::NOT_FOUND => Err(Failure::Retry(format!(
                "{UPSTREAM_MISSING} (404: {})",
                message(&answer)
            ))),
            other => Err(self.classify(
                "POST",
                &format!("/upstreams/{}/targets", self.upstream),
                other,
                &answer,
            )),
        }
    }

    /// The target exists (409): read it and fix its weight if needed.
    async fn reconcile(&self, deadline: Instant) -> Result<Registered, Failure> {
        let url = self.target_url();
        let (status, answer) = self.send(Method::GET, url, None, deadline).await?;
        match status {
            StatusCode::OK => match answer.get("weight").and_then(Value::as_u64) {
                Some(w) if w == u64::from(self.weight) => Ok(Registered::Unchanged),
                Some(w) => self.update_weight(w, deadline).await,
                None => Err(Failure::Fatal(RegisterError::Refused {
                    request: format!("GET {}", self.target_path()),
                    admin: self.admin_display(),
                    status: status.as_u16(),
                    message: "the answer has no weight".to_owned(),
                })),
            },
            // Deleted between the 409 and now: the next POST creates it.
            StatusCode::NOT_FOUND => Err(Failure::Retry(format!(
                "target {} vanished after a 409",
                self.target
            ))),
            other => Err(self.classify("GET", &self.target_path(), other, &answer)),
        }
    }

    async fn update_weight(&self, from: u64, deadline: Instant) -> Result<Registered, Failure> {
        let body = json!({ "weight": self.weight });
        let (status, answer) = self
            .send(Method::PATCH, self.target_url(), Some(&body), deadline)
            .await?;
        match status {
            StatusCode::OK => Ok(Registered::WeightUpdated {
                from: u16::try_from(from).unwrap_or(u16::MAX),
            }),
            StatusCode::NOT_FOUND => Err(Failure::Retry(format!(
                "target {} vanished before its weight was updated",
                self.target
            ))),
            other => Err(self.classify("PATCH", &self.target_path(), other, &answer)),
        }
    }

    async fn deregister_once(&self, deadline: Instant) -> Result<Deregistered, Failure> {
        let (status, answer) = self
            .send(Method::DELETE, self.target_url(), None, deadline)
            .await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(Deregistered::Deleted),
            StatusCode::NOT_FOUND => Ok(Deregistered::AlreadyGone),
            other => Err(self.classify("DELETE", &self.target_path(), other, &answer)),
        }
    }

    /// A status that is neither success nor one of the expected answers: retry the transient
    /// ones, stop on the rest.
    fn classify(&self, method: &str, path: &str, status: StatusCode, answer: &Value) -> Failure {
        let message = message(answer);
        let code = status.as_u16();
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Failure::Retry(format!("{method} answered {code}: {message}"));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Failure::Fatal(RegisterError::Unauthorized {
                admin: self.admin_display(),
                status: code,
                message,
            });
        }
        Failure::Fatal(RegisterError::Refused {
            request: format!("{method} {path}"),
            admin: self.admin_display(),
            status: code,
            message,
        })
    }

    /// Send one request, bounded by what is left until `deadline` (at least [`MIN_REQUEST`]);
    /// a transport failure (refused, timeout, reset) is worth retrying.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        deadline: Instant,
    ) -> Result<(StatusCode, Value), Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut request = self
            .client
            .request(method.clone(), url)
            .timeout(left.clamp(MIN_REQUEST, REQUEST_TIMEOUT));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Retry(transport_cause(&method, &e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Retry(transport_cause(&method, &e)))?;
        let answer = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, answer))
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.admin.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // `http://host:8001/` and `http://host/kong-admin/` both work as bases.
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    fn target_url(&self) -> Url {
        self.url(&["upstreams", &self.upstream, "targets", &self.target])
    }

    fn target_path(&self) -> String {
        format!("/upstreams/{}/targets/{}", self.upstream, self.target)
    }
}

/// The start of the retry cause of a 404 on POST (recognised when the deadline passes).
const UPSTREAM_MISSING: &str = "upstream not found";

/// Kong's error `message`, or the body text (shortened).
fn message(answer: &Value) -> String {
    let text = match answer {
        Value::Object(map) => match map.get("message") {
            Some(Value::String(m)) => m.clone(),
            _ => answer.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Null => "empty body".to_owned(),
        other => other.to_string(),
    };
    let mut text = text.trim().replace('\n', " ");
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A reqwest error as one line without its URL (ours is shown redacted elsewhere).
fn transport_cause(method: &Method, err: &reqwest::Error) -> String {
    let mut cause = if err.is_timeout() {
        format!("{method} timed out")
    } else {
        format!("{method} failed")
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
    use super::*;

    #[test]
    fn urls_escape_segments_and_keep_a_base_path() {
        let r = Registration::new(
            "http://127.0.0.1:8001/kong-admin/",
            None,
            "svc a",
            "[fd00::7]:8080".to_owned(),
            100,
        )
        .unwrap();
        assert_eq!(
            r.target_url().as_str(),
            "http://127.0.0.1:8001/kong-admin/upstreams/svc%20a/targets/[fd00::7]:8080"
        );
        let r = Registration::new("http://h:8001", None, "u", "1.2.3.4:80".into(), 1).unwrap();
        assert_eq!(
            r.url(&["upstreams", "u", "targets"]).as_str(),
            "http://h:8001/upstreams/u/targets"
        );
    }

    #[test]
    fn bad_inputs_are_refused_without_echoing_the_token() {
        let err = Registration::new("ftp://h", None, "u", "t:1".into(), 1).unwrap_err();
        assert!(err.to_string().contains("http or https"), "{err}");
        let err = Registration::new(
            "http://u:s3cret@h",
            Some("bad\ntoken"),
            "u",
            "t:1".into(),
            1,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("bad\ntoken") && !text.contains("s3cret"),
            "{text}"
        );
        let r =
            Registration::new("http://u:s3cret@h:1/", Some("tok"), "u", "t:1".into(), 1).unwrap();
        let debug = format!("{r:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("tok\""),
            "{debug}"
        );
    }

    #[test]
    fn messages_come_from_kong_error_bodies() {
        assert_eq!(message(&json!({"message": "Not found"})), "Not found");
        assert_eq!(message(&Value::String("oops\n".into())), "oops");
        assert_eq!(message(&Value::Null), "empty body");
        assert!(message(&Value::String("é".repeat(400))).ends_with('…'));
    }
}
