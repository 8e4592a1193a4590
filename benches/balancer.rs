//! Hot-path cost of `Balancer::pick` per algorithm (10 targets).

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gwctl::balancer::{BalancerRegistry, HashSource};
use gwctl::model::{HashOn, Target, Upstream};

fn upstream(algorithm: &str, hash_on: &str) -> Upstream {
    let v = serde_json::json!({
        "id": uuid::Uuid::new_v4(), "name": format!("bench-{algorithm}"), "algorithm": algorithm,
        "hash_on": hash_on, "hash_fallback": "none", "hash_on_header": "x-user",
        "hash_fallback_header": null, "hash_on_cookie": null, "hash_on_cookie_path": "/",
        "hash_on_query_arg": null, "hash_fallback_query_arg": null, "hash_on_uri_capture": null,
        "hash_fallback_uri_capture": null, "slots": 10000, "host_header": null,
        "client_certificate": null, "use_srv_name": false, "tags": null, "created_at": 0, "updated_at": 0,
        "healthchecks": {
            "threshold": 0.0,
            "active": {"type": "http", "timeout": 1.0, "concurrency": 10, "http_path": "/",
                "https_sni": null, "https_verify_certificate": true, "headers": null,
                "healthy": {"interval": 0.0, "http_statuses": [200], "successes": 0},
                "unhealthy": {"interval": 0.0, "http_statuses": [500], "tcp_failures": 0, "timeouts": 0, "http_failures": 0}},
            "passive": {"type": "http",
                "healthy": {"http_statuses": [200], "successes": 0},
                "unhealthy": {"http_statuses": [500], "tcp_failures": 0, "timeouts": 0, "http_failures": 5}}
        }
    });
    serde_json::from_value(v).unwrap_or_else(|e| unreachable!("bench upstream: {e}"))
}

fn targets(up: &Upstream) -> Vec<Target> {
    (0..10u16)
        .map(|i| Target {
            id: uuid::Uuid::new_v4(),
            upstream: up.id.into(),
            target: format!("10.0.0.{i}:80"),
            weight: 100 + u32::from(i),
            tags: None,
            created_at: 0.0,
            updated_at: 0.0,
        })
        .collect()
}

struct Key(&'static str);

impl HashSource for Key {
    fn value(&self, _on: HashOn, _name: Option<&str>) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.0))
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| unreachable!("runtime: {e}"));
    let reg = BalancerRegistry::new();
    for (algo, hash_on) in [
        ("round-robin", "none"),
        ("least-connections", "none"),
        ("consistent-hashing", "header"),
    ] {
        let up = upstream(algo, hash_on);
        let ts = targets(&up);
        let map = rt.block_on(reg.reconcile(std::slice::from_ref(&up), &ts));
        let Some(b) = map.get(&up.name).cloned() else {
            continue;
        };
        c.bench_function(&format!("pick/{algo}"), |bench| {
            bench.iter(|| black_box(b.pick(&Key("user-42"), &[])))
        });
    }
    reg.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
