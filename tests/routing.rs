use crate::support::{Echo, Gateway, client};

/// Routes for service A (echo "A") and service B (echo "B"), as YAML flow maps.
fn config(a: &Echo, b: &Echo, ra: &[&str], rb: &[&str]) -> String {
    let list = |rs: &[&str]| {
        rs.iter()
            .map(|r| format!("      - {r}\n"))
            .collect::<String>()
    };
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: {}\n    routes:\n{}  - name: b\n    url: {}\n    routes:\n{}",
        a.url(),
        list(ra),
        b.url(),
        list(rb)
    )
}

struct Setup {
    _a: Echo,
    _b: Echo,
    gw: Gateway,
    c: reqwest::Client,
}

async fn setup(ra: &[&str], rb: &[&str]) -> Setup {
    let a = Echo::start("A").await;
    let b = Echo::start("B").await;
    let gw = Gateway::start(&config(&a, &b, ra, rb)).await;
    Setup {
        _a: a,
        _b: b,
        gw,
        c: client(),
    }
}

impl Setup {
    /// Which instance answered ("A"/"B"), or the status code when the gateway answered.
    async fn who(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .c
            .request(method, format!("{}{path}", self.gw.proxy_url()))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        match resp.headers().get("x-instance") {
            Some(v) => v.to_str().expect("instance").to_owned(),
            None => resp.status().as_u16().to_string(),
        }
    }

    async fn get(&self, host: &str, path: &str) -> String {
        self.who("GET", host, path, &[]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longer_plain_prefix_wins() {
    let s = setup(&[r#"{paths: ["/v1"]}"#], &[r#"{paths: ["/"]}"#]).await;
    assert_eq!(s.get("x.test", "/v1/x").await, "A");
    assert_eq!(s.get("x.test", "/v1").await, "A");
    assert_eq!(s.get("x.test", "/x").await, "B");
    assert_eq!(s.get("x.test", "/v").await, "B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_fields_beat_longer_path() {
    let s = setup(
        &[r#"{hosts: ["a.com"], paths: ["/"]}"#],
        &[r#"{paths: ["/v1"]}"#],
    )
    .await;
    assert_eq!(s.get("a.com", "/v1").await, "A");
    assert_eq!(s.get("a.com:8123", "/v1/x").await, "A");
    assert_eq!(s.get("b.com", "/v1").await, "B");
    assert_eq!(s.get("b.com", "/other").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_path_beats_longer_plain_path() {
    let s = setup(&[r#"{paths: ["~/v1/.*"]}"#], &[r#"{paths: ["/v1/users"]}"#]).await;
    assert_eq!(s.get("x.test", "/v1/users").await, "A");
    assert_eq!(s.get("x.test", "/v1/users/7").await, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_host_beats_wildcard_host() {
    let s = setup(
        &[r#"{hosts: ["*.a.com"], paths: ["/"]}"#],
        &[r#"{hosts: ["x.a.com"], paths: ["/"]}"#],
    )
    .await;
    assert_eq!(s.get("x.a.com", "/").await, "B");
    assert_eq!(s.get("y.a.com", "/").await, "A");
    // `*.suffix` matches any depth, but not the bare suffix.
    assert_eq!(s.get("deep.y.a.com", "/p").await, "A");
    assert_eq!(s.get("a.com", "/").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_wildcard_host_and_case_insensitive_host() {
    let s = setup(&[r#"{hosts: ["ex.*"]}"#], &[r#"{hosts: ["plain.test"]}"#]).await;
    assert_eq!(s.get("ex.org", "/").await, "A");
    assert_eq!(s.get("ex.com:9000", "/").await, "A");
    assert_eq!(s.get("xex.org", "/").await, "404");
    assert_eq!(s.get("PLAIN.Test", "/").await, "B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_paths_are_raw_prefixes_not_segments() {
    let s = setup(&[r#"{paths: ["/foo"]}"#], &[r#"{paths: ["/bar/"]}"#]).await;
    assert_eq!(s.get("x.test", "/foo").await, "A");
    assert_eq!(s.get("x.test", "/foobar").await, "A");
    assert_eq!(s.get("x.test", "/foo/bar").await, "A");
    assert_eq!(s.get("x.test", "/bar/x").await, "B");
    assert_eq!(s.get("x.test", "/bar").await, "404");
    assert_eq!(s.get("x.test", "/fo").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_match_exactly_and_add_weight() {
    let s = setup(
        &[r#"{methods: ["POST", "PUT"], paths: ["/m"]}"#],
        &[
            r#"{paths: ["/m"]}"#,
            r#"{methods: ["DELETE"], paths: ["/only"]}"#,
        ],
    )
    .await;
    assert_eq!(s.who("POST", "x.test", "/m", &[]).await, "A");
    assert_eq!(s.who("PUT", "x.test", "/m/1", &[]).await, "A");
    assert_eq!(s.who("GET", "x.test", "/m", &[]).await, "B");
    assert_eq!(s.who("DELETE", "x.test", "/only", &[]).await, "B");
    assert_eq!(s.who("GET", "x.test", "/only", &[]).await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_match_case_insensitive_and_regex() {
    let s = setup(
        &[
            r#"{headers: {x-version: ["v2", "v3"]}, paths: ["/h"]}"#,
            r#"{headers: {x-agent: ["~*^mobile-[0-9]+$"]}, paths: ["/r"]}"#,
        ],
        &[r#"{paths: ["/h", "/r"]}"#],
    )
    .await;
    assert_eq!(
        s.who("GET", "x.test", "/h", &[("x-version", "v2")]).await,
        "A"
    );
    assert_eq!(
        s.who("GET", "x.test", "/h", &[("X-Version", "V3")]).await,
        "A"
    );
    assert_eq!(
        s.who("GET", "x.test", "/h", &[("x-version", "v4")]).await,
        "B"
    );
    assert_eq!(s.who("GET", "x.test", "/h", &[]).await, "B");
    assert_eq!(
        s.who("GET", "x.test", "/r", &[("x-agent", "Mobile-42")])
            .await,
        "A"
    );
    assert_eq!(
        s.who("GET", "x.test", "/r", &[("x-agent", "mobile-x")])
            .await,
        "B"
    );
    assert_eq!(
        s.who("GET", "x.test", "/r", &[("x-agent", "desktop")])
            .await,
        "B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_header_conditions_win() {
    let s = setup(
        &[r#"{headers: {x-a: ["1"], x-b: ["2"]}, paths: ["/hc"]}"#],
        &[r#"{headers: {x-a: ["1"]}, paths: ["/hc/longer"]}"#],
    )
    .await;
    let both = [("x-a", "1"), ("x-b", "2")];
    assert_eq!(s.who("GET", "x.test", "/hc/longer", &both).await, "A");
    assert_eq!(
        s.who("GET", "x.test", "/hc/longer", &[("x-a", "1")]).await,
        "B"
    );
    assert_eq!(s.who("GET", "x.test", "/hc", &[("x-b", "2")]).await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_priority_orders_regex_routes() {
    let s = setup(
        &[r#"{paths: ["~/r/[0-9]+"], regex_priority: 0}"#],
        &[r#"{paths: ["~/r/.*"], regex_priority: 10}"#],
    )
    .await;
    assert_eq!(s.get("x.test", "/r/1").await, "B");
    assert_eq!(s.get("x.test", "/r/x").await, "B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_path_of_a_route_competes_with_its_own_length() {
    let s = setup(
        &[r#"{paths: ["/a", "/abc/def"]}"#],
        &[r#"{paths: ["/abc"]}"#],
    )
    .await;
    assert_eq!(s.get("x.test", "/abc/def/x").await, "A");
    assert_eq!(s.get("x.test", "/abc/x").await, "B");
    assert_eq!(s.get("x.test", "/a/x").await, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_is_anchored_at_start_only_and_strips_the_match() {
    let a = Echo::start("A").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: {}/base\n    routes:\n      - paths: [\"~/re/(?<id>[0-9]+)\"]\n",
        a.url()
    );
    let gw = Gateway::start(&yaml).await;
    let c = client();
    let (st, e) =
        crate::support::get_echo(&c, &format!("{}/re/42/tail?x=1", gw.proxy_url()), None).await;
    assert_eq!(st, 200);
    assert_eq!(e.expect("echo").path, "/base/tail?x=1");
    let (st, _) = crate::support::get_echo(&c, &format!("{}/x/re/42", gw.proxy_url()), None).await;
    assert_eq!(st, 404, "regex must be anchored at the start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_service_is_not_routed() {
    let a = Echo::start("A").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: {}\n    enabled: false\n    routes:\n      - paths: [\"/d\"]\n",
        a.url()
    );
    let gw = Gateway::start(&yaml).await;
    let (st, _) = crate::support::get_echo(&client(), &format!("{}/d", gw.proxy_url()), None).await;
    assert_eq!(st, 404);
    assert_eq!(a.hits(), 0);
}
