//! cors (kong-compat §4.6): preflights answered by the gateway (or proxied with
//! `preflight_continue`), origin matching (all, exact, regex, credentials echo), and the response
//! headers on upstream and gateway-made responses.

use reqwest::{Method, Response};
use serde_json::json;

use crate::support::admin::{Backend, start_admin};
use crate::support::{Echo, Echoed, Gateway, client};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: all
        paths: ["/all"]
        plugins:
          - name: cors
      - name: exact
        paths: ["/exact"]
        plugins:
          - name: cors
            config:
              origins: ["http://a.test", "https://b.test:8443"]
              headers: [X-One, X-Two]
              exposed_headers: [X-Exposed, X-Other]
              methods: [GET, POST]
              max_age: 3600
              credentials: true
      - name: single
        paths: ["/single"]
        plugins:
          - name: cors
            config: {{origins: ["http://only.test"]}}
      - name: regex
        paths: ["/regex"]
        plugins:
          - name: cors
            config:
              origins: ['^.*\.example\.test$', 'http://port\.test:\d+']
      - name: star-cred
        paths: ["/star-cred"]
        plugins:
          - name: cors
            config: {{origins: ["*"], credentials: true, private_network: true}}
      - name: continue
        paths: ["/continue"]
        plugins:
          - name: cors
            config: {{origins: ["http://a.test"], preflight_continue: true}}
      - name: limited
        paths: ["/limited"]
        plugins:
          - name: cors
            config: {{origins: ["http://a.test"], exposed_headers: [X-Exposed]}}
          - name: request-size-limiting
            config: {{allowed_payload_size: 10, size_unit: bytes}}
"#,
        url = echo.url()
    )
}

async fn preflight(gw: &Gateway, path: &str, origin: &str, extra: &[(&str, &str)]) -> Response {
    let mut req = client()
        .request(Method::OPTIONS, format!("{}{path}", gw.proxy_url()))
        .header("origin", origin)
        .header("access-control-request-method", "POST");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn h<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

fn all(resp: &Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;

    // Defaults: every origin, the nine methods, the requested headers echoed; no Vary.
    let r = preflight(
        &gw,
        "/all",
        "http://x.test",
        &[("access-control-request-headers", "X-Req, X-Other")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        h(&r, "access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
    );
    assert_eq!(
        h(&r, "access-control-allow-headers"),
        Some("X-Req, X-Other")
    );
    assert_eq!(h(&r, "vary"), None);
    assert_eq!(h(&r, "access-control-allow-credentials"), None);
    assert_eq!(h(&r, "access-control-max-age"), None);
    assert_eq!(h(&r, "content-length"), Some("0"));
    assert_eq!(echo.hits(), 0, "the gateway answered the preflight itself");
    assert!(r.text().await.unwrap().is_empty());

    // Without the requested headers, no Allow-Headers.
    let r = preflight(&gw, "/all", "http://x.test", &[]).await;
    assert_eq!(h(&r, "access-control-allow-headers"), None);

    // Exact origins (the default port is normalized away), configured lists joined by ",".
    let r = preflight(
        &gw,
        "/exact",
        "http://a.test:80",
        &[("access-control-request-headers", "X-Ignored")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(h(&r, "vary"), Some("Origin"));
    assert_eq!(h(&r, "access-control-allow-headers"), Some("X-One,X-Two"));
    assert_eq!(h(&r, "access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(h(&r, "access-control-max-age"), Some("3600"));
    assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
    // Preflights get no Expose-Headers.
    assert_eq!(h(&r, "access-control-expose-headers"), None);
    let r = preflight(&gw, "/exact", "https://b.test:8443", &[]).await;
    assert_eq!(
        h(&r, "access-control-allow-origin"),
        Some("https://b.test:8443")
    );

    // A disallowed origin: still 200 (the browser enforces), without Allow-Origin.
    for bad in ["http://evil.test", "https://a.test", "http://b.test:8443"] {
        let r = preflight(&gw, "/exact", bad, &[]).await;
        assert_eq!(r.status(), 200, "{bad}");
        assert_eq!(h(&r, "access-control-allow-origin"), None, "{bad}");
        assert_eq!(h(&r, "vary"), Some("Origin"));
        assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
    }

    // A lone plain origin is sent as configured, whatever the request's origin.
    let r = preflight(&gw, "/single", "http://other.test", &[]).await;
    assert_eq!(
        h(&r, "access-control-allow-origin"),
        Some("http://only.test")
    );
    assert_eq!(h(&r, "vary"), Some("Origin"));

    // Regexes: without ':' against the host, with ':' against scheme://host:port; anchored.
    for (origin, allowed) in [
        ("https://api.example.test", true),
        ("http://a.b.example.test:8080", true),
        ("http://example.test", false),
        ("http://api.example.test.evil", false),
        ("http://port.test:9000", true),
        ("https://port.test:9000", false),
        ("http://port.test", false),
    ] {
        let r = preflight(&gw, "/regex", origin, &[]).await;
        assert_eq!(r.status(), 200);
        let want = allowed.then(|| {
            // The echoed origin is the normalized one.
            origin.to_owned()
        });
        assert_eq!(
            h(&r, "access-control-allow-origin").map(str::to_owned),
            want,
            "{origin}"
        );
    }

    // `*` with credentials: the request's origin is echoed (credentials forbid `*`), with Vary.
    let r = preflight(
        &gw,
        "/star-cred",
        "http://c.test",
        &[("access-control-request-private-network", "true")],
    )
    .await;
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://c.test"));
    assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(h(&r, "vary"), Some("Origin"));
    assert_eq!(h(&r, "access-control-allow-private-network"), Some("true"));
    // Private network only when asked for (and enabled).
    let r = preflight(&gw, "/star-cred", "http://c.test", &[]).await;
    assert_eq!(h(&r, "access-control-allow-private-network"), None);
    let r = preflight(
        &gw,
        "/all",
        "http://c.test",
        &[("access-control-request-private-network", "true")],
    )
    .await;
    assert_eq!(h(&r, "access-control-allow-private-network"), None);

    // preflight_continue: the upstream answers, and no CORS headers are added.
    let r = preflight(&gw, "/continue", "http://a.test", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "access-control-allow-origin"), None);
    assert_eq!(h(&r, "access-control-allow-methods"), None);
    assert_eq!(h(&r, "vary"), None);
    let e: Echoed = r.json().await.unwrap();
    assert_eq!(e.method, "OPTIONS");
    assert_eq!(e.header("access-control-request-method"), "POST");
    assert_eq!(echo.hits(), 1);

    // OPTIONS without Access-Control-Request-Method is not a preflight: proxied, headers added.
    let r = client()
        .request(Method::OPTIONS, format!("{}/exact", gw.proxy_url()))
        .header("origin", "http://a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(h(&r, "access-control-allow-methods"), None);
    assert_eq!(
        h(&r, "access-control-expose-headers"),
        Some("X-Exposed,X-Other")
    );
    let e: Echoed = r.json().await.unwrap();
    assert_eq!(e.method, "OPTIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_requests() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let c = client();
    let get = |path: &str, origin: Option<&str>| {
        let mut req = c.get(format!("{}{path}", gw.proxy_url()));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };

    // Default config: `*`, no Vary, no Expose-Headers.
    let r = get("/all", Some("http://x.test")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(h(&r, "vary"), None);
    assert_eq!(h(&r, "access-control-expose-headers"), None);
    assert_eq!(h(&r, "access-control-allow-methods"), None);
    // Released 3.x adds the headers even without an Origin.
    let r = get("/all", None).await.unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), Some("*"));

    // Exact list: the matching origin, Vary, credentials, exposed headers.
    let r = get("/exact", Some("http://a.test")).await.unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(all(&r, "vary"), vec!["Origin"]);
    assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        h(&r, "access-control-expose-headers"),
        Some("X-Exposed,X-Other")
    );
    let e: Echoed = r.json().await.unwrap();
    assert_eq!(
        e.header("origin"),
        "http://a.test",
        "the request goes upstream as is"
    );
    // No match, or no Origin at all: no Allow-Origin, the rest still there.
    for origin in [Some("http://evil.test"), None] {
        let r = get("/exact", origin).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(h(&r, "access-control-allow-origin"), None, "{origin:?}");
        assert_eq!(h(&r, "vary"), Some("Origin"));
        assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            h(&r, "access-control-expose-headers"),
            Some("X-Exposed,X-Other")
        );
    }

    // Regex list.
    let r = get("/regex", Some("https://api.example.test"))
        .await
        .unwrap();
    assert_eq!(
        h(&r, "access-control-allow-origin"),
        Some("https://api.example.test")
    );
    let r = get("/regex", Some("https://api.example.com"))
        .await
        .unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), None);

    // `*` + credentials echoes the origin; without an Origin it stays `*`, no credentials.
    let r = get("/star-cred", Some("http://c.test")).await.unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://c.test"));
    assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(h(&r, "vary"), Some("Origin"));
    let r = get("/star-cred", None).await.unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(h(&r, "access-control-allow-credentials"), None);
    assert_eq!(h(&r, "vary"), None);

    // An upstream error status gets the headers too.
    let r = c
        .get(format!("{}/exact", gw.proxy_url()))
        .header("origin", "http://a.test")
        .header("x-echo-status", "503")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://a.test"));

    // A gateway-made short-circuit (request-size-limiting's 413 on the same route) gets them.
    let r = c
        .post(format!("{}/limited", gw.proxy_url()))
        .header("origin", "http://a.test")
        .body("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(h(&r, "vary"), Some("Origin"));
    assert_eq!(h(&r, "access-control-expose-headers"), Some("X-Exposed"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Request size limit exceeded");
    // Under the limit it is proxied, with the headers.
    let r = c
        .post(format!("{}/limited", gw.proxy_url()))
        .header("origin", "http://a.test")
        .body("0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "access-control-allow-origin"), Some("http://a.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_errors_through_the_admin_api() {
    let Some((_gw, api)) = start_admin(Backend::Memory).await else {
        return;
    };
    // Defaults as Kong fills them.
    let p = api
        .post("/plugins", &json!({"name": "cors"}))
        .await
        .expect(201);
    assert_eq!(
        p["config"],
        json!({
            "origins": null, "headers": null, "exposed_headers": null,
            "methods": ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"],
            "max_age": null, "credentials": false, "private_network": false,
            "preflight_continue": false,
        })
    );
    // Not consumer-scopable.
    let consumer = api
        .post("/consumers", &json!({"username": "u"}))
        .await
        .expect(201);
    let r = api
        .post(
            "/plugins",
            &json!({"name": "cors", "consumer": {"id": consumer["id"]}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["fields"]["consumer"], "value must be null");

    // A bad regex and a bad method, each named.
    api.post(
        "/plugins",
        &json!({"name": "cors", "config": {"origins": ["http://ok.test", "(bad"], "methods": ["GET", "FETCH"]}}),
    )
    .await
    .expect_json(
        400,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": "2 schema violations (config.methods.2: expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT; config.origins.2: '(bad' is not a valid regex)",
            "fields": {"config": {
                "methods": [null, "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"],
                "origins": [null, "'(bad' is not a valid regex"],
            }},
        }),
    );
    let r = api
        .post(
            "/plugins",
            &json!({"name": "cors", "config": {"max_age": "soon", "credentials": "yes", "nope": 1}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["fields"]["config"]["max_age"], "expected a number");
    assert_eq!(
        r.body["fields"]["config"]["credentials"],
        "expected a boolean"
    );
    assert_eq!(r.body["fields"]["config"]["nope"], "unknown field");
}
