//! Tests for the balancer: algorithms (with proptest), health state machine, active HTTP/TCP
//! checks against real listeners, passive checks, threshold, overrides, reconcile and DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tokio::net::TcpListener;
use uuid::Uuid;

use super::*;
use crate::model::{
    ActiveHealthcheck, ActiveHealthy, ActiveUnhealthy, Healthchecks, PassiveHealthcheck,
    PassiveHealthy, PassiveUnhealthy,
};

fn healthchecks() -> Healthchecks {
    Healthchecks {
        threshold: 0.0,
        active: ActiveHealthcheck {
            kind: "http".into(),
            timeout: 1.0,
            concurrency: 10,
            http_path: "/".into(),
            https_sni: None,
            https_verify_certificate: true,
            headers: None,
            healthy: ActiveHealthy {
                interval: 0.0,
                http_statuses: vec![200, 302],
                successes: 0,
            },
            unhealthy: ActiveUnhealthy {
                interval: 0.0,
                http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
                tcp_failures: 0,
                timeouts: 0,
                http_failures: 0,
            },
        },
        passive: PassiveHealthcheck {
            kind: "http".into(),
            healthy: PassiveHealthy {
                http_statuses: vec![
                    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                    306, 307, 308,
                ],
                successes: 0,
            },
            unhealthy: PassiveUnhealthy {
                http_statuses: vec![429, 500, 503],
                tcp_failures: 0,
                timeouts: 0,
                http_failures: 0,
            },
        },
    }
}

fn upstream(name: &str, algorithm: Algorithm) -> Upstream {
    Upstream {
        id: Uuid::new_v4(),
        name: name.into(),
        algorithm,
        hash_on: HashOn::None,
        hash_fallback: HashOn::None,
        hash_on_header: None,
        hash_fallback_header: None,
        hash_on_cookie: None,
        hash_on_cookie_path: "/".into(),
        hash_on_query_arg: None,
        hash_fallback_query_arg: None,
        hash_on_uri_capture: None,
        hash_fallback_uri_capture: None,
        slots: 10000,
        healthchecks: healthchecks(),
        host_header: None,
        client_certificate: None,
        use_srv_name: false,
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn target(up: &Upstream, t: &str, weight: u32) -> Target {
    Target {
        id: Uuid::new_v4(),
        upstream: up.id.into(),
        target: t.into(),
        weight,
        tags: None,
        created_at: 0.0,
        updated_at: 0.0,
    }
}

/// Targets 127.0.0.1:(10001..) with the given weights (nothing listens; fine for picking).
fn fake_targets(up: &Upstream, weights: &[u32]) -> Vec<Target> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| target(up, &format!("127.0.0.1:{}", 10001 + i), *w))
        .collect()
}

async fn balancer(up: &Upstream, targets: &[Target]) -> (Arc<BalancerRegistry>, Arc<Balancer>) {
    let reg = BalancerRegistry::new();
    let map = reg.reconcile(std::slice::from_ref(up), targets).await;
    let b = map.get(&up.name).cloned().unwrap();
    (reg, b)
}

fn port_of(p: &Pick) -> u16 {
    p.peer.addr.port()
}

fn target_health(b: &Balancer, t: &str) -> Option<HealthState> {
    b.health()
        .targets
        .into_iter()
        .find(|x| x.target == t)
        .map(|x| x.health)
}

/// Poll `f` every 20 ms until it holds or `secs` elapse.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

struct KeySource(String);

impl HashSource for KeySource {
    fn value(&self, on: HashOn, _name: Option<&str>) -> Option<Cow<'_, str>> {
        (on == HashOn::Header).then_some(Cow::Borrowed(self.0.as_str()))
    }
}

// ---------------------------------------------------------------- round-robin

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn wrr_proportions_match_weights_over_a_cycle(weights in prop::collection::vec(0u32..12, 1..7)) {
        let rt = rt();
        let up = upstream("wrr", Algorithm::RoundRobin);
        let ts = fake_targets(&up, &weights);
        let (reg, b) = rt.block_on(balancer(&up, &ts));
        let total: u32 = weights.iter().sum();
        let mut counts: HashMap<u16, u32> = HashMap::new();
        for _ in 0..total * 2 {
            let p = b.pick(&(), &[]).unwrap();
            *counts.entry(port_of(&p)).or_default() += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let port = 10001 + i as u16;
            prop_assert_eq!(counts.get(&port).copied().unwrap_or(0), w * 2, "port {}", port);
        }
        if total == 0 {
            prop_assert!(b.pick(&(), &[]).is_none());
        }
        reg.shutdown();
    }
}

#[tokio::test]
async fn wrr_is_smooth_and_skips_unhealthy() {
    let up = upstream("smooth", Algorithm::RoundRobin);
    let ts = fake_targets(&up, &[5, 1, 1]);
    let (_reg, b) = balancer(&up, &ts).await;
    let seq: Vec<u16> = (0..7)
        .map(|_| port_of(&b.pick(&(), &[]).unwrap()))
        .collect();
    // nginx smooth WRR for 5,1,1: a a b a c a a
    assert_eq!(seq, vec![10001, 10001, 10002, 10001, 10003, 10001, 10001]);
    assert!(b.set_target_health("127.0.0.1:10001", false));
    for _ in 0..10 {
        assert_ne!(port_of(&b.pick(&(), &[]).unwrap()), 10001);
    }
}

#[tokio::test]
async fn exclude_prefers_other_peers_then_cycles_back() {
    let up = upstream("retry", Algorithm::RoundRobin);
    let ts = fake_targets(&up, &[100, 100]);
    let (_reg, b) = balancer(&up, &ts).await;
    let first = b.pick(&(), &[]).unwrap().peer.addr;
    for _ in 0..5 {
        assert_ne!(b.pick(&(), &[first]).unwrap().peer.addr, first);
    }
    let second = b.pick(&(), &[first]).unwrap().peer.addr;
    assert!(b.pick(&(), &[first, second]).is_some());
}

// ---------------------------------------------------------------- consistent hashing

fn ch_upstream(name: &str) -> Upstream {
    let mut up = upstream(name, Algorithm::ConsistentHashing);
    up.hash_on = HashOn::Header;
    up.hash_on_header = Some("x-user".into());
    up
}

fn assignments(b: &Balancer, keys: usize) -> Vec<u16> {
    (0..keys)
        .map(|k| port_of(&b.pick(&KeySource(format!("user-{k}")), &[]).unwrap()))
        .collect()
}

#[tokio::test]
async fn consistent_hashing_is_stable_and_minimally_disruptive() {
    let up = ch_upstream("ch");
    let four = fake_targets(&up, &[100, 100, 100, 100]);
    let reg = BalancerRegistry::new();
    let b = reg
        .reconcile(std::slice::from_ref(&up), &four)
        .await
        .remove("ch")
        .unwrap();
    let before = assignments(&b, 4000);
    // same key, same peer
    assert_eq!(before, assignments(&b, 4000));
    // spread over all four
    for port in 10001..=10004 {
        let share = before.iter().filter(|p| **p == port).count();
        assert!((600..1400).contains(&share), "port {port} got {share}");
    }
    // add a fifth target: about 1/5 of the keys move, all of them to the new one
    let five = fake_targets(&up, &[100, 100, 100, 100, 100]);
    let b = reg
        .reconcile(std::slice::from_ref(&up), &five)
        .await
        .remove("ch")
        .unwrap();
    let after = assignments(&b, 4000);
    let moved: Vec<usize> = (0..4000).filter(|i| before[*i] != after[*i]).collect();
    assert!(
        (500..1100).contains(&moved.len()),
        "moved {} of 4000",
        moved.len()
    );
    assert!(moved.iter().all(|i| after[*i] == 10005));

    // an unhealthy target's keys move elsewhere; others stay
    assert!(b.set_target_health("127.0.0.1:10002", false));
    let ejected = assignments(&b, 4000);
    for i in 0..4000 {
        if after[i] == 10002 {
            assert_ne!(ejected[i], 10002);
        } else {
            assert_eq!(ejected[i], after[i]);
        }
    }
    // and they come back when it recovers
    assert!(b.set_target_health("127.0.0.1:10002", true));
    assert_eq!(assignments(&b, 4000), after);
}

#[tokio::test]
async fn consistent_hashing_without_key_round_robins_and_cookie_is_generated() {
    let up = ch_upstream("ch-nokey");
    let ts = fake_targets(&up, &[1, 1]);
    let (_reg, b) = balancer(&up, &ts).await;
    let a = port_of(&b.pick(&(), &[]).unwrap());
    let c = port_of(&b.pick(&(), &[]).unwrap());
    assert_ne!(a, c);

    let mut up = upstream("ch-cookie", Algorithm::ConsistentHashing);
    up.hash_on = HashOn::Cookie;
    up.hash_on_cookie = Some("affinity".into());
    up.hash_on_cookie_path = "/app".into();
    let ts = fake_targets(&up, &[1, 1, 1]);
    let (_reg, b) = balancer(&up, &ts).await;
    let pick = b.pick(&(), &[]).unwrap();
    let (name, value, path) = pick.set_cookie.clone().unwrap();
    assert_eq!((name.as_str(), path.as_str()), ("affinity", "/app"));
    struct Cookie(String);
    impl HashSource for Cookie {
        fn value(&self, on: HashOn, name: Option<&str>) -> Option<Cow<'_, str>> {
            (on == HashOn::Cookie && name == Some("affinity"))
                .then_some(Cow::Borrowed(self.0.as_str()))
        }
    }
    for _ in 0..5 {
        let again = b.pick(&Cookie(value.clone()), &[]).unwrap();
        assert!(again.set_cookie.is_none());
        assert_eq!(again.peer.addr, pick.peer.addr);
    }
}

// ---------------------------------------------------------------- least-connections

#[tokio::test]
async fn least_connections_prefers_the_idle_peer() {
    let up = upstream("lc", Algorithm::LeastConnections);
    let ts = fake_targets(&up, &[100, 100]);
    let (_reg, b) = balancer(&up, &ts).await;
    let busy = b.pick(&(), &[]).unwrap();
    let busy2 = busy.peer.clone();
    drop(busy);
    // busy2 still holds the in-flight slot
    for _ in 0..5 {
        let p = b.pick(&(), &[]).unwrap();
        assert_ne!(p.peer.addr, busy2.addr);
    }
    let other = b.pick(&(), &[]).unwrap();
    drop(busy2);
    // now the first one is idle and the other busy
    for _ in 0..5 {
        assert_ne!(b.pick(&(), &[]).unwrap().peer.addr, other.peer.addr);
    }
}

#[tokio::test]
async fn latency_prefers_the_fast_peer() {
    let up = upstream("lat", Algorithm::Latency);
    let ts = fake_targets(&up, &[100, 100]);
    let (_reg, b) = balancer(&up, &ts).await;
    // teach it: 10001 is slow
    let mut slow = None;
    for _ in 0..4 {
        let p = b.pick(&(), &[]).unwrap();
        if p.peer.addr.port() == 10001 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            slow = Some(p.peer.addr);
        }
        b.report(&p.peer, Outcome::Status(200));
    }
    assert!(slow.is_some());
    for _ in 0..5 {
        assert_eq!(port_of(&b.pick(&(), &[]).unwrap()), 10002);
    }
}

// ---------------------------------------------------------------- health checks

/// A tiny HTTP server answering every request with the status in `status`.
async fn http_server(status: Arc<AtomicU16>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || {
        let status = status.clone();
        async move { http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap() }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test]
async fn active_http_check_ejects_and_recovers() {
    let status = Arc::new(AtomicU16::new(200));
    let (addr, _server) = http_server(status.clone()).await;
    let mut up = upstream("active-http", Algorithm::RoundRobin);
    let a = &mut up.healthchecks.active;
    a.http_path = "/status".into();
    a.healthy.interval = 0.05;
    a.healthy.successes = 2;
    a.unhealthy.interval = 0.05;
    a.unhealthy.http_failures = 3;
    let t = addr.to_string();
    let ts = vec![target(&up, &t, 100)];
    let (reg, b) = balancer(&up, &ts).await;
    assert_eq!(target_health(&b, &t), Some(HealthState::Healthy));

    status.store(500, Ordering::SeqCst);
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Unhealthy)).await);
    assert!(b.pick(&(), &[]).is_none());
    assert!(!b.health().balancer_healthy);

    status.store(200, Ordering::SeqCst);
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Healthy)).await);
    assert_eq!(b.pick(&(), &[]).unwrap().peer.addr, addr);
    reg.shutdown();
}

#[tokio::test]
async fn active_tcp_check_ejects_and_recovers_on_rebind() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = |l: TcpListener| {
        tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            }
        })
    };
    let server = accept(listener);
    let mut up = upstream("active-tcp", Algorithm::RoundRobin);
    let a = &mut up.healthchecks.active;
    a.kind = "tcp".into();
    a.healthy.interval = 0.05;
    a.healthy.successes = 1;
    a.unhealthy.interval = 0.05;
    a.unhealthy.tcp_failures = 2;
    let t = addr.to_string();
    let ts = vec![target(&up, &t, 100)];
    let (reg, b) = balancer(&up, &ts).await;

    server.abort();
    let _ = server.await;
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Unhealthy)).await);

    let listener = TcpListener::bind(addr).await.unwrap();
    let server = accept(listener);
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Healthy)).await);
    server.abort();
    reg.shutdown();
}

#[tokio::test]
async fn passive_failures_eject_and_active_probing_brings_back() {
    let status = Arc::new(AtomicU16::new(200));
    let (addr, _server) = http_server(status.clone()).await;
    let mut up = upstream("passive", Algorithm::RoundRobin);
    up.healthchecks.passive.unhealthy.http_failures = 3;
    let t = addr.to_string();
    let ts = vec![target(&up, &t, 100), target(&up, "127.0.0.1:10001", 100)];
    let (reg, b) = balancer(&up, &ts).await;
    let p = loop {
        let p = b.pick(&(), &[]).unwrap();
        if p.peer.addr == addr {
            break p;
        }
    };
    b.report(&p.peer, Outcome::Status(500));
    b.report(&p.peer, Outcome::Status(500));
    assert_eq!(target_health(&b, &t), Some(HealthState::Healthy));
    b.report(&p.peer, Outcome::Status(404)); // in neither list: ignored
    b.report(&p.peer, Outcome::Status(500));
    assert_eq!(target_health(&b, &t), Some(HealthState::Unhealthy));
    for _ in 0..5 {
        assert_ne!(b.pick(&(), &[]).unwrap().peer.addr, addr);
    }
    // passive only, successes 0: stays ejected (Kong semantics); a success report does nothing
    b.report(&p.peer, Outcome::Status(200));
    assert_eq!(target_health(&b, &t), Some(HealthState::Unhealthy));

    // enable active probing of unhealthy targets: it comes back (successes 0 still recovers)
    up.healthchecks.active.unhealthy.interval = 0.05;
    let b = reg
        .reconcile(std::slice::from_ref(&up), &ts)
        .await
        .remove("passive")
        .unwrap();
    assert_eq!(target_health(&b, &t), Some(HealthState::Unhealthy));
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Healthy)).await);
    reg.shutdown();
}

#[tokio::test]
async fn passive_tcp_failures_and_timeouts_count_separately() {
    let mut up = upstream("passive-kinds", Algorithm::RoundRobin);
    up.healthchecks.passive.unhealthy.tcp_failures = 2;
    up.healthchecks.passive.unhealthy.timeouts = 2;
    up.healthchecks.passive.healthy.successes = 2;
    let ts = fake_targets(&up, &[100]);
    let t = "127.0.0.1:10001";
    let (_reg, b) = balancer(&up, &ts).await;
    let p = b.pick(&(), &[]).unwrap().peer;
    b.report(&p, Outcome::TcpFailure);
    b.report(&p, Outcome::Timeout);
    b.report(&p, Outcome::Status(200)); // resets failure counters
    b.report(&p, Outcome::TcpFailure);
    b.report(&p, Outcome::Timeout);
    assert_eq!(target_health(&b, t), Some(HealthState::Healthy));
    b.report(&p, Outcome::Timeout);
    assert_eq!(target_health(&b, t), Some(HealthState::Unhealthy));
    b.report(&p, Outcome::Status(200));
    assert_eq!(target_health(&b, t), Some(HealthState::Unhealthy));
    b.report(&p, Outcome::Status(200));
    assert_eq!(target_health(&b, t), Some(HealthState::Healthy));
}

#[tokio::test]
async fn healthchecks_off_reports_off_and_ignores_reports() {
    let up = upstream("off", Algorithm::RoundRobin);
    let ts = fake_targets(&up, &[100]);
    let (_reg, b) = balancer(&up, &ts).await;
    let p = b.pick(&(), &[]).unwrap().peer;
    for _ in 0..20 {
        b.report(&p, Outcome::Status(500));
        b.report(&p, Outcome::TcpFailure);
    }
    let h = b.health();
    assert!(h.balancer_healthy);
    assert_eq!(h.targets[0].health, HealthState::HealthchecksOff);
    assert_eq!(
        h.targets[0].addresses[0].health.as_kong_str(),
        "HEALTHCHECKS_OFF"
    );
    assert!(b.pick(&(), &[]).is_some());
}

#[tokio::test]
async fn threshold_gates_the_balancer() {
    let mut up = upstream("threshold", Algorithm::RoundRobin);
    up.healthchecks.threshold = 50.0;
    up.healthchecks.passive.unhealthy.http_failures = 1;
    let ts = fake_targets(&up, &[100, 100, 100, 100]);
    let (_reg, b) = balancer(&up, &ts).await;
    assert!(b.pick(&(), &[]).is_some());
    assert!(b.set_target_health("127.0.0.1:10001", false));
    assert!(b.pick(&(), &[]).is_some()); // 75% > 50
    assert!(b.set_target_health("127.0.0.1:10002", false));
    assert!(b.pick(&(), &[]).is_none()); // 50% is not > 50
    assert!(!b.health().balancer_healthy);
    assert!(b.set_target_health("127.0.0.1:10002", true));
    assert!(b.pick(&(), &[]).is_some());
    assert!(b.health().balancer_healthy);
}

#[tokio::test]
async fn nothing_available_yields_none() {
    let up = upstream("empty", Algorithm::RoundRobin);
    let (_reg, b) = balancer(&up, &[]).await;
    assert!(b.pick(&(), &[]).is_none());
    let ts = fake_targets(&up, &[0, 0]);
    let (_reg, b) = balancer(&up, &ts).await;
    assert!(b.pick(&(), &[]).is_none());
    for algo in [Algorithm::LeastConnections, Algorithm::Latency] {
        let mut up = up.clone();
        up.algorithm = algo;
        let (_reg, b) = balancer(&up, &ts).await;
        assert!(b.pick(&(), &[]).is_none());
    }
}

#[tokio::test]
async fn manual_override_works_both_ways_even_with_checks_off() {
    let up = upstream("manual", Algorithm::RoundRobin);
    let ts = fake_targets(&up, &[100, 100]);
    let (_reg, b) = balancer(&up, &ts).await;
    assert!(!b.set_target_health("nope:1", false));
    assert!(b.set_target_health("127.0.0.1:10001", false));
    assert_eq!(
        target_health(&b, "127.0.0.1:10001"),
        Some(HealthState::Unhealthy)
    );
    for _ in 0..4 {
        assert_eq!(port_of(&b.pick(&(), &[]).unwrap()), 10002);
    }
    assert!(b.set_target_health("127.0.0.1:10002", false));
    assert!(b.pick(&(), &[]).is_none());
    assert!(b.set_target_health("127.0.0.1:10001", true));
    assert_eq!(port_of(&b.pick(&(), &[]).unwrap()), 10001);
    assert_eq!(
        target_health(&b, "127.0.0.1:10001"),
        Some(HealthState::HealthchecksOff)
    );
}

#[tokio::test]
async fn reconcile_keeps_state_for_unchanged_targets_and_drops_removed() {
    let mut up = upstream("reload", Algorithm::RoundRobin);
    up.healthchecks.passive.unhealthy.http_failures = 1;
    let ts = fake_targets(&up, &[100, 100, 100]);
    let reg = BalancerRegistry::new();
    let b = reg
        .reconcile(std::slice::from_ref(&up), &ts)
        .await
        .remove("reload")
        .unwrap();
    assert!(b.set_target_health("127.0.0.1:10001", false));
    let held = b.pick(&(), &[]).unwrap();

    // reload: drop 10003, add 10004, change a weight, rename nothing
    let mut ts2 = vec![
        ts[0].clone(),
        ts[1].clone(),
        target(&up, "127.0.0.1:10004", 50),
    ];
    ts2[1].weight = 10;
    let b2 = reg
        .reconcile(std::slice::from_ref(&up), &ts2)
        .await
        .remove("reload")
        .unwrap();
    let h = b2.health();
    let names: Vec<&str> = h.targets.iter().map(|t| t.target.as_str()).collect();
    assert_eq!(
        names,
        vec!["127.0.0.1:10001", "127.0.0.1:10002", "127.0.0.1:10004"]
    );
    assert_eq!(h.targets[0].health, HealthState::Unhealthy);
    assert_eq!(h.targets[1].weight, 10);
    assert_eq!(h.targets[2].health, HealthState::Healthy);
    // the old handle sees the same state
    assert_eq!(b.health(), h);
    // the in-flight count survived the reload (least-connections state)
    let state = b2
        .core
        .set
        .load()
        .entries
        .iter()
        .find(|e| e.state.addr == held.peer.addr)
        .map(|e| e.state.inflight.load(Ordering::Relaxed));
    if held.peer.addr.port() != 10003 {
        assert_eq!(state, Some(1));
    }
    assert!(!b2.set_target_health("127.0.0.1:10003", true));

    // removing the upstream drops it
    let map = reg.reconcile(&[], &[]).await;
    assert!(map.is_empty());
    assert!(lock(&reg.state).ups.is_empty());
}

#[tokio::test]
async fn checker_is_restarted_only_when_its_settings_change() {
    let mut up = upstream("checker", Algorithm::RoundRobin);
    up.healthchecks.active.kind = "tcp".into();
    up.healthchecks.active.healthy.interval = 30.0;
    let ts = fake_targets(&up, &[100]);
    let reg = BalancerRegistry::new();
    let task_id = |reg: &BalancerRegistry| {
        lock(&reg.state)
            .ups
            .values()
            .next()
            .and_then(|e| e.checker.as_ref().map(|(_, h)| h.id()))
    };
    reg.reconcile(std::slice::from_ref(&up), &ts).await;
    let first = task_id(&reg);
    assert!(first.is_some());
    up.healthchecks.threshold = 10.0; // not an active setting
    reg.reconcile(std::slice::from_ref(&up), &ts).await;
    assert_eq!(task_id(&reg), first);
    up.healthchecks.active.timeout = 2.0;
    reg.reconcile(std::slice::from_ref(&up), &ts).await;
    let second = task_id(&reg);
    assert!(second.is_some() && second != first);
    up.healthchecks.active.healthy.interval = 0.0;
    reg.reconcile(std::slice::from_ref(&up), &ts).await;
    assert_eq!(task_id(&reg), None);
    reg.shutdown();
}

#[tokio::test]
async fn hostname_targets_resolve_and_bad_names_report_dns_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = upstream("dns", Algorithm::RoundRobin);
    let t = format!("localhost:{port}");
    let bad = "does-not-exist.invalid:80";
    let ts = vec![target(&up, &t, 100), target(&up, bad, 100)];
    let (reg, b) = balancer(&up, &ts).await;
    let h = b.health();
    let good = h.targets.iter().find(|x| x.target == t).unwrap();
    assert!(!good.addresses.is_empty());
    assert!(good.addresses.iter().all(|a| a.port == port));
    assert_eq!(good.health, HealthState::HealthchecksOff);
    assert_eq!(target_health(&b, bad), Some(HealthState::DnsError));
    for _ in 0..4 {
        let p = b.pick(&(), &[]).unwrap();
        assert_eq!(&*p.peer.host, "localhost");
        assert_eq!(p.peer.port, port);
        assert_eq!(&*p.peer.target, t.as_str());
        assert!(p.peer.addr.ip().is_loopback());
    }
    // a refresh keeps the resolved addresses
    reg.refresh_dns().await;
    assert_eq!(b.health(), h);
    reg.shutdown();
}

/// A TLS server (self-signed for `localhost`) answering every request with `status`.
async fn https_server(status: Arc<AtomicU16>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let status = status.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let s = status.load(Ordering::SeqCst);
                let resp =
                    format!("HTTP/1.1 {s} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn active_https_check_honours_verify_setting() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = https_server(status.clone()).await;
    let mut up = upstream("active-https", Algorithm::RoundRobin);
    let a = &mut up.healthchecks.active;
    a.kind = "https".into();
    a.https_sni = Some("localhost".into());
    a.https_verify_certificate = false;
    a.healthy.interval = 0.05;
    a.healthy.successes = 1;
    a.unhealthy.interval = 0.05;
    a.unhealthy.http_failures = 2;
    a.unhealthy.tcp_failures = 2;
    let t = addr.to_string();
    let ts = vec![target(&up, &t, 100)];
    let (reg, b) = balancer(&up, &ts).await;

    status.store(503, Ordering::SeqCst);
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Unhealthy)).await);
    status.store(200, Ordering::SeqCst);
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Healthy)).await);

    // with verification on, the self-signed certificate is a (tcp) failure
    up.healthchecks.active.https_verify_certificate = true;
    let b = reg
        .reconcile(std::slice::from_ref(&up), &ts)
        .await
        .remove("active-https")
        .unwrap();
    assert!(eventually(5, || target_health(&b, &t) == Some(HealthState::Unhealthy)).await);
    reg.shutdown();
}

#[tokio::test]
async fn consistent_hashing_respects_weights() {
    let up = ch_upstream("ch-weighted");
    let ts = fake_targets(&up, &[100, 300]);
    let (_reg, b) = balancer(&up, &ts).await;
    let got = assignments(&b, 4000);
    let heavy = got.iter().filter(|p| **p == 10002).count();
    assert!((2700..3300).contains(&heavy), "heavy got {heavy} of 4000");
    // weight 0 owns nothing
    let ts = fake_targets(&up, &[100, 0]);
    let (_reg, b) = balancer(&up, &ts).await;
    assert!(assignments(&b, 500).iter().all(|p| *p == 10001));
}
