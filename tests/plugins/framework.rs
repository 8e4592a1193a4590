//! The plugin framework across plugins, through real sockets (kong-compat §4.0): the scoping
//! precedence with a consumer known only after authentication, Kong's dynamic `ordering`
//! (an API-key rewrite before key-auth, the seed deployment's rebuilt-plugin case), header
//! filters on a plugin's short-circuit, and the logical OR of two auth plugins with `anonymous`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::support::{Echo, Echoed, Gateway, client};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials: [{{key: alice-key}}]
  - username: bob
    keyauth_credentials: [{{key: bob-key}}]
    jwt_secrets: [{{key: bob-issuer, secret: bob-secret-0123456789}}]
  - username: anon
services:
  - name: s
    url: {url}
    routes:
      - name: global-limit
        paths: ["/global"]
      - name: route-limit
        paths: ["/route"]
        plugins:
          - name: rate-limiting
            config: {{minute: 30}}
      - name: ordered
        paths: ["/ordered"]
        plugins:
          - name: request-transformer
            config: {{rename: {{headers: ["x-api-key:apikey"]}}}}
            ordering: {{before: {{access: [key-auth]}}}}
      - name: unordered
        paths: ["/unordered"]
        plugins:
          - name: request-transformer
            config: {{rename: {{headers: ["x-api-key:apikey"]}}}}
      - name: cors
        paths: ["/cors"]
        plugins:
          - name: cors
            config: {{origins: ["https://app.test"]}}
  - name: either
    url: {url}
    routes:
      - name: either
        paths: ["/either"]
        plugins:
          - name: key-auth
            config: {{anonymous: anon}}
          - name: jwt
            config: {{anonymous: anon}}
plugins:
  - name: key-auth
  - name: rate-limiting
    config: {{minute: 50}}
  - name: rate-limiting
    consumer: alice
    config: {{minute: 20}}
"#,
        url = echo.url()
    )
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", gw.proxy_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn limit(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-ratelimit-limit-minute")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_scoped_instances_apply_after_authentication() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    // Global route: bob gets the global instance (50), alice her consumer-scoped one (20).
    let bob = get(&gw, "/global", &[("apikey", "bob-key")]).await;
    assert_eq!(bob.status(), 200);
    assert_eq!(limit(&bob), "50");
    let alice = get(&gw, "/global", &[("apikey", "alice-key")]).await;
    assert_eq!(alice.status(), 200);
    assert_eq!(limit(&alice), "20");
    // Route-scoped (rank 6) beats global but loses to consumer-only (rank 5).
    assert_eq!(
        limit(&get(&gw, "/route", &[("apikey", "bob-key")]).await),
        "30"
    );
    assert_eq!(
        limit(&get(&gw, "/route", &[("apikey", "alice-key")]).await),
        "20"
    );
    // Counters are per consumer (limit_by consumer) and per instance scope: alice's instance is
    // not route-scoped, so /global and /route share her one counter of 20.
    let e: Echoed = get(&gw, "/global", &[("apikey", "alice-key")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(e.header("x-consumer-username"), "alice");
    let again = get(&gw, "/global", &[("apikey", "alice-key")]).await;
    assert_eq!(
        again.headers()["x-ratelimit-remaining-minute"],
        "16",
        "alice's fourth request on her own counter"
    );
    // No key: key-auth answers first, before any rate limit.
    assert_eq!(get(&gw, "/global", &[]).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_runs_a_key_rewrite_before_key_auth() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    // request-transformer (801) normally runs after key-auth (1250): the renamed key comes too
    // late. With `ordering.before.access: [key-auth]` it runs first.
    let unordered = get(&gw, "/unordered", &[("x-api-key", "alice-key")]).await;
    assert_eq!(unordered.status(), 401);
    let ordered = get(&gw, "/ordered", &[("x-api-key", "alice-key")]).await;
    assert_eq!(ordered.status(), 200);
    let e: Echoed = ordered.json().await.unwrap();
    assert_eq!(e.header("x-consumer-username"), "alice");
    assert!(!e.has("x-api-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_filters_run_on_a_plugin_short_circuit() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let resp = get(&gw, "/cors", &[("origin", "https://app.test")]).await;
    assert_eq!(resp.status(), 401, "key-auth refuses");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_plugins_with_anonymous_are_a_logical_or() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "bob-issuer", "sub": "b"}),
        &EncodingKey::from_secret(b"bob-secret-0123456789").unwrap(),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, bool);
    let cases: [Case<'_>; 4] = [
        (&[("apikey", "alice-key")], "alice", false),
        (&[("authorization", bearer.as_str())], "bob", false),
        (&[], "anon", true),
        // A wrong key falls back to anonymous, and jwt (no token) keeps it.
        (&[("apikey", "nope")], "anon", true),
    ];
    for (headers, who, anonymous) in cases {
        let resp = get(&gw, "/either", headers).await;
        assert_eq!(resp.status(), 200, "{headers:?}");
        let e: Echoed = resp.json().await.unwrap();
        assert_eq!(e.header("x-consumer-username"), who, "{headers:?}");
        assert_eq!(e.has("x-anonymous-consumer"), anonymous, "{headers:?}");
        if !anonymous {
            assert!(e.has("x-credential-identifier"), "{headers:?}");
        }
    }
}

/// The request headers go upstream whether the chain's plugins read them after the access phase
/// (cors: then they are copied) or not (key-auth and rate-limiting: then they are moved), and a
/// gateway error after the access phase still answers in the client's `Accept` format with the
/// header filters' headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_reach_the_upstream_and_errors_keep_the_clients_format() {
    let echo = Echo::start("e").await;
    let dead = crate::support::refused_addr();
    let yaml = format!(
        r#"_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials: [{{key: alice-key}}]
services:
  - name: up
    url: {url}
    routes:
      - name: moved
        paths: ["/moved"]
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: {{minute: 1000}}
      - name: copied
        paths: ["/copied"]
        plugins:
          - name: key-auth
          - name: cors
            config: {{origins: ["https://app.test"]}}
  - name: down
    url: http://{dead}
    retries: 0
    routes:
      - name: down-moved
        paths: ["/down-moved"]
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: {{minute: 1000}}
      - name: down-copied
        paths: ["/down-copied"]
        plugins:
          - name: key-auth
          - name: cors
            config: {{origins: ["https://app.test"]}}
"#,
        url = echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let sent = [
        ("apikey", "alice-key"),
        ("x-client-a", "1"),
        ("origin", "https://app.test"),
    ];
    for path in ["/moved", "/copied"] {
        let r = get(&gw, path, &sent).await;
        assert_eq!(r.status(), 200, "{path}");
        let cors = r.headers().get("access-control-allow-origin").cloned();
        let limited = r.headers().contains_key("x-ratelimit-limit-minute");
        let e: Echoed = r.json().await.unwrap();
        assert_eq!(e.header("x-client-a"), "1", "{path}");
        assert_eq!(e.header("x-consumer-username"), "alice", "{path}");
        assert_eq!(e.header("origin"), "https://app.test", "{path}");
        assert!(e.headers.contains_key("x-forwarded-for"), "{path}");
        if path == "/copied" {
            // cors read the Origin header in its header filter, after the access phase.
            assert_eq!(cors.unwrap(), "https://app.test");
        } else {
            assert!(limited);
        }
    }
    for path in ["/down-moved", "/down-copied"] {
        let mut headers = sent.to_vec();
        headers.push(("accept", "text/html"));
        let r = get(&gw, path, &headers).await;
        assert_eq!(r.status(), 502, "{path}");
        let ctype = r.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ctype.starts_with("text/html"), "{path}: {ctype}");
        if path == "/down-moved" {
            assert!(r.headers().contains_key("x-ratelimit-remaining-minute"));
        } else {
            assert_eq!(
                r.headers()["access-control-allow-origin"],
                "https://app.test"
            );
        }
        let body = r.text().await.unwrap();
        assert!(body.contains("<html"), "{path}: {body}");
    }
}
