//! A stand-in for OpenObserve's HTTP API, as far as `gwctl setup obs` uses it, following
//! openobserve-otel.md §1 (OpenObserve itself cannot run on this machine, so this is the one
//! place a fake is allowed). It answers like the real server, failures included:
//!
//! - `GET|HEAD /healthz` (no auth): 200 `{"status":"ok"}`; while "down" it either closes the
//!   connection without answering (a server still starting or crash-looping) or answers 503.
//! - Basic auth on `/api/...`: the password is valid everywhere; the passcode only on ingestion
//!   routes (none here), so it gets 401 like any wrong secret:
//!   `{"code":401,"message":"Unauthorized Access"}`.
//! - An unknown org: 404 `{"code":404,"message":"Organization not found"}`.
//! - `GET /api/{org}/settings` -> `{"data":{...}}` (defaults when nothing is stored);
//!   `POST` merges the recognised fields -> 200 `{"successful":"true"}`, or 400
//!   `{"code":400,"message":"No valid field found"}` when none is recognised (a pre-v0.13 server
//!   does not know `trace_id_field_name`/`span_id_field_name`: [`FakeObs::set_legacy`]).
//! - `GET /api/{org}/passcode` -> `{"data":{"user":..,"passcode":..}}`; `PUT` rotates it.
//! - [`FakeObs::fail_next`] makes the next API requests answer a status (5xx).
//!
//! Every request that gets an answer is recorded (method, path, Authorization, Content-Type,
//! body) for tests to assert on.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The root user the fake knows.
pub const ROOT_EMAIL: &str = "root@example.com";
/// Its password (strong by v0.91's rule).
pub const ROOT_PASSWORD: &str = "Sup3r-Secret#pw";
/// Its ingestion passcode.
pub const PASSCODE: &str = "o2oi_k8V2XpLq7RzT0aWmC3sN9dYfHbJ4uE6g";

/// The settings payload fields the fake recognises (v0.13+).
const MODERN_FIELDS: &[&str] = &[
    "scrape_interval",
    "trace_id_field_name",
    "span_id_field_name",
    "toggle_ingestion_logs",
    "enable_streaming_search",
];
/// What a pre-v0.13 server recognises.
const LEGACY_FIELDS: &[&str] = &["scrape_interval"];

/// How `/healthz` behaves while the server is down.
#[derive(Debug, Clone, Copy)]
pub enum Down {
    /// Accept, then close the connection without answering.
    Close,
    /// Answer 503.
    Unavailable,
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

struct State {
    /// email -> (password, passcode)
    users: BTreeMap<String, (String, String)>,
    /// org -> stored settings (`None`: nothing stored yet, GET answers the defaults)
    orgs: BTreeMap<String, Option<serde_json::Map<String, Value>>>,
    /// Down phases, each until an instant, in order.
    down: Vec<(Down, Instant)>,
    /// Down forever (after the phases).
    never_up: Option<Down>,
    legacy: bool,
    fail_next: VecDeque<u16>,
    requests: Vec<Recorded>,
}

/// The fake server on 127.0.0.1:0.
pub struct FakeObs {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FakeObs {
    /// Up and healthy, root user [`ROOT_EMAIL`], org `default` with nothing stored.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            users: BTreeMap::from([(
                ROOT_EMAIL.to_owned(),
                (ROOT_PASSWORD.to_owned(), PASSCODE.to_owned()),
            )]),
            orgs: BTreeMap::from([("default".to_owned(), None)]),
            down: Vec::new(),
            never_up: None,
            legacy: false,
            fail_next: VecDeque::new(),
            requests: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if let Some(Down::Close) = st.lock().unwrap().down_now() {
                    drop(stream);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Be down (as `how`) for `for_`, from now; phases queue up.
    pub fn down_for(&self, how: Down, for_: Duration) {
        let mut st = self.state.lock().unwrap();
        let from = st
            .down
            .last()
            .map_or_else(Instant::now, |(_, until)| *until);
        st.down.push((how, from + for_));
    }

    /// Never become healthy.
    pub fn never_up(&self, how: Down) {
        self.state.lock().unwrap().never_up = Some(how);
    }

    /// Behave like a pre-v0.13 server (no trace/span field settings).
    pub fn set_legacy(&self) {
        self.state.lock().unwrap().legacy = true;
    }

    /// Store `settings` for `org` (creating the org).
    pub fn set_settings(&self, org: &str, settings: Value) {
        let map = settings.as_object().cloned().expect("settings object");
        self.state
            .lock()
            .unwrap()
            .orgs
            .insert(org.to_owned(), Some(map));
    }

    /// The org's settings as `GET` would answer them.
    pub fn settings(&self, org: &str) -> Value {
        let st = self.state.lock().unwrap();
        Value::Object(st.effective_settings(org).expect("org exists"))
    }

    /// The next `statuses.len()` API requests answer these statuses.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().fail_next.extend(statuses);
    }

    /// The current passcode of the root user.
    pub fn passcode(&self) -> String {
        self.state.lock().unwrap().users[ROOT_EMAIL].1.clone()
    }

    /// Every answered request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The answered requests to `/api/...`.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/api/"))
            .collect()
    }
}

impl Drop for FakeObs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn down_now(&mut self) -> Option<Down> {
        let now = Instant::now();
        self.down.retain(|(_, until)| *until > now);
        self.down.first().map(|(how, _)| *how).or(self.never_up)
    }

    fn effective_settings(&self, org: &str) -> Option<serde_json::Map<String, Value>> {
        let stored = self.orgs.get(org)?;
        let mut s = serde_json::Map::new();
        s.insert("scrape_interval".into(), json!(15));
        if !self.legacy {
            s.insert("trace_id_field_name".into(), json!("trace_id"));
            s.insert("span_id_field_name".into(), json!("span_id"));
            s.insert("toggle_ingestion_logs".into(), json!(false));
            s.insert("enable_streaming_search".into(), json!(false));
        }
        if let Some(stored) = stored {
            s.extend(stored.clone());
        }
        Some(s)
    }
}

fn answer(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    answer(status, json!({"code": status, "message": message}))
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let content_type = header("content-type");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization: authorization.clone(),
        content_type,
        body: body.clone(),
    });

    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        return match st.down_now() {
            Some(_) => error(503, "Service Unavailable"),
            None => answer(200, json!({"status": "ok"})),
        };
    }
    if path == "/config" && method == Method::GET {
        return answer(
            200,
            json!({"version": "v0.92.2", "build_type": "opensource"}),
        );
    }
    let Some(rest) = path.strip_prefix("/api/") else {
        return error(404, "Not Found");
    };
    if let Some(status) = st.fail_next.pop_front() {
        return error(status, "Internal Server Error");
    }
    // Basic auth: the password opens every API; the passcode only ingestion routes (none here).
    let user = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (user, secret) = pair.split_once(':')?;
            let email = user.to_lowercase();
            let (password, _) = st.users.get(&email)?;
            (secret == password).then_some(email)
        });
    let Some(user) = user else {
        return error(401, "Unauthorized Access");
    };
    let (org, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let org = org.to_owned();
    if !st.orgs.contains_key(&org) {
        return error(404, "Organization not found");
    }
    match (method, tail) {
        (Method::GET, "settings") => {
            let s = st.effective_settings(&org).unwrap();
            // Reading stores the defaults (as the server does).
            st.orgs.insert(org, Some(s.clone()));
            answer(200, json!({"data": s}))
        }
        (Method::POST, "settings") => {
            let Ok(Value::Object(payload)) = serde_json::from_str::<Value>(&body) else {
                return error(400, "Invalid JSON payload");
            };
            let known = if st.legacy {
                LEGACY_FIELDS
            } else {
                MODERN_FIELDS
            };
            let valid: serde_json::Map<String, Value> = payload
                .into_iter()
                .filter(|(k, _)| known.contains(&k.as_str()))
                .collect();
            if valid.is_empty() {
                return error(400, "No valid field found");
            }
            let mut s = st.effective_settings(&org).unwrap();
            s.extend(valid);
            st.orgs.insert(org, Some(s));
            answer(200, json!({"successful": "true"}))
        }
        (Method::GET, "passcode") => {
            let passcode = st.users[&user].1.clone();
            answer(200, json!({"data": {"user": user, "passcode": passcode}}))
        }
        (Method::PUT, "passcode") => {
            let rotated = format!("o2oi_rotated{:08x}", rand::random::<u32>());
            st.users.get_mut(&user).unwrap().1 = rotated.clone();
            answer(200, json!({"data": {"user": user, "passcode": rotated}}))
        }
        _ => error(404, "Not Found"),
    }
}
