//! response-transformer (kong-compat §4.5): header edits, JSON edits with json_types, what it
//! leaves alone (non-JSON, compressed, too large: streamed with bounded memory), and schema
//! violations through the Admin API.

use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin};
use crate::support::{BinGateway, Echo, Gateway, client};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {}
    routes:
      - name: hdr
        paths: ["/hdr"]
        plugins:
          - name: response-transformer
            config:
              remove:
                headers: [x-instance, x-gone]
              rename:
                headers: ["x-old:x-new"]
              replace:
                headers: ["x-rep:replaced", "x-absent:never"]
              add:
                headers: ["x-added:a1", "x-keep:not-me", "x-gone:back"]
              append:
                headers: ["x-added:a2", "x-multi:m2"]
      - name: json
        paths: ["/json"]
        plugins:
          - name: response-transformer
            config:
              remove:
                json: [version, headers, absent]
              rename:
                json: ["instance:server_id", "nothing:else"]
              replace:
                json: ["method:PATCHED", "body_len:7", "absent:x"]
                json_types: [string, number]
              add:
                json: ["flag:true", "ratio:0.5", "note:a:b", "method:never", "bad:zz"]
                json_types: [boolean, number, string, string, number]
              append:
                json: ["path:/extra", "tags:t1", "tags:t2", "count:3"]
                json_types: [string, string, string, number]
"#,
        echo.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_edits() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let resp = client()
        .get(format!("{}/hdr", gw.proxy_url()))
        .header("x-echo-header", "x-gone:1")
        .header("x-echo-header", "x-old:o")
        .header("x-echo-header", "x-new:overwritten")
        .header("x-echo-header", "x-rep:r")
        .header("x-echo-header", "x-keep:me")
        .header("x-echo-header", "x-multi:m1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let all = |n: &str| -> Vec<String> {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert!(h.get("x-instance").is_none());
    // remove then add: the add sees the header gone.
    assert_eq!(all("x-gone"), ["back"]);
    assert!(h.get("x-old").is_none());
    assert_eq!(all("x-new"), ["o"]);
    assert_eq!(all("x-rep"), ["replaced"]);
    assert!(h.get("x-absent").is_none());
    assert_eq!(all("x-keep"), ["me"]);
    assert_eq!(all("x-added"), ["a1", "a2"]);
    assert_eq!(all("x-multi"), ["m1", "m2"]);
    // No JSON rules: the body and its length are untouched.
    let len = h["content-length"]
        .to_str()
        .unwrap()
        .parse::<usize>()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["instance"], "e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_edits_with_types() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let resp = client()
        .get(format!("{}/json", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "Content-Length dropped when the body is rewritten"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"server_id": "e", "method": "PATCHED", "path": ["/", "/extra"], "body_len": 7,
               "flag": true, "ratio": 0.5, "note": "a:b", "tags": ["t1", "t2"], "count": [3]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_alone() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let c = client();

    // Not JSON: untouched, Content-Length kept.
    let resp = c
        .get(format!("{}/json", gw.proxy_url()))
        .header("x-echo-bytes", "1000")
        .header("x-echo-length", "1")
        .header("x-echo-header", "content-type:text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "1000");
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 1000);
    assert!(body.iter().all(|b| *b == b'x'));

    // Compressed JSON: untouched, Content-Length kept.
    let resp = c
        .get(format!("{}/json", gw.proxy_url()))
        .header("x-echo-header", "content-encoding:gzip")
        .header("x-echo-header", "content-type:application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["instance"], "e", "not rewritten");
    assert!(v.get("version").is_some());

    // A JSON array (not an object) passes unmodified too: the echo with a JSON content type
    // but generated non-JSON bytes stands in for "not parseable".
    let resp = c
        .get(format!("{}/json", gw.proxy_url()))
        .header("x-echo-bytes", "10")
        .header("x-echo-header", "content-type:application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "xxxxxxxxxx");
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Through the real binary, whose own peak RSS is measured (other tests in this process cannot
/// disturb it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_json_streams_untouched_in_bounded_memory() {
    let echo = Echo::start("e").await;
    let gw = BinGateway::start(&config(&echo), &[]).await;
    let len: u64 = 128 * 1024 * 1024;
    // Warm up (pools, allocator) before the baseline.
    let warm = client()
        .get(format!("{}/json", gw.proxy_url()))
        .header("x-echo-header", "content-type:application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let _ = warm.bytes().await.unwrap();
    let before = status_kib(gw.pid, "VmRSS:");
    let mut resp = client()
        .get(format!("{}/json", gw.proxy_url()))
        .header("x-echo-bytes", len.to_string())
        .header("x-echo-header", "content-type:application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0u64;
    let mut first = None;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        if first.is_none() {
            first = chunk.first().copied();
        }
        assert!(chunk.iter().all(|b| *b == b'x'));
        got += chunk.len() as u64;
    }
    assert_eq!(got, len, "the whole body passed");
    assert_eq!(first, Some(b'x'));
    let peak = status_kib(gw.pid, "VmHWM:");
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 64,
        "the gateway's peak RSS grew by {grew_mib} MiB while streaming {} MiB",
        len >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations() {
    let Some((_gw, api)) = start_admin(Backend::Memory).await else {
        return;
    };
    let cases = [
        (
            json!({"add": {"json_types": ["int"]}}),
            json!({"add": {"json_types": ["expected one of: boolean, number, string"]}}),
        ),
        (
            json!({"append": {"json": ["novalue"]}}),
            json!({"append": {"json": ["invalid value: novalue"]}}),
        ),
        (
            json!({"rename": {"headers": ["x-a:bad header"]}}),
            json!({"rename": {"headers": ["'bad header' is not a valid header"]}}),
        ),
        (
            json!({"remove": {"querystring": []}}),
            json!({"remove": {"querystring": "unknown field"}}),
        ),
    ];
    for (config, fields) in cases {
        let body = api
            .post(
                "/plugins",
                &json!({"name": "response-transformer", "config": config}),
            )
            .await
            .expect(400);
        assert_eq!(body["name"], "schema violation", "{body}");
        assert_eq!(body["fields"]["config"], fields, "{body}");
    }
    let body = api
        .post("/plugins", &json!({"name": "response-transformer"}))
        .await
        .expect(201);
    assert_eq!(
        body["config"],
        json!({"remove": {"json": [], "headers": []},
               "rename": {"json": [], "headers": []},
               "replace": {"json": [], "json_types": [], "headers": []},
               "add": {"json": [], "json_types": [], "headers": []},
               "append": {"json": [], "json_types": [], "headers": []}})
    );
}
