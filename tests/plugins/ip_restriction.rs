//! ip-restriction (kong-compat §4.9): allow and deny lists of IPv4/IPv6 addresses and CIDRs
//! against the client address (the peer, or X-Real-IP from a trusted peer), custom status and
//! message, schema errors.

use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin};
use crate::support::{Echo, Gateway, client, is_request_id};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: allow
        paths: ["/allow"]
        plugins:
          - name: ip-restriction
            config: {{allow: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]}}
      - name: deny
        paths: ["/deny"]
        plugins:
          - name: ip-restriction
            config: {{deny: ["10.1.0.0/16", "::1", "172.16.5.5/32"]}}
      - name: both
        paths: ["/both"]
        plugins:
          - name: ip-restriction
            config:
              allow: ["10.0.0.0/8"]
              deny: ["10.9.9.9"]
              status: 401
              message: "go away"
      - name: odd-status
        paths: ["/odd-status"]
        plugins:
          - name: ip-restriction
            config: {{deny: ["0.0.0.0/0"], status: 200}}
      - name: peer
        paths: ["/peer"]
        plugins:
          - name: ip-restriction
            config: {{deny: ["127.0.0.1"]}}
"#,
        url = echo.url()
    )
}

/// GET `path` presenting `ip` through X-Real-IP; status and body.
async fn from(gw: &Gateway, path: &str, ip: Option<&str>) -> (u16, String) {
    let mut req = client().get(format!("{}{path}", gw.proxy_url()));
    if let Some(ip) = ip {
        req = req.header("x-real-ip", ip);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("json: {body}"));
    assert!(
        is_request_id(v["request_id"].as_str().unwrap_or("")),
        "{body}"
    );
    v["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_lists() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start_with(&config(&echo), |o| {
        o.trusted_ips = vec!["127.0.0.1/32".into()];
    })
    .await;

    // Allow list: IPv4 CIDR, single IPv4, IPv6 CIDR.
    for ip in [
        "10.0.0.1",
        "10.255.255.255",
        "192.168.1.7",
        "2001:db8::1",
        "2001:db8:ffff::9",
    ] {
        assert_eq!(from(&gw, "/allow", Some(ip)).await.0, 200, "{ip}");
    }
    for ip in ["11.0.0.1", "192.168.1.8", "2001:db9::1", "::1"] {
        let (status, body) = from(&gw, "/allow", Some(ip)).await;
        assert_eq!(status, 403, "{ip}");
        assert_eq!(message(&body), format!("IP address not allowed: {ip}"));
    }
    // Deny list only: everything else passes.
    for ip in ["10.1.2.3", "::1", "172.16.5.5"] {
        let (status, body) = from(&gw, "/deny", Some(ip)).await;
        assert_eq!(status, 403, "{ip}");
        assert_eq!(message(&body), format!("IP address not allowed: {ip}"));
    }
    for ip in ["10.2.0.1", "::2", "172.16.5.6", "2001:db8::1"] {
        assert_eq!(from(&gw, "/deny", Some(ip)).await.0, 200, "{ip}");
    }
    // Deny first, then allow; custom status and message.
    assert_eq!(from(&gw, "/both", Some("10.9.9.8")).await.0, 200);
    let (status, body) = from(&gw, "/both", Some("10.9.9.9")).await;
    assert_eq!(status, 401);
    assert_eq!(message(&body), "go away");
    let (status, body) = from(&gw, "/both", Some("8.8.8.8")).await;
    assert_eq!(status, 401);
    assert_eq!(message(&body), "go away");

    // kong.response.error only takes 4xx/5xx: another status fails the request with a 500.
    let (status, body) = from(&gw, "/odd-status", Some("10.0.0.1")).await;
    assert_eq!(status, 500);
    assert_eq!(message(&body), "An unexpected error occurred");

    // Without X-Real-IP the trusted peer itself (127.0.0.1) is the client.
    let (status, body) = from(&gw, "/peer", None).await;
    assert_eq!(status, 403);
    assert_eq!(message(&body), "IP address not allowed: 127.0.0.1");
    assert_eq!(from(&gw, "/peer", Some("10.0.0.1")).await.0, 200);

    // The error body follows Accept like every kong.response.error.
    let resp = client()
        .get(format!("{}/both", gw.proxy_url()))
        .header("x-real-ip", "8.8.8.8")
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with("go away\nrequest_id: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_cannot_spoof_x_real_ip() {
    let echo = Echo::start("e").await;
    // No trusted IPs: X-Real-IP is ignored, the client is the peer 127.0.0.1.
    let gw = Gateway::start(&config(&echo)).await;
    let (status, body) = from(&gw, "/peer", Some("10.0.0.1")).await;
    assert_eq!(status, 403);
    assert_eq!(message(&body), "IP address not allowed: 127.0.0.1");
    let (status, _) = from(&gw, "/allow", Some("10.0.0.1")).await;
    assert_eq!(status, 403);
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarative_file_with_a_bad_entry_is_refused() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {}
    plugins:
      - name: ip-restriction
        config: {{allow: ["10.0.0.0/8", "300.1.1.1"]}}
"#,
        echo.url()
    );
    let err = Gateway::try_start_with(&yaml, |_| {})
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("invalid ip or cidr range: '300.1.1.1'"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_errors_through_the_admin_api() {
    let Some((_gw, api)) = start_admin(Backend::Memory).await else {
        return;
    };
    // At least one list: Kong's entity check, naming config fields.
    let want = json!({
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (at least one of these fields must be non-empty: 'config.allow', 'config.deny')",
        "fields": {"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]},
    });
    api.post("/plugins", &json!({"name": "ip-restriction"}))
        .await
        .expect_json(400, &want);
    api.post(
        "/plugins",
        &json!({"name": "ip-restriction", "config": {"allow": [], "deny": []}}),
    )
    .await
    .expect_json(400, &want);

    // Invalid entries are named.
    api.post(
        "/plugins",
        &json!({"name": "ip-restriction", "config": {"allow": ["10.0.0.1", "10.0.0.0/33"], "deny": ["nope"]}}),
    )
    .await
    .expect_json(
        400,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": "2 schema violations (config.allow.2: invalid ip or cidr range: '10.0.0.0/33'; config.deny.1: invalid ip or cidr range: 'nope')",
            "fields": {"config": {
                "allow": [null, "invalid ip or cidr range: '10.0.0.0/33'"],
                "deny": ["invalid ip or cidr range: 'nope'"],
            }},
        }),
    );
    let r = api
        .post(
            "/plugins",
            &json!({"name": "ip-restriction", "config": {"deny": ["::1"], "status": "x", "message": 5}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["fields"]["config"]["status"], "expected a number");
    assert_eq!(r.body["fields"]["config"]["message"], "expected a string");

    // A valid one: status and message stay null (the handler's defaults apply).
    let p = api
        .post(
            "/plugins",
            &json!({"name": "ip-restriction", "config": {"deny": ["2001:db8::/32", "1.2.3.4"]}}),
        )
        .await
        .expect(201);
    assert_eq!(
        p["config"],
        json!({"allow": null, "deny": ["2001:db8::/32", "1.2.3.4"], "status": null, "message": null})
    );
}
