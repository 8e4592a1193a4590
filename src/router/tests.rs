//! Router matching and priority tests (kong-compat §2.1, §2.2), including a property test that
//! compares the indexed router with a brute-force reference and checks order independence.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use uuid::Uuid;

use super::pattern::{HostPattern, regex_source, split_host_port};
use super::*;
use crate::model::{Protocol, Route};

fn route(id: u128, f: impl FnOnce(&mut Route)) -> Arc<Route> {
    let mut r = Route {
        id: Uuid::from_u128(id),
        name: None,
        protocols: vec![Protocol::Http, Protocol::Https],
        methods: None,
        hosts: None,
        paths: None,
        headers: None,
        snis: None,
        sources: None,
        destinations: None,
        https_redirect_status_code: 426,
        regex_priority: 0,
        strip_path: true,
        path_handling: "v0".into(),
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        service: None,
        tags: None,
        created_at: 0,
        updated_at: 0,
    };
    f(&mut r);
    Arc::new(r)
}

fn strs(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| (*s).to_owned()).collect())
}

fn hdrs(v: &[(&str, &[&str])]) -> Option<BTreeMap<String, Vec<String>>> {
    Some(
        v.iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect(),
    )
}

fn headers(v: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, val) in v {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(val).unwrap(),
        );
    }
    h
}

struct Req<'a> {
    method: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
    headers: HeaderMap,
}

fn req(path: &str) -> Req<'_> {
    Req {
        method: "GET",
        host: "example.org",
        port: 80,
        path,
        headers: HeaderMap::new(),
    }
}

impl<'a> Req<'a> {
    fn host(mut self, h: &'a str) -> Self {
        self.host = h;
        self
    }
    fn method(mut self, m: &'a str) -> Self {
        self.method = m;
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    fn headers(mut self, h: &[(&str, &str)]) -> Self {
        self.headers = headers(h);
        self
    }
    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: self.method,
            host: self.host,
            port: self.port,
            path: self.path,
            headers: &self.headers,
        }
    }
}

/// The winning route id (as u128) and matched length.
fn win(router: &Router, r: &Req<'_>) -> Option<(u128, usize)> {
    router
        .find(&r.info())
        .map(|m| (m.route.id.as_u128(), m.matched_len))
}

fn winner(routes: &[Arc<Route>], r: &Req<'_>) -> Option<u128> {
    let router = Router::new(routes).unwrap();
    // Insertion order never matters.
    let mut rev = routes.to_vec();
    rev.reverse();
    let rev = Router::new(&rev).unwrap();
    let a = win(&router, r);
    assert_eq!(a, win(&rev, r), "reversed route order changed the result");
    a.map(|(id, _)| id)
}

#[test]
fn empty_router() {
    let r = Router::new(&[]).unwrap();
    assert!(r.is_empty());
    assert_eq!(r.len(), 0);
    assert!(r.find(&req("/").info()).is_none());
}

#[test]
fn compat_2_2_longer_prefix_wins() {
    let routes = [
        route(1, |r| r.paths = strs(&["/v1"])),
        route(2, |r| r.paths = strs(&["/"])),
    ];
    assert_eq!(winner(&routes, &req("/v1/x")), Some(1));
    assert_eq!(winner(&routes, &req("/v2")), Some(2));
}

#[test]
fn compat_2_2_more_fields_beat_path_length() {
    let routes = [
        route(1, |r| {
            r.hosts = strs(&["a.com"]);
            r.paths = strs(&["/"]);
        }),
        route(2, |r| r.paths = strs(&["/v1"])),
    ];
    assert_eq!(winner(&routes, &req("/v1").host("a.com")), Some(1));
    assert_eq!(winner(&routes, &req("/v1").host("b.com")), Some(2));
}

#[test]
fn compat_2_2_regex_beats_longer_plain_path() {
    let routes = [
        route(1, |r| r.paths = strs(&["~/v1/.*"])),
        route(2, |r| r.paths = strs(&["/v1/users"])),
    ];
    assert_eq!(winner(&routes, &req("/v1/users")), Some(1));
    assert_eq!(winner(&routes, &req("/v1")), None);
}

#[test]
fn compat_2_2_plain_host_beats_wildcard() {
    let routes = [
        route(1, |r| {
            r.hosts = strs(&["*.a.com"]);
            r.paths = strs(&["/"]);
        }),
        route(2, |r| {
            r.hosts = strs(&["x.a.com"]);
            r.paths = strs(&["/"]);
        }),
    ];
    assert_eq!(winner(&routes, &req("/").host("x.a.com")), Some(2));
    assert_eq!(winner(&routes, &req("/").host("y.a.com")), Some(1));
}

#[test]
fn more_header_names_win() {
    let routes = [
        route(1, |r| r.headers = hdrs(&[("x-a", &["1"])])),
        route(2, |r| r.headers = hdrs(&[("x-a", &["1"]), ("x-b", &["2"])])),
    ];
    let both = req("/").headers(&[("x-a", "1"), ("x-b", "2")]);
    assert_eq!(winner(&routes, &both), Some(2));
    assert_eq!(winner(&routes, &req("/").headers(&[("x-a", "1")])), Some(1));
}

#[test]
fn regex_priority_orders_regex_routes() {
    let routes = [
        route(1, |r| {
            r.paths = strs(&["~/a"]);
            r.regex_priority = 1;
        }),
        route(2, |r| r.paths = strs(&["~/a/b"])),
        // regex_priority is ignored for plain paths.
        route(3, |r| {
            r.paths = strs(&["/a/b/c"]);
            r.regex_priority = 100;
        }),
    ];
    assert_eq!(winner(&routes, &req("/a/b/c")), Some(1));
}

#[test]
fn equal_priority_breaks_ties_by_id() {
    let routes = [
        route(7, |r| r.paths = strs(&["/x"])),
        route(3, |r| r.paths = strs(&["/x"])),
        route(5, |r| r.paths = strs(&["/x"])),
    ];
    assert_eq!(winner(&routes, &req("/x")), Some(3));
}

#[test]
fn plain_paths_are_raw_prefixes() {
    let routes = [route(1, |r| r.paths = strs(&["/foo"]))];
    assert_eq!(winner(&routes, &req("/foo")), Some(1));
    assert_eq!(winner(&routes, &req("/foo/bar")), Some(1));
    assert_eq!(winner(&routes, &req("/foobar")), Some(1));
    assert_eq!(winner(&routes, &req("/fo")), None);
    assert_eq!(winner(&routes, &req("/Foo")), None);
}

#[test]
fn host_wildcards_and_case() {
    let routes = [
        route(1, |r| r.hosts = strs(&["*.a.com"])),
        route(2, |r| r.hosts = strs(&["api.*"])),
        route(3, |r| r.hosts = strs(&["Exact.COM"])),
    ];
    assert_eq!(winner(&routes, &req("/").host("x.a.com")), Some(1));
    assert_eq!(winner(&routes, &req("/").host("x.y.z.A.com")), Some(1));
    assert_eq!(winner(&routes, &req("/").host("a.com")), None);
    assert_eq!(winner(&routes, &req("/").host("xa.com")), None);
    assert_eq!(winner(&routes, &req("/").host("api.example.org")), Some(2));
    assert_eq!(winner(&routes, &req("/").host("API.x")), Some(2));
    assert_eq!(winner(&routes, &req("/").host("apix.org")), None);
    assert_eq!(winner(&routes, &req("/").host("exact.com")), Some(3));
    assert_eq!(winner(&routes, &req("/").host("EXACT.com:8000")), Some(3));
    assert_eq!(winner(&routes, &req("/").host("other.com")), None);
}

#[test]
fn long_uppercase_host_is_lowered() {
    let host = format!("{}.COM", "A".repeat(300));
    let routes = [route(1, |r| r.hosts = Some(vec![host.to_lowercase()]))];
    assert_eq!(winner(&routes, &req("/").host(&host)), Some(1));
}

#[test]
fn host_with_port_requires_destination_port() {
    let routes = [
        route(1, |r| r.hosts = strs(&["a.com:8080"])),
        route(2, |r| r.hosts = strs(&["*.b.com:9000", "b.*:9001"])),
    ];
    assert_eq!(winner(&routes, &req("/").host("a.com").port(8080)), Some(1));
    // The Host header's port is not compared, the local port is.
    assert_eq!(
        winner(&routes, &req("/").host("a.com:80").port(8080)),
        Some(1)
    );
    assert_eq!(winner(&routes, &req("/").host("a.com:8080").port(80)), None);
    assert_eq!(
        winner(&routes, &req("/").host("x.b.com").port(9000)),
        Some(2)
    );
    assert_eq!(winner(&routes, &req("/").host("x.b.com").port(9001)), None);
    assert_eq!(winner(&routes, &req("/").host("b.org").port(9001)), Some(2));
}

#[test]
fn methods_are_exact() {
    let routes = [
        route(1, |r| r.methods = strs(&["GET", "POST"])),
        route(2, |r| {
            r.methods = strs(&["POST"]);
            r.paths = strs(&["/p"]);
        }),
    ];
    assert_eq!(winner(&routes, &req("/p")), Some(1));
    assert_eq!(winner(&routes, &req("/p").method("POST")), Some(2));
    assert_eq!(winner(&routes, &req("/p").method("get")), None);
    assert_eq!(winner(&routes, &req("/p").method("PUT")), None);
}

#[test]
fn headers_exact_regex_and_repeated() {
    let routes = [route(1, |r| {
        r.headers = hdrs(&[
            ("X-Version", &["v1", "~*^beta-\\d+$"]),
            ("x-team", &["Core"]),
        ]);
    })];
    let ok = |h: &[(&str, &str)]| winner(&routes, &req("/").headers(h));
    assert_eq!(ok(&[("x-version", "V1"), ("X-Team", "core")]), Some(1));
    assert_eq!(ok(&[("x-version", "BETA-42"), ("x-team", "CORE")]), Some(1));
    assert_eq!(ok(&[("x-version", "beta-x"), ("x-team", "core")]), None);
    // Keys AND.
    assert_eq!(ok(&[("x-version", "v1")]), None);
    // A repeated header: any value may match.
    assert_eq!(
        ok(&[("x-version", "v9"), ("x-version", "v1"), ("x-team", "core")]),
        Some(1)
    );
}

#[test]
fn header_regex_is_unanchored() {
    let routes = [route(1, |r| r.headers = hdrs(&[("x-a", &["~*foo"])]))];
    assert_eq!(
        winner(&routes, &req("/").headers(&[("x-a", "aFOOb")])),
        Some(1)
    );
}

#[test]
fn multiple_paths_compete_with_their_own_length() {
    let routes = [
        route(1, |r| r.paths = strs(&["/a", "/b/long/path"])),
        route(2, |r| r.paths = strs(&["/b/long", "/a/x"])),
    ];
    assert_eq!(
        win(&Router::new(&routes).unwrap(), &req("/b/long/path/z")),
        Some((1, 12))
    );
    assert_eq!(
        win(&Router::new(&routes).unwrap(), &req("/b/long/other")),
        Some((2, 7))
    );
    assert_eq!(
        win(&Router::new(&routes).unwrap(), &req("/a/x/y")),
        Some((2, 4))
    );
    assert_eq!(
        win(&Router::new(&routes).unwrap(), &req("/a/y")),
        Some((1, 2))
    );
}

#[test]
fn pathless_route_matches_with_zero_length() {
    let routes = [route(1, |r| r.methods = strs(&["GET"]))];
    assert_eq!(
        win(&Router::new(&routes).unwrap(), &req("/any/thing")),
        Some((1, 0))
    );
}

#[test]
fn regex_captures_named_and_positional() {
    let routes = [route(1, |r| {
        r.paths = strs(&["~/users/(?<id>\\d+)(/(?<sub>[a-z]+))?", "~/plain/\\d+"]);
    })];
    let router = Router::new(&routes).unwrap();
    let rq = req("/users/42/orders/9");
    let m = router.find(&rq.info()).unwrap();
    assert_eq!(m.matched_len, "/users/42/orders".len());
    assert_eq!(
        m.captures.positional,
        vec![
            Some("/users/42/orders".to_owned()),
            Some("42".to_owned()),
            Some("/orders".to_owned()),
            Some("orders".to_owned()),
        ]
    );
    assert_eq!(
        m.captures.named,
        vec![
            ("id".to_owned(), "42".to_owned()),
            ("sub".to_owned(), "orders".to_owned())
        ]
    );
    let rq = req("/users/7");
    let m = router.find(&rq.info()).unwrap();
    assert_eq!(
        m.captures.positional,
        vec![Some("/users/7".into()), Some("7".into()), None, None]
    );
    assert_eq!(m.captures.named, vec![("id".to_owned(), "7".to_owned())]);
    // A regex without groups, and plain paths, report no captures.
    let rq = req("/plain/12/x");
    let m = router.find(&rq.info()).unwrap();
    assert_eq!(m.matched_len, "/plain/12".len());
    assert_eq!(m.captures, UriCaptures::default());
    // Anchored at the start only.
    assert!(router.find(&req("/x/users/1").info()).is_none());
}

#[test]
fn regex_alternation_and_flags_are_still_found() {
    let routes = [
        route(1, |r| r.paths = strs(&["~(?i)/CASE"])),
        route(2, |r| r.paths = strs(&["~/alt1|/alt2"])),
    ];
    assert_eq!(winner(&routes, &req("/case/x")), Some(1));
    assert_eq!(winner(&routes, &req("/alt1")), Some(2));
    assert_eq!(winner(&routes, &req("/alt2")), Some(2));
}

#[test]
fn invalid_regexes_are_errors() {
    let bad_path = [route(1, |r| r.paths = strs(&["~/(unclosed"]))];
    assert!(matches!(
        Router::new(&bad_path),
        Err(RouterError::InvalidRegex { .. })
    ));
    let bad_hdr = [route(1, |r| r.headers = hdrs(&[("x-a", &["~*(x"])]))];
    assert!(matches!(
        Router::new(&bad_hdr),
        Err(RouterError::InvalidHeaderRegex { .. })
    ));
    let bad_name = [route(1, |r| r.headers = hdrs(&[("bad name", &["x"])]))];
    assert!(matches!(
        Router::new(&bad_name),
        Err(RouterError::InvalidHeaderName { .. })
    ));
}

#[test]
fn snis_apply_only_to_tls() {
    let routes = [
        route(1, |r| {
            r.protocols = vec![Protocol::Https];
            r.snis = strs(&["secure.com"]);
            r.paths = strs(&["/"]);
        }),
        route(2, |r| r.paths = strs(&["/"])),
    ];
    let router = Router::new(&routes).unwrap();
    let rq = req("/x");
    let id = |m: Option<RouteMatch<'_>>| m.map(|m| m.route.id.as_u128());
    assert_eq!(id(router.find(&rq.info())), Some(1));
    assert_eq!(id(router.find_tls(&rq.info(), Some("secure.com"))), Some(1));
    assert_eq!(id(router.find_tls(&rq.info(), Some("other.com"))), Some(2));
    assert_eq!(id(router.find_tls(&rq.info(), None)), Some(2));
}

#[test]
fn router_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}

// ---------------------------------------------------------------------------------------------
// Property test: the indexed router agrees with a brute-force reference, whatever the order.

/// Brute-force reference: evaluate every route, keep the highest (priority, -id, -path index).
fn reference(routes: &[Arc<Route>], r: &RequestInfo<'_>) -> Option<(u128, usize)> {
    type Key = (
        u8,
        bool,
        u8,
        bool,
        i64,
        usize,
        std::cmp::Reverse<u128>,
        std::cmp::Reverse<usize>,
    );
    let mut best: Option<(Key, u128, usize)> = None;
    let (req_host, _) = split_host_port(r.host);
    for route in routes {
        let set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if let Some(m) = route.methods.as_ref().filter(|m| !m.is_empty())
            && !m.iter().any(|m| m == r.method)
        {
            continue;
        }
        if let Some(hosts) = route.hosts.as_ref().filter(|h| !h.is_empty()) {
            let ok = hosts.iter().any(|h| {
                let (name, port) = split_host_port(h);
                HostPattern::parse(name).matches(req_host) && port.is_none_or(|p| p == r.port)
            });
            if !ok {
                continue;
            }
        }
        let mut hdr_ok = true;
        for (name, values) in route.headers.iter().flatten() {
            let any = r.headers.get_all(name.as_str()).iter().any(|v| {
                let v = v.to_str().unwrap();
                values.iter().any(|want| match want.strip_prefix("~*") {
                    Some(p) => regex::RegexBuilder::new(p)
                        .case_insensitive(true)
                        .build()
                        .unwrap()
                        .is_match(v),
                    None => want.eq_ignore_ascii_case(v),
                })
            });
            hdr_ok &= any;
        }
        if !hdr_ok {
            continue;
        }
        let weight = [
            set(&route.methods),
            set(&route.hosts),
            route.headers.as_ref().is_some_and(|h| !h.is_empty()),
            set(&route.paths),
        ]
        .iter()
        .filter(|b| **b)
        .count() as u8;
        let plain = set(&route.hosts) && route.hosts.iter().flatten().all(|h| !h.contains('*'));
        let nh = route.headers.as_ref().map_or(0, |h| h.len()) as u8;
        let mut candidates: Vec<(bool, i64, usize, usize, usize)> = Vec::new();
        match route.paths.as_ref().filter(|p| !p.is_empty()) {
            None => candidates.push((false, 0, 0, 0, 0)),
            Some(paths) => {
                for (i, p) in paths.iter().enumerate() {
                    if let Some(pat) = p.strip_prefix('~') {
                        let re = regex::Regex::new(&regex_source(pat)).unwrap();
                        if let Some(m) = re.find(r.path) {
                            candidates.push((true, route.regex_priority, 0, i, m.end()));
                        }
                    } else if r.path.starts_with(p.as_str()) {
                        candidates.push((false, 0, p.len(), i, p.len()));
                    }
                }
            }
        }
        for (regex, rp, plen, idx, len) in candidates {
            let id = route.id.as_u128();
            let key = (
                weight,
                plain,
                nh,
                regex,
                rp,
                plen,
                std::cmp::Reverse(id),
                std::cmp::Reverse(idx),
            );
            if best.as_ref().is_none_or(|(b, _, _)| key > *b) {
                best = Some((key, id, len));
            }
        }
    }
    best.map(|(_, id, len)| (id, len))
}

const METHODS: &[&str] = &["GET", "POST", "PUT"];
const HOSTS: &[&str] = &["a.com", "*.a.com", "b.*", "a.com:8080", "x.a.com", "B.org"];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/ab",
    "/a/b",
    "~/a/\\d+",
    "~/a(?<x>b)?",
    "~/b|/c",
    "~/a/b",
];
const REQ_HOSTS: &[&str] = &[
    "a.com",
    "A.com:8080",
    "x.a.com",
    "y.x.a.com",
    "b.org",
    "c.com",
];
const REQ_PATHS: &[&str] = &["/", "/a", "/ab", "/a/b", "/a/12", "/abc", "/x/c", "/b"];

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::sample::subsequence(pool, 1..=2))
        .prop_map(|o| o.map(|v| v.into_iter().map(str::to_owned).collect()))
}

fn route_strategy() -> impl Strategy<Value = Route> {
    (
        subset(&METHODS[..2]),
        subset(HOSTS),
        subset(PATHS),
        proptest::option::of(proptest::sample::subsequence(&["1", "~*^v"][..], 1..=2)),
        proptest::bool::ANY,
        -1i64..=2,
        any::<u16>(),
    )
        .prop_map(
            |(methods, hosts, paths, hv, two_headers, regex_priority, id)| {
                let headers = hv.map(|vals| {
                    let vals: Vec<String> = vals.into_iter().map(str::to_owned).collect();
                    let mut m = BTreeMap::new();
                    m.insert("x-h".to_owned(), vals);
                    if two_headers {
                        m.insert("x-k".to_owned(), vec!["k".to_owned()]);
                    }
                    m
                });
                let mut r = (*route(u128::from(id), |_| {})).clone();
                r.methods = methods;
                r.hosts = hosts;
                r.paths = paths;
                r.headers = headers;
                r.regex_priority = regex_priority;
                r
            },
        )
}

fn request_strategy() -> impl Strategy<Value = (usize, usize, u16, usize, Vec<(String, String)>)> {
    (
        0..METHODS.len(),
        0..REQ_HOSTS.len(),
        prop_oneof![Just(80u16), Just(8080u16)],
        0..REQ_PATHS.len(),
        proptest::sample::subsequence(
            vec![
                ("x-h".to_owned(), "1".to_owned()),
                ("x-h".to_owned(), "V2".to_owned()),
                ("x-k".to_owned(), "K".to_owned()),
            ],
            0..=3,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn shuffling_never_changes_the_winner(
        (routes, shuffled) in proptest::collection::vec(route_strategy(), 1..25)
            .prop_map(|rs| {
                // Make ids unique while keeping them unordered relative to the input order.
                rs.into_iter()
                    .enumerate()
                    .map(|(i, mut r)| {
                        r.id = Uuid::from_u128((r.id.as_u128() << 16) | i as u128);
                        Arc::new(r)
                    })
                    .collect::<Vec<_>>()
            })
            .prop_flat_map(|rs| (Just(rs.clone()), Just(rs).prop_shuffle())),
        requests in proptest::collection::vec(request_strategy(), 1..20),
    ) {
        let a = Router::new(&routes).unwrap();
        let b = Router::new(&shuffled).unwrap();
        for (mi, hi, port, pi, hs) in requests {
            let mut headers = HeaderMap::new();
            for (k, v) in &hs {
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            let info = RequestInfo {
                method: METHODS[mi],
                host: REQ_HOSTS[hi],
                port,
                path: REQ_PATHS[pi],
                headers: &headers,
            };
            let got_a = a.find(&info).map(|m| (m.route.id.as_u128(), m.matched_len, m.captures));
            let got_b = b.find(&info).map(|m| (m.route.id.as_u128(), m.matched_len, m.captures));
            prop_assert_eq!(&got_a, &got_b);
            let want = reference(&routes, &info);
            prop_assert_eq!(got_a.map(|(id, len, _)| (id, len)), want);
        }
    }
}
