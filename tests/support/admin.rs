//! The Admin API under test: an in-process gateway with its admin listener on a free port
//! ([`start_admin`]), and [`AdminApi`], a small client that sends JSON, form-encoded, multipart
//! and raw bodies and reads every answer as status, headers and JSON.
//!
//! Conformance cases are written once as `async fn case_x(api: &AdminApi)` and run against both
//! stores with [`admin_tests!`](crate::admin_tests): the memory store (DB-less) always, Postgres
//! when [`super::pg_backend::database_url`] has a database to offer.

use std::net::SocketAddr;
use std::time::Duration;

use gwctl::serve::ServeOptions;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Gateway, client};

/// The configuration the memory backend starts with: nothing configured.
pub const EMPTY_CONFIG: &str = "_format_version: \"3.0\"\n";

/// Which store the gateway under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// DB-less: the in-memory store, loaded from [`EMPTY_CONFIG`].
    Memory,
    /// A Postgres database (fresh and empty for each test).
    Postgres,
}

/// An answer from the Admin API: status, headers, and the body as JSON (`Null` when empty, a
/// JSON string holding the text when it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `Content-Type` header (empty when absent).
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Check the status and return the body; panics with the whole answer otherwise.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status}, got {} with body {}",
            self.status, self.body
        );
        self.body
    }

    /// Check the status, Kong's JSON content type, and the exact body.
    #[track_caller]
    pub fn expect_json(&self, status: u16, body: &Value) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.content_type(),
            "application/json; charset=utf-8",
            "error content type (body {})",
            self.body
        );
        assert_eq!(&self.body, body);
    }
}

impl std::ops::Index<&str> for Reply {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

/// A client for one gateway's Admin API.
#[derive(Debug, Clone)]
pub struct AdminApi {
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub base: String,
    pub client: reqwest::Client,
    /// The admin listener's address (for raw requests).
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` of the gateway's proxy listener.
    pub proxy: String,
    /// The store behind it.
    pub backend: Backend,
}

impl AdminApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request builder for `path` (headers and body still to add).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Send a request and read the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let resp = request.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("admin response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// A JSON body (`application/json`).
    pub async fn json(&self, method: Method, path: &str, body: &Value) -> Reply {
        self.send(self.request(method, path).json(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.json(Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.json(Method::PUT, path, body).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.json(Method::PATCH, path, body).await
    }

    /// An `application/x-www-form-urlencoded` body; keys may repeat (`methods=GET&methods=POST`).
    pub async fn form(&self, method: Method, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        self.raw(
            method,
            path,
            Some("application/x-www-form-urlencoded"),
            ser.finish(),
        )
        .await
    }

    /// A `multipart/form-data` body with one text part per pair.
    pub async fn multipart(&self, method: Method, path: &str, pairs: &[(&str, &str)]) -> Reply {
        const BOUNDARY: &str = "gwctl-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = String::new();
        for (k, v) in pairs {
            body.push_str(&format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        body.push_str(&format!("--{BOUNDARY}--\r\n"));
        let ctype = format!("multipart/form-data; boundary={BOUNDARY}");
        self.raw(method, path, Some(&ctype), body).await
    }

    /// Any body with any (or no) `Content-Type`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut req = self.request(method, path).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req).await
    }

    /// Every row of a collection, following `next` (panics on a loop or an error page).
    pub async fn list_all(&self, path: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next {
            pages += 1;
            assert!(pages < 10_000, "pagination of {path} does not end");
            let body = self.get(&p).await.expect(200);
            rows.extend(body["data"].as_array().expect("data array").iter().cloned());
            next = body["next"].as_str().map(str::to_owned);
        }
        rows
    }
}

/// Start a gateway with the Admin API on `backend`; `None` when the backend is not available
/// (Postgres without a database).
pub async fn start_admin(backend: Backend) -> Option<(Gateway, AdminApi)> {
    start_admin_with(backend, |_| {}).await
}

/// [`start_admin`] with extra options (an admin token...).
pub async fn start_admin_with(
    backend: Backend,
    tweak: impl FnOnce(&mut ServeOptions),
) -> Option<(Gateway, AdminApi)> {
    let database_url = match backend {
        Backend::Memory => None,
        Backend::Postgres => Some(super::pg_backend::database_url().await?),
    };
    let gw = Gateway::start_with(EMPTY_CONFIG, |opts| {
        opts.admin_listen = "127.0.0.1:0".into();
        if let Some(url) = database_url {
            opts.database_url = Some(url);
            opts.config = None;
        }
        tweak(opts);
    })
    .await;
    let addr = gw.bound.admin.expect("admin listener bound");
    let api = AdminApi {
        base: format!("http://{addr}"),
        client: client(),
        addr,
        proxy: gw.proxy_url(),
        backend,
    };
    Some((gw, api))
}

/// Poll `GET {proxy}{path}` until it answers `status` (bounded); returns the last body.
pub async fn wait_proxy(api: &AdminApi, path: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = api
            .client
            .get(format!("{}{path}", api.proxy))
            .send()
            .await
            .expect("proxy request");
        let got = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxy GET {path}: still {got} (want {status}) after 10 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Generate a memory and a Postgres test for each conformance case:
///
/// ```ignore
/// admin_tests! {
///     case_x => x_memory, x_postgres;
///     case_y => y_memory, y_postgres with |o| o.admin_token = Some("t".into());
/// }
/// ```
///
/// The Postgres variant returns early (with a note on stderr) when no database is configured.
#[macro_export]
macro_rules! admin_tests {
    ($($case:ident => $memory:ident, $postgres:ident $(with $tweak:expr)?;)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            #[allow(unused_variables)]
            let tweak: fn(&mut gwctl::serve::ServeOptions) = |_| {};
            $(let tweak: fn(&mut gwctl::serve::ServeOptions) = $tweak;)?
            let (gw, api) = $crate::support::admin::start_admin_with(
                $crate::support::admin::Backend::Memory,
                tweak,
            )
            .await
            .expect("the memory backend is always available");
            $case(&api).await;
            gw.stop().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            #[allow(unused_variables)]
            let tweak: fn(&mut gwctl::serve::ServeOptions) = |_| {};
            $(let tweak: fn(&mut gwctl::serve::ServeOptions) = $tweak;)?
            let Some((gw, api)) = $crate::support::admin::start_admin_with(
                $crate::support::admin::Backend::Postgres,
                tweak,
            )
            .await
            else {
                eprintln!(
                    "{}: skipped, no Postgres database configured for the tests",
                    stringify!($postgres)
                );
                return;
            };
            $case(&api).await;
            gw.stop().await;
        }
    )+};
}
