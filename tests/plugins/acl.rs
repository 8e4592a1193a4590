//! acl with key-auth through real sockets: allow and deny lists, the groups header upstream (and
//! its hiding), no consumer, the anonymous consumer's groups in a logical OR, schema errors, and
//! groups added through the Admin API at runtime.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin, wait_proxy};
use crate::support::{Echo, Echoed, Gateway, client, is_request_id};

fn config(url: &str) -> String {
    format!(
        r#"_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials: [{{key: alice-key}}]
    acls: [{{group: admins}}, {{group: users}}]
  - username: bob
    keyauth_credentials: [{{key: bob-key}}]
    acls: [{{group: users}}]
  - username: nogroups
    keyauth_credentials: [{{key: none-key}}]
  - username: anon
    acls: [{{group: guests}}]
services:
  - name: s
    url: {url}
    routes:
      - name: admins
        paths: ["/admins"]
        plugins:
          - name: key-auth
          - name: acl
            config: {{allow: [admins]}}
      - name: no-admins
        paths: ["/no-admins"]
        plugins:
          - name: key-auth
          - name: acl
            config: {{deny: [admins]}}
      - name: hidden
        paths: ["/hidden"]
        plugins:
          - name: key-auth
          - name: acl
            config: {{allow: [users], hide_groups_header: true}}
      - name: acl-only
        paths: ["/acl-only"]
        plugins:
          - name: acl
            config: {{allow: [users]}}
      - name: or-anon
        paths: ["/or-anon"]
        plugins:
          - name: key-auth
            config: {{anonymous: anon}}
          - name: acl
            config: {{allow: [guests, admins]}}
      - name: users-or-anon
        paths: ["/users-or-anon"]
        plugins:
          - name: key-auth
            config: {{anonymous: anon}}
          - name: acl
            config: {{allow: [users]}}
"#
    )
}

async fn get(url: String, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url).header("x-consumer-groups", "forged");
    if let Some(k) = key {
        req = req.header("apikey", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn groups(body: &Value) -> Vec<String> {
    let e: Echoed = serde_json::from_value(body.clone()).unwrap();
    let mut g: Vec<String> = e
        .header("x-consumer-groups")
        .split(", ")
        .map(str::to_owned)
        .collect();
    g.sort();
    g
}

fn assert_forbidden(got: &(u16, Value)) {
    assert_eq!(got.0, 403, "{}", got.1);
    assert_eq!(got.1["message"], "You cannot consume this service");
    assert!(is_request_id(
        got.1["request_id"].as_str().unwrap_or_default()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_deny_and_groups_header() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo.url())).await;
    let url = |p: &str| format!("{}{p}", gw.proxy_url());

    // allow: admins.
    let got = get(url("/admins"), Some("alice-key")).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(
        groups(&got.1),
        ["admins", "users"],
        "comma-separated, forged value replaced"
    );
    assert_forbidden(&get(url("/admins"), Some("bob-key")).await);
    assert_forbidden(&get(url("/admins"), Some("none-key")).await);
    // key-auth runs first (priority 1250 > 950): no key is key-auth's 401.
    let got = get(url("/admins"), None).await;
    assert_eq!(got.0, 401);
    assert_eq!(got.1["message"], "No API key found in request");

    // deny: admins.
    assert_forbidden(&get(url("/no-admins"), Some("alice-key")).await);
    let got = get(url("/no-admins"), Some("bob-key")).await;
    assert_eq!(got.0, 200);
    assert_eq!(groups(&got.1), ["users"]);
    // A consumer without groups passes a deny list, with an empty groups header.
    let got = get(url("/no-admins"), Some("none-key")).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let e: Echoed = serde_json::from_value(got.1).unwrap();
    assert_eq!(e.header("x-consumer-groups"), "");

    // hide_groups_header: no groups header upstream, not even a forged one.
    let got = get(url("/hidden"), Some("bob-key")).await;
    assert_eq!(got.0, 200);
    let e: Echoed = serde_json::from_value(got.1).unwrap();
    assert!(!e.has("x-consumer-groups"), "{e:?}");
    assert_eq!(e.header("x-consumer-username"), "bob");

    // No auth plugin, no consumer: 401 Unauthorized (Kong-error body).
    let got = get(url("/acl-only"), Some("bob-key")).await;
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["message"], "Unauthorized");
    assert!(is_request_id(got.1["request_id"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_consumer_groups() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo.url())).await;
    let url = |p: &str| format!("{}{p}", gw.proxy_url());

    // Logical OR: no key (or a bad one) -> the anonymous consumer, whose groups acl checks.
    for key in [None, Some("wrong")] {
        let got = get(url("/or-anon"), key).await;
        assert_eq!(got.0, 200, "{}", got.1);
        let e: Echoed = serde_json::from_value(got.1.clone()).unwrap();
        assert_eq!(e.header("x-consumer-username"), "anon");
        assert_eq!(e.header("x-anonymous-consumer"), "true");
        assert_eq!(groups(&got.1), ["guests"]);
    }
    // An authenticated admin passes with its own groups; a user is neither guest nor admin.
    let got = get(url("/or-anon"), Some("alice-key")).await;
    assert_eq!(got.0, 200);
    assert_eq!(groups(&got.1), ["admins", "users"]);
    assert_forbidden(&get(url("/or-anon"), Some("bob-key")).await);

    // The anonymous consumer is not in `users`: 403; a user passes.
    assert_forbidden(&get(url("/users-or-anon"), None).await);
    let got = get(url("/users-or-anon"), Some("bob-key")).await;
    assert_eq!(got.0, 200);
    assert_eq!(groups(&got.1), ["users"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_and_runtime_groups() {
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

    // Exactly one of allow / deny (Kong's entity checks, reported under @entity).
    let msg = "only one of these fields must be non-empty: 'config.allow', 'config.deny'";
    api.post(
        "/services/s/plugins",
        &json!({"name": "acl", "config": {"allow": ["a"], "deny": ["b"]}}),
    )
    .await
    .expect_json(
        400,
        &json!({"code": 2, "name": "schema violation",
                "message": format!("schema violation ({msg})"),
                "fields": {"@entity": [msg]}}),
    );
    let msg = "at least one of these fields must be non-empty: 'config.allow', 'config.deny'";
    api.post("/services/s/plugins", &json!({"name": "acl"}))
        .await
        .expect_json(
            400,
            &json!({"code": 2, "name": "schema violation",
                    "message": format!("schema violation ({msg})"),
                    "fields": {"@entity": [msg]}}),
        );
    let bad = api
        .post(
            "/services/s/plugins",
            &json!({"name": "acl", "config": {"allow": ["a"], "nope": 1}}),
        )
        .await
        .expect(400);
    assert_eq!(bad["fields"]["config"]["nope"], "unknown field", "{bad}");

    api.post("/services/s/plugins", &json!({"name": "key-auth"}))
        .await
        .expect(201);
    let acl = api
        .post(
            "/services/s/plugins",
            &json!({"name": "acl", "config": {"allow": ["vip"]}}),
        )
        .await
        .expect(201);
    assert_eq!(acl["config"]["deny"], Value::Null, "{acl}");
    assert_eq!(acl["config"]["hide_groups_header"], false, "{acl}");
    assert_eq!(
        acl["config"]["always_use_authenticated_groups"], false,
        "{acl}"
    );
    api.post("/consumers", &json!({"username": "dave"}))
        .await
        .expect(201);
    api.post("/consumers/dave/key-auth", &json!({"key": "dave-key"}))
        .await
        .expect(201);
    wait_proxy(&api, "/r", 401).await;
    let url = format!("{}/r", api.proxy);
    crate::assert_eventually!(
        Duration::from_secs(10),
        get(url.clone(), Some("dave-key")).await.0 == 403,
        "dave is known but not a vip"
    );
    // Joining the group takes effect without touching the plugin.
    api.post("/consumers/dave/acls", &json!({"group": "vip"}))
        .await
        .expect(201);
    crate::assert_eventually!(
        Duration::from_secs(10),
        get(url.clone(), Some("dave-key")).await.0 == 200,
        "dave became a vip"
    );
    let got = get(url.clone(), Some("dave-key")).await;
    assert_eq!(groups(&got.1), ["vip"]);
}
