//! prometheus (kong-compat §4.10) through real sockets: known traffic (200, 404 from the
//! upstream, 401 from key-auth, 502, a consumer with `per_consumer`, known body sizes), then
//! `/metrics` on the status and the admin listener: counters equal the traffic exactly,
//! histograms are consistent, each flag alone produces only its families, label values stay
//! bounded (raw paths never appear), the node metrics are there (memory and Postgres stores,
//! reload failures, circuit-breaker state), and `promtool check metrics` accepts the output.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::support::{Echo, Gateway, client, component, refused_addr};

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` body.
#[derive(Debug, Clone)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    /// Family name -> `# TYPE`.
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE line");
                types.insert(name.to_owned(), ty.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Self {
            text,
            samples,
            types,
        }
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert!(found.len() <= 1, "duplicate series {name}{want:?}");
        found.first().map(|s| s.value)
    }

    fn has_family(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }
}

fn parse_sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').expect("sample value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let mut labels = BTreeMap::new();
    let name = match head.split_once('{') {
        None => head.to_owned(),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("closing brace");
            let mut chars = body.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "quoted label value in {line:?}");
                let mut v = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        '\\' => match chars.next() {
                            Some('n') => v.push('\n'),
                            Some(c) => v.push(c),
                            None => panic!("dangling escape in {line:?}"),
                        },
                        '"' => break,
                        c => v.push(c),
                    }
                }
                assert!(
                    labels.insert(key.clone(), v).is_none(),
                    "label {key} twice in {line:?}"
                );
                if chars.peek() == Some(&',') {
                    chars.next();
                }
            }
            name.to_owned()
        }
    };
    Sample {
        name,
        labels,
        value,
    }
}

async fn scrape(base: &str) -> Scrape {
    let resp = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200, "{base}/metrics");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("text/plain; charset=UTF-8"), "{base}");
    Scrape::parse(resp.text().await.expect("metrics body"))
}

async fn start_with_admin(yaml: &str) -> (Gateway, String) {
    let gw = Gateway::start_with(yaml, |o| o.admin_listen = "127.0.0.1:0".into()).await;
    let admin = format!("http://{}", gw.bound.admin.expect("admin listener"));
    (gw, admin)
}

/// The plugin's families (Kong's per-route ones), as lines, for comparing two scrapes.
fn plugin_lines(s: &Scrape) -> Vec<String> {
    s.text
        .lines()
        .filter(|l| {
            [
                "kong_http_requests_total",
                "kong_bandwidth_bytes",
                "kong_kong_latency_ms",
                "kong_upstream_latency_ms",
                "kong_request_latency_ms",
            ]
            .iter()
            .any(|f| l.starts_with(f) || l.starts_with(&format!("# HELP {f} ")))
        })
        .map(str::to_owned)
        .collect()
}

const ROUTE_ID: &str = "6a3c2d4e-0000-4000-8000-00000000a0a0";

fn traffic_config(echo: &Echo, down: std::net::SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
services:
  - name: svc
    url: {echo}
    routes:
      - name: open
        paths: ["/open"]
      - name: auth
        paths: ["/auth"]
        plugins:
          - name: key-auth
    plugins:
      - name: prometheus
        config: {{per_consumer: true, status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true}}
  - name: plain
    url: {echo}
    routes:
      - name: auth2
        paths: ["/auth2"]
        plugins:
          - name: key-auth
          - name: prometheus
            config: {{status_code_metrics: true, bandwidth_metrics: true}}
  - name: down
    url: http://{down}
    retries: 0
    routes:
      - name: down
        paths: ["/down"]
        plugins:
          - name: prometheus
            config: {{status_code_metrics: true, latency_metrics: true}}
  - url: {echo}
    routes:
      - id: {ROUTE_ID}
        paths: ["/anon"]
        plugins:
          - name: prometheus
            config: {{status_code_metrics: true}}
  - name: quiet
    url: {echo}
    routes:
      - name: quiet
        paths: ["/quiet"]
"#,
        echo = echo.url(),
    )
}

/// What the traffic should produce, per series.
#[derive(Default)]
struct Expected {
    /// (service, route, code, source, consumer) -> count.
    requests: BTreeMap<(String, String, String, String, String), u64>,
    /// (service, route, direction, consumer) -> bytes.
    bandwidth: BTreeMap<(String, String, String, String), u64>,
}

impl Expected {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        service: &str,
        route: &str,
        code: u16,
        source: &str,
        consumer: &str,
        ingress: u64,
        egress: u64,
        bandwidth: bool,
    ) {
        *self
            .requests
            .entry((
                service.into(),
                route.into(),
                code.to_string(),
                source.into(),
                consumer.into(),
            ))
            .or_default() += 1;
        if bandwidth {
            for (dir, n) in [("ingress", ingress), ("egress", egress)] {
                if n > 0 {
                    *self
                        .bandwidth
                        .entry((service.into(), route.into(), dir.into(), consumer.into()))
                        .or_default() += n;
                }
            }
        }
    }
}

fn actual_requests(s: &Scrape) -> BTreeMap<(String, String, String, String, String), u64> {
    s.matching("kong_http_requests_total", &[])
        .into_iter()
        .map(|x| {
            assert_eq!(x.labels.len(), 6, "{x:?}");
            assert_eq!(x.labels["workspace"], "default", "{x:?}");
            let l = |k: &str| x.labels[k].clone();
            (
                (
                    l("service"),
                    l("route"),
                    l("code"),
                    l("source"),
                    l("consumer"),
                ),
                x.value as u64,
            )
        })
        .collect()
}

fn actual_bandwidth(s: &Scrape) -> BTreeMap<(String, String, String, String), u64> {
    s.matching("kong_bandwidth_bytes", &[])
        .into_iter()
        .map(|x| {
            assert_eq!(x.labels.len(), 5, "{x:?}");
            assert_eq!(x.labels["workspace"], "default", "{x:?}");
            let l = |k: &str| x.labels[k].clone();
            (
                (l("service"), l("route"), l("direction"), l("consumer")),
                x.value as u64,
            )
        })
        .collect()
}

/// Send one request; returns (status, body bytes received).
async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    headers: &[(&str, &str)],
    body: Option<&'static str>,
) -> (u16, u64) {
    let mut req = c.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("proxy request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body").len() as u64;
    (status, bytes)
}

/// Check one route's three histograms: counts, cumulative buckets, `+Inf`, and that the kong
/// and upstream sums add up to the request sum.
fn check_histograms(s: &Scrape, route: &str, requests: u64, proxied: u64) {
    let base = [("route", route), ("workspace", "default")];
    let mut sums = BTreeMap::new();
    for (family, want, bounds) in [
        ("kong_kong_latency_ms", requests, 17),
        ("kong_upstream_latency_ms", proxied, 13),
        ("kong_request_latency_ms", requests, 13),
    ] {
        let count = s.matching(&format!("{family}_count"), &base);
        if want == 0 {
            assert!(count.is_empty(), "{family} for {route}: {count:?}");
            assert!(s.matching(&format!("{family}_bucket"), &base).is_empty());
            sums.insert(family, 0.0);
            continue;
        }
        assert_eq!(count.len(), 1, "{family} {route}");
        assert_eq!(count[0].value as u64, want, "{family}_count {route}");
        let buckets = s.matching(&format!("{family}_bucket"), &base);
        assert_eq!(buckets.len(), bounds + 1, "{family} {route} buckets");
        let mut last = 0.0;
        for b in &buckets {
            assert!(b.value >= last, "{family} {route}: buckets not cumulative");
            last = b.value;
        }
        assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
        assert_eq!(last as u64, want, "{family} {route} +Inf");
        let sum = s.matching(&format!("{family}_sum"), &base);
        assert_eq!(sum.len(), 1);
        assert!(sum[0].value >= 0.0);
        sums.insert(family, sum[0].value);
    }
    let (k, u, r) = (
        sums["kong_kong_latency_ms"],
        sums["kong_upstream_latency_ms"],
        sums["kong_request_latency_ms"],
    );
    assert!(
        (k + u - r).abs() < 0.002,
        "{route}: kong {k} + upstream {u} != request {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_traffic_exactly_on_both_listeners() {
    let echo = Echo::start("e").await;
    let down = refused_addr();
    let (gw, admin) = start_with_admin(&traffic_config(&echo, down)).await;
    let p = gw.proxy_url();
    let c = client();
    let mut want = Expected::default();
    use reqwest::Method as M;

    // 30 distinct raw paths on one route, with known response sizes.
    for i in 0..30u64 {
        let n = ((i + 1) * 3).to_string();
        let (st, got) = send(
            &c,
            M::GET,
            format!("{p}/open/p{i}"),
            &[("x-echo-bytes", &n), ("x-echo-length", "1")],
            None,
        )
        .await;
        assert_eq!((st, got), (200, (i + 1) * 3));
        want.add("svc", "open", 200, "service", "", 0, got, true);
    }
    for _ in 0..2 {
        let (st, got) = send(&c, M::POST, format!("{p}/open"), &[], Some("1234567")).await;
        assert_eq!(st, 200);
        want.add("svc", "open", 200, "service", "", 7, got, true);
    }
    for _ in 0..2 {
        let (st, got) = send(
            &c,
            M::GET,
            format!("{p}/open"),
            &[("x-echo-status", "404")],
            None,
        )
        .await;
        assert_eq!(st, 404);
        want.add("svc", "open", 404, "service", "", 0, got, true);
    }
    // key-auth: 401 from the gateway, then alice (per_consumer on this service).
    for _ in 0..2 {
        let (st, got) = send(&c, M::GET, format!("{p}/auth"), &[], None).await;
        assert_eq!(st, 401);
        want.add("svc", "auth", 401, "kong", "", 0, got, true);
    }
    for _ in 0..2 {
        let (st, got) = send(
            &c,
            M::GET,
            format!("{p}/auth"),
            &[("apikey", "alice-key")],
            None,
        )
        .await;
        assert_eq!(st, 200);
        want.add("svc", "auth", 200, "service", "alice", 0, got, true);
    }
    let (st, got) = send(
        &c,
        M::POST,
        format!("{p}/auth"),
        &[("apikey", "alice-key")],
        Some("eleven byte"),
    )
    .await;
    assert_eq!(st, 200);
    want.add("svc", "auth", 200, "service", "alice", 11, got, true);
    // The same consumer where per_consumer is off: consumer stays empty.
    let (st, got) = send(&c, M::GET, format!("{p}/auth2"), &[], None).await;
    assert_eq!(st, 401);
    want.add("plain", "auth2", 401, "kong", "", 0, got, true);
    for _ in 0..2 {
        let (st, got) = send(
            &c,
            M::GET,
            format!("{p}/auth2"),
            &[("apikey", "alice-key")],
            None,
        )
        .await;
        assert_eq!(st, 200);
        want.add("plain", "auth2", 200, "service", "", 0, got, true);
    }
    // Upstream refused: 502 from the gateway.
    for _ in 0..2 {
        let (st, got) = send(&c, M::GET, format!("{p}/down"), &[], None).await;
        assert_eq!(st, 502);
        want.add("down", "down", 502, "kong", "", 0, got, false);
    }
    // A nameless service (label: its host) and a nameless route (label: its id).
    let (st, got) = send(&c, M::GET, format!("{p}/anon"), &[], None).await;
    assert_eq!(st, 200);
    want.add("127.0.0.1", ROUTE_ID, 200, "service", "", 0, got, false);
    // Not counted: a route without the plugin, and no route at all.
    for path in ["/quiet", "/quiet", "/nowhere"] {
        send(&c, M::GET, format!("{p}{path}"), &[], None).await;
    }

    // The log phase runs once the body is done, just after the client read it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = scrape(&gw.status_url()).await;
        if actual_requests(&s) == want.requests && actual_bandwidth(&s) == want.bandwidth {
            break s;
        }
        if tokio::time::Instant::now() >= deadline {
            assert_eq!(
                actual_requests(&s),
                want.requests,
                "kong_http_requests_total"
            );
            assert_eq!(actual_bandwidth(&s), want.bandwidth, "kong_bandwidth_bytes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (family, ty) in [
        ("kong_http_requests_total", "counter"),
        ("kong_bandwidth_bytes", "counter"),
        ("kong_kong_latency_ms", "histogram"),
        ("kong_upstream_latency_ms", "histogram"),
        ("kong_request_latency_ms", "histogram"),
    ] {
        assert_eq!(status.types.get(family).map(String::as_str), Some(ty));
    }
    // Latency only where latency_metrics is on: svc's routes and down.
    check_histograms(&status, "open", 34, 34);
    check_histograms(&status, "auth", 5, 3);
    check_histograms(&status, "down", 2, 0);
    for route in ["auth2", ROUTE_ID, "quiet"] {
        assert!(
            status
                .matching("kong_request_latency_ms_count", &[("route", route)])
                .is_empty(),
            "{route} has latency metrics"
        );
    }
    // Bounded labels: configured names only, never a raw path.
    assert!(!status.text.contains("/open/p"), "a raw path leaked");
    let routes: BTreeSet<&str> = status
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route").map(String::as_str))
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from(["open", "auth", "auth2", "down", ROUTE_ID])
    );
    for s in &status.samples {
        assert!(!s.labels.contains_key("path"), "{s:?}");
    }

    // The admin listener serves the same numbers.
    let on_admin = scrape(&admin).await;
    assert_eq!(plugin_lines(&on_admin), plugin_lines(&status));
    assert!(!plugin_lines(&status).is_empty());
    gw.stop().await;
}

/// Families each flag produces.
const FAMILIES: [(&str, &[&str]); 4] = [
    ("status_code_metrics", &["kong_http_requests_total"]),
    (
        "latency_metrics",
        &[
            "kong_kong_latency_ms",
            "kong_upstream_latency_ms",
            "kong_request_latency_ms",
        ],
    ),
    ("bandwidth_metrics", &["kong_bandwidth_bytes"]),
    ("upstream_health_metrics", &["kong_upstream_target_health"]),
];

fn flag_config(echo: &Echo, flag: Option<&str>) -> String {
    let conf = flag.map_or_else(String::new, |f| format!("{f}: true"));
    format!(
        r#"_format_version: "3.0"
upstreams:
  - name: up
    targets:
      - target: {target}
services:
  - name: t
    host: up
    routes:
      - name: t
        paths: ["/t"]
        plugins:
          - name: prometheus
            config: {{{conf}}}
  - name: marker
    url: {echo}
    routes:
      - name: marker
        paths: ["/marker"]
        plugins:
          - name: prometheus
            config: {{status_code_metrics: true}}
"#,
        target = echo.authority(),
        echo = echo.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_flag_alone_gives_only_its_families() {
    let echo = Echo::start("e").await;
    for flag in [None]
        .into_iter()
        .chain(FAMILIES.iter().map(|(f, _)| Some(*f)))
    {
        let gw = Gateway::start(&flag_config(&echo, flag)).await;
        let c = client();
        for _ in 0..3 {
            let (st, _) = send(
                &c,
                reqwest::Method::POST,
                format!("{}/t", gw.proxy_url()),
                &[],
                Some("abc"),
            )
            .await;
            assert_eq!(st, 200, "{flag:?}");
        }
        send(
            &c,
            reqwest::Method::GET,
            format!("{}/marker", gw.proxy_url()),
            &[],
            None,
        )
        .await;
        // The marker request (logged after the others) shows the log phase ran for them.
        let mut s: Scrape;
        assert_eventually!(
            Duration::from_secs(10),
            {
                s = scrape(&gw.status_url()).await;
                s.matching("kong_http_requests_total", &[("route", "marker")])
                    .len()
                    == 1
                    && match flag {
                        Some("status_code_metrics") => {
                            s.get(
                                "kong_http_requests_total",
                                &[
                                    ("service", "t"),
                                    ("route", "t"),
                                    ("code", "200"),
                                    ("source", "service"),
                                    ("workspace", "default"),
                                    ("consumer", ""),
                                ],
                            ) == Some(3.0)
                        }
                        Some("latency_metrics") => {
                            s.matching("kong_request_latency_ms_count", &[("route", "t")])
                                .first()
                                .map(|x| x.value)
                                == Some(3.0)
                        }
                        Some("bandwidth_metrics") => {
                            s.get(
                                "kong_bandwidth_bytes",
                                &[
                                    ("service", "t"),
                                    ("route", "t"),
                                    ("direction", "ingress"),
                                    ("workspace", "default"),
                                    ("consumer", ""),
                                ],
                            ) == Some(9.0)
                        }
                        _ => true,
                    }
            },
            "flag {flag:?}: metrics of the traffic"
        );
        for (f, families) in FAMILIES {
            // (The marker route always has status codes; route t's are checked below.)
            for family in families
                .iter()
                .filter(|f| **f != "kong_http_requests_total")
            {
                let on = flag == Some(f);
                assert_eq!(s.has_family(family), on, "flag {flag:?}: family {family}");
            }
        }
        // Status codes of route t only with its flag (the marker's always).
        let t_requests = s
            .matching("kong_http_requests_total", &[("route", "t")])
            .len();
        assert_eq!(t_requests > 0, flag == Some("status_code_metrics"));
        if flag == Some("upstream_health_metrics") {
            let target = echo.authority();
            for (state, v) in [
                ("healthchecks_off", 1.0),
                ("healthy", 0.0),
                ("unhealthy", 0.0),
                ("dns_error", 0.0),
            ] {
                assert_eq!(
                    s.get(
                        "kong_upstream_target_health",
                        &[
                            ("upstream", "up"),
                            ("target", &target),
                            ("address", &target),
                            ("state", state),
                            ("subsystem", "http"),
                        ],
                    ),
                    Some(v),
                    "{state}\n{}",
                    s.text
                );
            }
        }
        // Node metrics are there whatever the flags.
        assert_eq!(s.get("kong_datastore_reachable", &[]), Some(1.0));
        gw.stop().await;
    }
}

fn node_config(echo: &Echo, down: std::net::SocketAddr, extra_plugin: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: svc
    url: {echo}
    routes:
      - name: r
        paths: ["/r"]
    plugins:
      - name: prometheus
        config: {{status_code_metrics: true}}
{extra_plugin}
  - name: broken
    url: http://{down}
    retries: 0
    routes:
      - name: broken
        paths: ["/broken"]
    plugins:
      - name: circuit-breaker
        config: {{failure_threshold: 2, cool_down: 60}}
"#,
        echo = echo.url(),
    )
}

fn r_count(s: &Scrape) -> Option<f64> {
    s.get(
        "kong_http_requests_total",
        &[
            ("service", "svc"),
            ("route", "r"),
            ("code", "200"),
            ("source", "service"),
            ("workspace", "default"),
            ("consumer", ""),
        ],
    )
}

async fn post_config(admin: &str, yaml: &str) -> u16 {
    client()
        .post(format!("{admin}/config"))
        .json(&json!({ "config": yaml }))
        .send()
        .await
        .expect("POST /config")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_metrics_reloads_and_circuit_breakers() {
    let echo = Echo::start("e").await;
    let down = refused_addr();
    let yaml = node_config(&echo, down, "");
    let (gw, admin) = start_with_admin(&yaml).await;
    let s = scrape(&gw.status_url()).await;

    assert_eq!(s.get("kong_datastore_reachable", &[]), Some(1.0));
    let info = s.matching("kong_node_info", &[("version", "3.9.0")]);
    assert_eq!(info.len(), 1, "{}", s.text);
    assert_eq!(info[0].value, 1.0);
    let node_id = info[0].labels["node_id"].clone();
    assert!(uuid::Uuid::parse_str(&node_id).is_ok(), "{node_id}");
    let pid = std::process::id().to_string();
    let vm = s.get(
        "kong_memory_workers_lua_vms_bytes",
        &[
            ("node_id", &node_id),
            ("pid", &pid),
            ("kong_subsystem", "http"),
        ],
    );
    assert!(vm.is_some_and(|v| v > 1e6), "{vm:?}");
    let rss = s.get("gwctl_process_resident_memory_bytes", &[]);
    assert!(rss.is_some_and(|v| v > 1e6), "{rss:?}");
    let revision = s.get("gwctl_config_revision", &[]).expect("revision");
    assert!(revision >= 1.0);
    assert_eq!(s.get("gwctl_config_reload_failures_total", &[]), Some(0.0));
    for signal in ["spans", "logs", "access_log"] {
        assert!(
            s.get("gwctl_telemetry_dropped_total", &[("signal", signal)])
                .is_some(),
            "{signal}"
        );
    }
    assert_eq!(
        s.types
            .get("gwctl_telemetry_dropped_total")
            .map(String::as_str),
        Some("counter")
    );

    // Traffic: 3 proxied, 2 failing (the breaker opens), 1 without a route.
    let c = client();
    let p = gw.proxy_url();
    for path in ["/r", "/r", "/r", "/broken", "/broken", "/nowhere"] {
        send(&c, reqwest::Method::GET, format!("{p}{path}"), &[], None).await;
    }
    let mut s: Scrape;
    assert_eventually!(
        Duration::from_secs(10),
        {
            s = scrape(&gw.status_url()).await;
            r_count(&s) == Some(3.0)
                && s.get(
                    "gwctl_circuit_breaker_state",
                    &[("service", "broken"), ("state", "open")],
                ) == Some(1.0)
        },
        "traffic counted and breaker open"
    );
    let node = [("node_id", node_id.as_str()), ("subsystem", "http")];
    assert_eq!(s.get("kong_nginx_requests_total", &node), Some(6.0));
    let conn = |state: &str| {
        s.get(
            "kong_nginx_connections_total",
            &[
                ("node_id", node_id.as_str()),
                ("subsystem", "http"),
                ("state", state),
            ],
        )
    };
    assert_eq!(conn("total"), Some(6.0));
    for state in [
        "accepted", "active", "handled", "reading", "waiting", "writing",
    ] {
        assert!(conn(state).is_some_and(|v| v >= 0.0), "{state}");
    }
    assert!(conn("accepted").unwrap() >= 1.0);
    assert_eq!(
        s.types
            .get("kong_nginx_connections_total")
            .map(String::as_str),
        Some("gauge")
    );
    for (state, v) in [("closed", 0.0), ("open", 1.0), ("half_open", 0.0)] {
        assert_eq!(
            s.get(
                "gwctl_circuit_breaker_state",
                &[("service", "broken"), ("state", state)]
            ),
            Some(v),
            "{state}"
        );
    }
    assert_eq!(
        s.get(
            "gwctl_circuit_breaker_opened_total",
            &[("service", "broken")]
        ),
        Some(1.0)
    );

    // A configuration that validates but does not compile (a header name with a space): a
    // reload failure, the old snapshot keeps serving.
    let bad = node_config(
        &echo,
        down,
        "      - name: correlation-id\n        config: {header_name: \"bad header\"}",
    );
    assert_eq!(post_config(&admin, &bad).await, 201);
    assert_eventually!(
        Duration::from_secs(10),
        {
            s = scrape(&gw.status_url()).await;
            s.get("gwctl_config_reload_failures_total", &[]) == Some(1.0)
        },
        "reload failure counted"
    );
    assert_eq!(s.get("gwctl_config_revision", &[]), Some(revision));
    // A good one: the revision moves, and the counters survive the reload.
    assert_eq!(post_config(&admin, &yaml).await, 201);
    assert_eventually!(
        Duration::from_secs(10),
        {
            s = scrape(&gw.status_url()).await;
            s.get("gwctl_config_revision", &[]) == Some(revision + 1.0)
        },
        "revision after a good reload"
    );
    send(&c, reqwest::Method::GET, format!("{p}/r"), &[], None).await;
    assert_eventually!(
        Duration::from_secs(10),
        {
            s = scrape(&gw.status_url()).await;
            r_count(&s) == Some(4.0)
        },
        "counter continued after the reload: {:?}",
        r_count(&s)
    );
    assert_eq!(s.get("gwctl_config_reload_failures_total", &[]), Some(1.0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_reachable_with_postgres() {
    let Some((gw, api)) =
        crate::support::admin::start_admin(crate::support::admin::Backend::Postgres).await
    else {
        crate::support::pg::skip_note("datastore_reachable_with_postgres");
        return;
    };
    for base in [gw.status_url(), api.base.clone()] {
        let s = scrape(&base).await;
        assert_eq!(s.get("kong_datastore_reachable", &[]), Some(1.0), "{base}");
        assert_eq!(
            s.matching("kong_node_info", &[("version", "3.9.0")]).len(),
            1
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_need_the_admin_token() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start_with(&node_config(&echo, refused_addr(), ""), |o| {
        o.admin_listen = "127.0.0.1:0".into();
        o.admin_token = Some("t0ken".into());
    })
    .await;
    let admin = format!("http://{}", gw.bound.admin.unwrap());
    let c = client();
    let denied = c.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let ok = c
        .get(format!("{admin}/metrics"))
        .header("kong-admin-token", "t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("kong_node_info{"));
    gw.stop().await;
}

/// promtool's lint findings that follow from Kong's own metric names (kept so Kong's
/// dashboards work); anything else is a failure.
const KONG_NAMING_FINDINGS: [&str; 6] = [
    "kong_bandwidth_bytes counter metrics should have \"_total\" suffix",
    "kong_kong_latency_ms metric names should not contain abbreviated units",
    "kong_upstream_latency_ms metric names should not contain abbreviated units",
    "kong_request_latency_ms metric names should not contain abbreviated units",
    "kong_nginx_connections_total non-counter metrics should not have \"_total\" suffix",
    "kong_nginx_requests_total non-counter metrics should not have \"_total\" suffix",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_output_with_every_flag_on() {
    let Some(promtool) = component("GWCTL_TEST_PROMTOOL", "promtool") else {
        return;
    };
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
consumers:
  - username: "we\"ird\\name"
    keyauth_credentials:
      - key: weird-key
upstreams:
  - name: up
    targets:
      - target: {target}
services:
  - name: svc
    host: up
    routes:
      - name: open
        paths: ["/open"]
      - name: auth
        paths: ["/auth"]
        plugins:
          - name: key-auth
  - name: breaker
    url: {echo}
    routes:
      - name: breaker
        paths: ["/breaker"]
    plugins:
      - name: circuit-breaker
plugins:
  - name: prometheus
    config:
      per_consumer: true
      status_code_metrics: true
      latency_metrics: true
      bandwidth_metrics: true
      upstream_health_metrics: true
      ai_metrics: true
      wasm_metrics: true
"#,
        target = echo.authority(),
        echo = echo.url(),
    );
    let (gw, admin) = start_with_admin(&yaml).await;
    let c = client();
    let p = gw.proxy_url();
    for (path, key) in [
        ("/open/a", None),
        ("/open/b", None),
        ("/auth", None),
        ("/auth", Some("weird-key")),
        ("/breaker", None),
        ("/nowhere", None),
    ] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("apikey", k)).into_iter().collect();
        send(
            &c,
            reqwest::Method::POST,
            format!("{p}{path}"),
            &headers,
            Some("xy"),
        )
        .await;
    }
    let mut s: Scrape;
    assert_eventually!(
        Duration::from_secs(10),
        {
            s = scrape(&gw.status_url()).await;
            s.matching("kong_http_requests_total", &[]).len() == 4
        },
        "4 status series (open 200, auth 401, auth 200 for the consumer, breaker 200)"
    );
    assert_eq!(
        s.matching(
            "kong_http_requests_total",
            &[("consumer", "we\"ird\\name"), ("code", "200")]
        )
        .len(),
        1,
        "{}",
        s.text
    );
    for family in [
        "kong_http_requests_total",
        "kong_bandwidth_bytes",
        "kong_kong_latency_ms",
        "kong_upstream_latency_ms",
        "kong_request_latency_ms",
        "kong_upstream_target_health",
        "gwctl_circuit_breaker_state",
        "kong_datastore_reachable",
    ] {
        assert!(s.has_family(family), "{family} missing");
    }
    for base in [gw.status_url(), admin.clone()] {
        let text = scrape(&base).await.text;
        let mut child = tokio::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {promtool}: {e}"));
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(text.as_bytes()).await.unwrap();
        }
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("promtool finishes")
            .expect("promtool output");
        let findings = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(3),
            "promtool check metrics failed ({code:?}) on {base}: {findings}\n{text}"
        );
        for line in findings.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                KONG_NAMING_FINDINGS.contains(&line.trim()),
                "promtool on {base}: unexpected finding {line:?}\n{text}"
            );
        }
    }
    gw.stop().await;
}
