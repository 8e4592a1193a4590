//! Router lookup benchmark: 10,000 routes of a realistic mix (plain prefixes, exact and wildcard
//! hosts, regex paths with captures, methods, headers), measuring `Router::find` for hits and
//! misses.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gwctl::model::{Protocol, Route};
use gwctl::router::{RequestInfo, Router};
use http::HeaderMap;
use uuid::Uuid;

const ROUTES: usize = 10_000;

fn make_route(i: usize) -> Route {
    let mut r = Route {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("route-{i}").as_bytes()),
        name: Some(format!("route-{i}")),
        protocols: vec![Protocol::Http, Protocol::Https],
        methods: None,
        hosts: None,
        paths: Some(vec![format!("/svc{i}/v1")]),
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
    match i % 10 {
        0 => {
            r.paths = Some(vec![format!("~/svc{i}/items/(?<id>\\d+)$")]);
            r.regex_priority = i64::try_from(i % 3).unwrap_or(0);
        }
        1..=3 => r.hosts = Some(vec![format!("svc{i}.example.com")]),
        4 => r.methods = Some(vec!["GET".into(), "POST".into()]),
        5 => r.hosts = Some(vec![format!("*.tenant{i}.io")]),
        6 => {
            let mut h = BTreeMap::new();
            h.insert(
                "x-version".to_owned(),
                vec!["v1".to_owned(), "~*^beta".to_owned()],
            );
            r.headers = Some(h);
        }
        7 => r.paths = Some(vec![format!("/svc{i}/v1"), format!("/svc{i}/v2")]),
        _ => {}
    }
    r
}

fn bench_find(c: &mut Criterion) {
    let routes: Vec<Arc<Route>> = (0..ROUTES).map(|i| Arc::new(make_route(i))).collect();
    let router = match Router::new(&routes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("router build failed: {e}");
            return;
        }
    };
    let empty = HeaderMap::new();
    let mut versioned = HeaderMap::new();
    versioned.insert("x-version", http::HeaderValue::from_static("Beta-2"));

    let cases: [(&str, RequestInfo<'_>); 6] = [
        (
            "hit_plain",
            RequestInfo {
                method: "GET",
                host: "gateway.local",
                port: 8000,
                path: "/svc5008/v1/users/42",
                headers: &empty,
            },
        ),
        (
            "hit_exact_host",
            RequestInfo {
                method: "GET",
                host: "svc5002.example.com",
                port: 8000,
                path: "/svc5002/v1/orders",
                headers: &empty,
            },
        ),
        (
            "hit_wildcard_host",
            RequestInfo {
                method: "GET",
                host: "acme.tenant5005.io:8000",
                port: 8000,
                path: "/svc5005/v1",
                headers: &empty,
            },
        ),
        (
            "hit_header_regex",
            RequestInfo {
                method: "GET",
                host: "gateway.local",
                port: 8000,
                path: "/svc5006/v1/x",
                headers: &versioned,
            },
        ),
        (
            "hit_regex_captures",
            RequestInfo {
                method: "GET",
                host: "gateway.local",
                port: 8000,
                path: "/svc5000/items/12345",
                headers: &empty,
            },
        ),
        (
            "miss",
            RequestInfo {
                method: "GET",
                host: "unknown.example.net",
                port: 8000,
                path: "/nothing/here/at/all",
                headers: &empty,
            },
        ),
    ];
    for (name, info) in &cases {
        if router.find(info).is_none() != (*name == "miss") {
            eprintln!("unexpected result for {name}");
            return;
        }
    }

    let mut group = c.benchmark_group("router_10k");
    for (name, info) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(router.find(black_box(info)).map(|m| m.matched_len)))
        });
    }
    group.finish();

    c.bench_function("router_build_10k", |b| {
        b.iter(|| black_box(Router::new(&routes).map(|r| r.len()).unwrap_or(0)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_find
}
criterion_main!(benches);
