//! key-auth (kong-compat §4.2) through real sockets: every row of the error table, the key in a
//! header, the query and the body (form, JSON, multipart), hide_credentials for each place,
//! duplicates, anonymous, run_on_preflight, realm, ttl expiry, long keys, the X-Consumer-*
//! headers upstream, and credentials added through the Admin API at runtime.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::admin::{Backend, start_admin, wait_proxy};
use crate::support::{Echo, Echoed, Gateway, client, is_request_id};

/// An upstream that answers with what it received, body included:
/// `{"path": "/x?q", "headers": {name: [values]}, "body": "..."}`.
struct BodyEcho {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl BodyEcho {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let path = req
                            .uri()
                            .path_and_query()
                            .map_or("/".to_owned(), |p| p.as_str().to_owned());
                        let mut headers = serde_json::Map::new();
                        for (k, v) in req.headers() {
                            let entry = headers
                                .entry(k.as_str().to_owned())
                                .or_insert_with(|| json!([]));
                            entry
                                .as_array_mut()
                                .unwrap()
                                .push(json!(String::from_utf8_lossy(v.as_bytes())));
                        }
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let out = json!({
                            "path": path,
                            "headers": headers,
                            "body": String::from_utf8_lossy(&body),
                        });
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(out.to_string())))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            task,
        }
    }
}

impl Drop for BodyEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `multipart/form-data` request: `(name, file name, value)` parts.
fn multipart(
    req: reqwest::RequestBuilder,
    parts: &[(&str, Option<&str>, &str)],
) -> reqwest::RequestBuilder {
    const BOUNDARY: &str = "key-auth-test-7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (name, file, value) in parts {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(f) = file {
            body.push_str(&format!("; filename=\"{f}\"\r\nContent-Type: text/plain"));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    req.header(
        "content-type",
        format!("multipart/form-data; boundary={BOUNDARY}"),
    )
    .body(body)
}

fn long_key() -> String {
    "L".repeat(4096)
}

/// Consumers with credentials and groups, and one route per configuration under test.
fn config(url: &str) -> String {
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 100;
    format!(
        r#"_format_version: "3.0"
consumers:
  - username: alice
    custom_id: alice-cid
    keyauth_credentials:
      - id: 0f7c3d6e-1111-4a4a-9b9b-000000000001
        key: alice-key
      - key: "{long}"
      - key: expired-key
        ttl: 10
        created_at: {past}
      - key: live-key
        ttl: 100000
        created_at: {past}
    acls:
      - group: admins
      - group: users
  - username: bob
    keyauth_credentials:
      - key: bob-key
    acls:
      - group: users
  - username: anon
    acls:
      - group: guests
services:
  - name: s
    url: {url}
    routes:
      - name: default
        paths: ["/default"]
        plugins:
          - name: key-auth
      - name: names
        paths: ["/names"]
        plugins:
          - name: key-auth
            config: {{key_names: [x-key, token], realm: gw}}
      - name: header-only
        paths: ["/header-only"]
        plugins:
          - name: key-auth
            config: {{key_in_query: false}}
      - name: query-only
        paths: ["/query-only"]
        plugins:
          - name: key-auth
            config: {{key_in_header: false}}
      - name: body
        paths: ["/body"]
        plugins:
          - name: key-auth
            config: {{key_in_body: true}}
      - name: hide
        paths: ["/hide"]
        plugins:
          - name: key-auth
            config: {{key_in_body: true, hide_credentials: true}}
      - name: anonymous
        paths: ["/anonymous"]
        plugins:
          - name: key-auth
            config: {{anonymous: anon}}
      - name: anonymous-missing
        paths: ["/anonymous-missing"]
        plugins:
          - name: key-auth
            config: {{anonymous: nobody}}
      - name: preflight
        paths: ["/preflight"]
        plugins:
          - name: key-auth
            config: {{run_on_preflight: false}}
"#,
        long = long_key(),
    )
}

async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// A key-auth 401: Kong's error body (with the request id) and `WWW-Authenticate`.
fn assert_401(got: &(u16, reqwest::header::HeaderMap, Value), message: &str, www: &str) {
    let (status, headers, body) = got;
    assert_eq!(*status, 401, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(
        is_request_id(body["request_id"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert_eq!(headers["www-authenticate"], www, "{headers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_headers_and_query() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo.url())).await;
    let c = client();
    let url = |p: &str| format!("{}{p}", gw.proxy_url());

    // The §4.2 table.
    assert_401(
        &send(c.get(url("/default"))).await,
        "No API key found in request",
        "Key",
    );
    assert_401(
        &send(c.get(url("/default")).header("apikey", "nope")).await,
        "Unauthorized",
        "Key",
    );
    assert_401(
        &send(
            c.get(url("/default"))
                .header("apikey", "a")
                .header("apikey", "b"),
        )
        .await,
        "Duplicate API key found",
        "Key",
    );
    assert_401(
        &send(c.get(url("/default?apikey=a&apikey=b"))).await,
        "Duplicate API key found",
        "Key",
    );
    // An empty key is no key; a bare `?apikey` is not a string.
    assert_401(
        &send(c.get(url("/default?apikey="))).await,
        "No API key found in request",
        "Key",
    );
    assert_401(
        &send(c.get(url("/default?apikey"))).await,
        "No API key found in request",
        "Key",
    );
    // Other formats follow Accept.
    let resp = c
        .get(url("/default"))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Key");
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("No API key found in request\nrequest_id: "),
        "{text}"
    );

    // Header, then query: the header wins.
    let (status, _, body) = send(
        c.get(url("/default?apikey=bob-key"))
            .header("apikey", "alice-key")
            // Forged identity headers never reach the upstream.
            .header("x-consumer-username", "mallory")
            .header("x-anonymous-consumer", "true")
            .header("x-consumer-custom-id", "forged"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let e: Echoed = serde_json::from_value(body).unwrap();
    assert_eq!(e.header("x-consumer-username"), "alice");
    assert_eq!(e.header("x-consumer-custom-id"), "alice-cid");
    assert_eq!(
        e.header("x-credential-identifier"),
        "0f7c3d6e-1111-4a4a-9b9b-000000000001",
        "key-auth identifies the credential by its id"
    );
    assert!(uuid::Uuid::parse_str(e.header("x-consumer-id")).is_ok());
    assert!(!e.has("x-anonymous-consumer"));
    // Without hide_credentials the key is proxied as it came.
    assert_eq!(e.header("apikey"), "alice-key");
    assert_eq!(e.path, "/?apikey=bob-key", "strip_path");

    let (status, _, body) = send(
        c.get(url("/default?apikey=bob-key"))
            .header("x-consumer-custom-id", "forged"),
    )
    .await;
    assert_eq!(status, 200);
    let e: Echoed = serde_json::from_value(body).unwrap();
    assert_eq!(e.header("x-consumer-username"), "bob");
    assert!(!e.has("x-consumer-custom-id"), "bob has none: cleared");

    // Keys of any length; ttl.
    let (status, _, _) = send(c.get(url("/default")).header("apikey", long_key())).await;
    assert_eq!(status, 200, "a 4 KiB key");
    assert_401(
        &send(c.get(url("/default")).header("apikey", "expired-key")).await,
        "Unauthorized",
        "Key",
    );
    let (status, _, _) = send(c.get(url("/default?apikey=live-key"))).await;
    assert_eq!(status, 200, "ttl not reached yet");

    // key_names in order, header names case-insensitive, query names exact; realm.
    let (status, _, body) = send(c.get(url("/names")).header("X-Key", "bob-key")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(c.get(url("/names?token=bob-key"))).await;
    assert_eq!(status, 200, "{body}");
    assert_401(
        &send(c.get(url("/names?Token=bob-key"))).await,
        "No API key found in request",
        "Key realm=\"gw\"",
    );
    assert_401(
        &send(c.get(url("/names?apikey=bob-key"))).await,
        "No API key found in request",
        "Key realm=\"gw\"",
    );
    assert_401(
        &send(c.get(url("/names")).header("token", "x")).await,
        "Unauthorized",
        "Key realm=\"gw\"",
    );
    // The first name with a value decides: x-key (unknown) before token (valid).
    assert_401(
        &send(c.get(url("/names?token=bob-key")).header("x-key", "nope")).await,
        "Unauthorized",
        "Key realm=\"gw\"",
    );

    // key_in_header / key_in_query off.
    assert_401(
        &send(c.get(url("/header-only?apikey=bob-key"))).await,
        "No API key found in request",
        "Key",
    );
    assert_eq!(
        send(c.get(url("/header-only")).header("apikey", "bob-key"))
            .await
            .0,
        200
    );
    assert_401(
        &send(c.get(url("/query-only")).header("apikey", "bob-key")).await,
        "No API key found in request",
        "Key",
    );
    assert_eq!(send(c.get(url("/query-only?apikey=bob-key"))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_preflight() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo.url())).await;
    let c = client();
    let url = |p: &str| format!("{}{p}", gw.proxy_url());

    // Every failure falls back to the anonymous consumer.
    for req in [
        c.get(url("/anonymous")),
        c.get(url("/anonymous")).header("apikey", "nope"),
        c.get(url("/anonymous?apikey=a&apikey=b")),
    ] {
        let (status, headers, body) = send(req.header("x-consumer-custom-id", "forged")).await;
        assert_eq!(status, 200, "{body}");
        assert!(headers.get("www-authenticate").is_none());
        let e: Echoed = serde_json::from_value(body).unwrap();
        assert_eq!(e.header("x-consumer-username"), "anon");
        assert_eq!(e.header("x-anonymous-consumer"), "true");
        assert!(!e.has("x-credential-identifier"));
        assert!(!e.has("x-consumer-custom-id"));
    }
    // A valid key still authenticates.
    let (status, _, body) = send(c.get(url("/anonymous")).header("apikey", "bob-key")).await;
    assert_eq!(status, 200);
    let e: Echoed = serde_json::from_value(body).unwrap();
    assert_eq!(e.header("x-consumer-username"), "bob");
    assert!(!e.has("x-anonymous-consumer"));

    // A missing anonymous consumer is a 500 with Kong's message; a valid key is still fine.
    let (status, _, body) = send(c.get(url("/anonymous-missing"))).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["message"],
        "anonymous consumer nobody is configured but doesn't exist"
    );
    assert!(is_request_id(body["request_id"].as_str().unwrap()));
    let (status, _, _) = send(c.get(url("/anonymous-missing")).header("apikey", "bob-key")).await;
    assert_eq!(status, 200);

    // run_on_preflight: false lets OPTIONS through unauthenticated; true (default) does not.
    let (status, _, body) = send(c.request(Method::OPTIONS, url("/preflight"))).await;
    assert_eq!(status, 200, "{body}");
    let e: Echoed = serde_json::from_value(body).unwrap();
    assert_eq!(e.method, "OPTIONS");
    assert!(!e.has("x-consumer-id"));
    assert_401(
        &send(c.get(url("/preflight"))).await,
        "No API key found in request",
        "Key",
    );
    assert_401(
        &send(c.request(Method::OPTIONS, url("/default"))).await,
        "No API key found in request",
        "Key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_bodies_and_hidden_credentials() {
    let up = BodyEcho::start().await;
    let gw = Gateway::start(&config(&up.url)).await;
    let c = client();
    let url = |p: &str| format!("{}{p}", gw.proxy_url());

    // Bodies are only searched with key_in_body.
    assert_401(
        &send(c.post(url("/default")).form(&[("apikey", "bob-key")])).await,
        "No API key found in request",
        "Key",
    );

    // Form, JSON and multipart bodies; the key is proxied untouched without hide_credentials.
    let (status, _, body) = send(
        c.post(url("/body"))
            .form(&[("a", "1"), ("apikey", "bob-key")]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-username"][0], "bob");
    assert_eq!(body["body"], "a=1&apikey=bob-key");
    let (status, _, body) = send(
        c.post(url("/body"))
            .json(&json!({"apikey": "alice-key", "n": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-username"][0], "alice");
    let form = [("a", None, "1"), ("apikey", None, "bob-key")];
    let (status, _, body) = send(multipart(c.post(url("/body")), &form)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-username"][0], "bob");

    // Duplicates and non-strings in bodies.
    assert_401(
        &send(
            c.post(url("/body"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("apikey=a&apikey=b"),
        )
        .await,
        "Duplicate API key found",
        "Key",
    );
    assert_401(
        &send(c.post(url("/body")).json(&json!({"apikey": ["a"]}))).await,
        "Duplicate API key found",
        "Key",
    );
    assert_401(
        &send(c.post(url("/body")).json(&json!({"apikey": 12}))).await,
        "No API key found in request",
        "Key",
    );
    let form = [("apikey", None, "a"), ("apikey", None, "b")];
    assert_401(
        &send(multipart(c.post(url("/body")), &form)).await,
        "Duplicate API key found",
        "Key",
    );
    // Unparsable or unsupported bodies hold no key (and are proxied as they are).
    assert_401(
        &send(
            c.post(url("/body"))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await,
        "No API key found in request",
        "Key",
    );
    assert_401(
        &send(
            c.post(url("/body"))
                .header("content-type", "text/plain")
                .body("apikey=bob-key"),
        )
        .await,
        "No API key found in request",
        "Key",
    );
    // A body key of any length.
    let (status, _, _) = send(c.post(url("/body")).json(&json!({"apikey": long_key()}))).await;
    assert_eq!(status, 200);

    // hide_credentials: removed from the header...
    let (status, _, body) = send(
        c.get(url("/hide?x=1"))
            .header("apikey", "bob-key")
            .header("other", "kept"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["headers"].get("apikey").is_none(), "{body}");
    assert_eq!(body["headers"]["other"][0], "kept");
    assert_eq!(body["headers"]["x-consumer-username"][0], "bob");
    assert_eq!(body["path"], "/?x=1");
    // ... from the query (the other arguments byte for byte) ...
    let (status, _, body) = send(c.get(url("/hide?a=%2F&apikey=bob-key&b=x+y"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/?a=%2F&b=x+y");
    let (_, _, body) = send(c.get(url("/hide?apikey=bob-key"))).await;
    assert_eq!(body["path"], "/");
    // ... and from form, JSON and multipart bodies (Content-Length follows).
    let (status, _, body) =
        send(
            c.post(url("/hide"))
                .form(&[("a", "1"), ("apikey", "bob-key"), ("b", "2")]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "a=1&b=2");
    assert_eq!(body["headers"]["content-length"][0], "7");
    let (status, _, body) = send(
        c.post(url("/hide"))
            .json(&json!({"apikey": "bob-key", "keep": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let proxied: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(proxied, json!({"keep": {"n": 1}}));
    let form = [
        ("a", None, "first"),
        ("apikey", None, "bob-key"),
        ("f", Some("f.txt"), "file contents"),
    ];
    let (status, _, body) = send(multipart(c.post(url("/hide")), &form)).await;
    assert_eq!(status, 200, "{body}");
    let proxied = body["body"].as_str().unwrap();
    assert!(!proxied.contains("bob-key"), "{proxied}");
    assert!(proxied.contains("name=\"a\"\r\n\r\nfirst\r\n"), "{proxied}");
    assert!(proxied.contains("filename=\"f.txt\""), "{proxied}");
    assert!(proxied.contains("file contents"), "{proxied}");
    assert_eq!(
        body["headers"]["content-length"][0],
        proxied.len().to_string()
    );
    // A key sent in the header is also removed from a body that carries the same name.
    let (status, _, body) = send(
        c.post(url("/hide"))
            .header("apikey", "bob-key")
            .form(&[("apikey", "other"), ("z", "1")]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "z=1");
    assert!(body["headers"].get("apikey").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_added_at_runtime() {
    let Some((_gw, api)) = start_admin(Backend::Memory).await else {
        return;
    };
    let echo = Echo::start("e").await;
    api.post("/services", &json!({"name": "s", "url": echo.url()}))
        .await
        .expect(201);
    api.post("/services/s/routes", &json!({"name": "r", "paths": ["/r"]}))
        .await
        .expect(201);
    let plugin = api
        .post(
            "/services/s/plugins",
            &json!({"name": "key-auth", "config": {"key_names": ["k"]}}),
        )
        .await
        .expect(201);
    assert_eq!(plugin["config"]["key_in_header"], true, "{plugin}");
    assert_eq!(plugin["config"]["realm"], Value::Null, "{plugin}");
    let body = wait_proxy(&api, "/r", 401).await;
    assert!(body.contains("No API key found in request"), "{body}");
    let c = client();
    let url = format!("{}/r", api.proxy);
    let status = |k: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.get(&url)
                .header("k", k)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("fresh-key").await, 401);

    api.post("/consumers", &json!({"username": "carol"}))
        .await
        .expect(201);
    let cred = api
        .post("/consumers/carol/key-auth", &json!({"key": "fresh-key"}))
        .await
        .expect(201);
    crate::assert_eventually!(
        Duration::from_secs(10),
        status("fresh-key").await == 200,
        "the new credential authenticates"
    );
    let e: Echoed = c
        .get(&url)
        .header("k", "fresh-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        e.header("x-credential-identifier"),
        cred["id"].as_str().unwrap()
    );

    // A credential with a ttl works, then stops.
    api.post(
        "/consumers/carol/key-auth",
        &json!({"key": "short-lived", "ttl": 3}),
    )
    .await
    .expect(201);
    crate::assert_eventually!(
        Duration::from_secs(10),
        status("short-lived").await == 200,
        "the ttl credential authenticates"
    );
    crate::assert_eventually!(
        Duration::from_secs(10),
        status("short-lived").await == 401,
        "the ttl credential expires"
    );

    // Deleting the credential revokes it; a config change (realm) takes effect.
    api.delete("/consumers/carol/key-auth/fresh-key")
        .await
        .expect(204);
    crate::assert_eventually!(
        Duration::from_secs(10),
        status("fresh-key").await == 401,
        "the deleted credential no longer authenticates"
    );
    let id = plugin["id"].as_str().unwrap();
    let patched = api
        .patch(
            &format!("/plugins/{id}"),
            &json!({"config": {"realm": "runtime"}}),
        )
        .await
        .expect(200);
    assert_eq!(
        patched["config"]["key_names"],
        json!(["k"]),
        "a PATCH merges into the stored config: {patched}"
    );
    crate::assert_eventually!(
        Duration::from_secs(10),
        c.get(&url).send().await.unwrap().headers()["www-authenticate"] == "Key realm=\"runtime\"",
        "the realm changed"
    );

    // Schema violations: bad key names, consumer scope.
    let bad = api
        .post(
            "/plugins",
            &json!({"name": "key-auth", "config": {"key_names": ["bad name"]}}),
        )
        .await
        .expect(400);
    assert_eq!(
        bad["fields"]["config"]["key_names"][0],
        "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
        "{bad}"
    );
    let bad = api
        .post(
            "/plugins",
            &json!({"name": "key-auth", "consumer": {"id": cred["consumer"]["id"]}}),
        )
        .await
        .expect(400);
    assert_eq!(bad["fields"]["consumer"], "value must be null", "{bad}");
}
