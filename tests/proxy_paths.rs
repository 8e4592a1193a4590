use crate::support::{Echo, Gateway, client, get_echo, raw};

/// kong-compat §2.5: (route path, strip_path, service.path, request, upstream path).
const ROWS: &[(&str, bool, Option<&str>, &str, &str)] = &[
    ("/api", true, None, "/api/users", "/users"),
    ("/api", true, None, "/api", "/"),
    ("/api", true, None, "/apiusers", "/users"),
    ("/api", true, Some("/v1"), "/api/users", "/v1/users"),
    ("/api", true, Some("/v1"), "/api", "/v1"),
    ("/api", true, Some("/v1"), "/api/", "/v1/"),
    ("/api", true, Some("/v1"), "/apiusers", "/v1/users"),
    ("/api", true, Some("/v1/"), "/api/users", "/v1/users"),
    ("/api", true, Some("/v1/"), "/api", "/v1"),
    ("/api", false, None, "/api/users", "/api/users"),
    ("/api", false, Some("/v1"), "/api/users", "/v1/api/users"),
    ("/api", false, Some("/v1/"), "/api/users", "/v1/api/users"),
    ("/", false, Some("/v1"), "/", "/v1"),
];

/// One service + route per row, told apart by host `rowN.test`.
fn config(echo: &Echo) -> String {
    let mut y = String::from("_format_version: \"3.0\"\nservices:\n");
    for (i, (route_path, strip, svc_path, _, _)) in ROWS.iter().enumerate() {
        let url = format!("{}{}", echo.url(), svc_path.unwrap_or(""));
        y.push_str(&format!(
            "  - name: s{i}\n    url: {url}\n    routes:\n      - name: r{i}\n        hosts: [\"row{i}.test\"]\n        paths: [\"{route_path}\"]\n        strip_path: {strip}\n"
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_path_joining_table() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let c = client();
    let mut failures = Vec::new();
    for (i, (route_path, strip, svc_path, request, want)) in ROWS.iter().enumerate() {
        for (query, want_query) in [("", ""), ("?q=1&b=%20x", "?q=1&b=%20x")] {
            let url = format!("{}{request}{query}", gw.proxy_url());
            let (status, echoed) = get_echo(&c, &url, Some(&format!("row{i}.test"))).await;
            let got = echoed.map(|e| e.path);
            let want = format!("{want}{want_query}");
            if status != 200 || got.as_deref() != Some(want.as_str()) {
                failures.push(format!(
                    "route {route_path} strip {strip} service.path {svc_path:?} request {request}{query}: want {want}, got {status} {got:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_query_string_is_preserved() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let req = "GET /api/users? HTTP/1.1\r\nHost: row0.test\r\nConnection: close\r\n\r\n";
    let resp = raw::exchange(gw.proxy_addr(), req.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let e: crate::support::Echoed = serde_json::from_slice(&resp.body).expect("echo json");
    assert_eq!(e.path, "/users?");
}

/// kong-compat §2.1: the normalized path is matched and forwarded (raw requests: clients would
/// normalize dot segments themselves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalized_path_is_matched_and_forwarded() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let cases = [
        ("/api/%75sers", "/users"),
        ("/%61pi/users", "/users"),
        ("/api/x/../users", "/users"),
        ("/api/./users", "/users"),
        ("//api//users", "/users"),
        ("/api/a%2fb", "/a%2Fb"),
        ("/api/users?x=%2f", "/users?x=%2f"),
    ];
    let mut failures = Vec::new();
    for (request, want) in cases {
        let req = format!("GET {request} HTTP/1.1\r\nHost: row0.test\r\nConnection: close\r\n\r\n");
        let resp = raw::exchange(gw.proxy_addr(), req.as_bytes()).await;
        let got = serde_json::from_slice::<crate::support::Echoed>(&resp.body)
            .ok()
            .map(|e| e.path);
        if resp.status != 200 || got.as_deref() != Some(want) {
            failures.push(format!(
                "{request}: want {want}, got {} {got:?}",
                resp.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
