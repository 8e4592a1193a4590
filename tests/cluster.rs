//! Postgres mode: several `gwctl serve` nodes on one database (issue 3 "Propagation").
//!
//! - a route created through node A's Admin API routes traffic on node B within 1 s;
//! - a change written to the database without a notification (a lost NOTIFY) still arrives, via
//!   the poll of the change log;
//! - Postgres stopped under proxy load: zero failed proxy requests, admin writes answer 503,
//!   `/status` says `database.reachable: false`; restarted: the next write works and propagates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::gateway::Gateway;
use crate::support::pg::{PrivateCluster, fresh_database, migrate};
use crate::support::{Echo, client};

/// A fresh migrated database's URL, or `None` (with a note) when tests/run.sh started none.
async fn migrated_database() -> Option<String> {
    let Some(url) = fresh_database().await else {
        eprintln!("skipped: GWCTL_TEST_DATABASE_URL is not set (run tests/run.sh)");
        return None;
    };
    migrate(&url).await;
    Some(url)
}

/// A node on `url` with its admin listener on a free port.
async fn node(url: &str) -> Gateway {
    let url = url.to_owned();
    Gateway::start_with("", move |o| {
        o.config = None;
        o.database_url = Some(url);
        o.admin_listen = "127.0.0.1:0".into();
    })
    .await
}

fn admin(gw: &Gateway) -> String {
    format!("http://{}", gw.bound.admin.expect("admin listener"))
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.expect("admin request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Create a service to `echo` and a route `path` through node `gw`.
async fn add_route(c: &reqwest::Client, gw: &Gateway, name: &str, path: &str, echo: &Echo) {
    let (s, b) = post(
        c,
        format!("{}/services", admin(gw)),
        json!({"name": name, "url": echo.url()}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = post(
        c,
        format!("{}/services/{name}/routes", admin(gw)),
        json!({"name": name, "paths": [path]}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

/// Poll `url` until it answers 200; returns how long that took (None after `limit`).
async fn until_ok(c: &reqwest::Client, url: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = c.get(url).send().await
            && r.status() == 200
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test]
async fn a_route_created_on_node_a_routes_on_node_b_within_a_second() {
    let Some(url) = migrated_database().await else {
        return;
    };
    let a = node(&url).await;
    let b = node(&url).await;
    let echo = Echo::start("cluster").await;
    let c = client();
    for i in 0..5 {
        add_route(&c, &a, &format!("svc-{i}"), &format!("/p{i}"), &echo).await;
        let took = until_ok(
            &c,
            &format!("{}/p{i}/x", b.proxy_url()),
            Duration::from_secs(1),
        )
        .await;
        assert!(
            took.is_some(),
            "change {i} did not route on node B within 1 s"
        );
    }
    // Reads on B see A's writes, deletes propagate too.
    let r: Value = c
        .get(format!("{}/services?size=1000", admin(&b)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["total"], 5);
    let del = c
        .delete(format!("{}/routes/svc-0", admin(&b)))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let start = Instant::now();
    loop {
        let s = c
            .get(format!("{}/p0/x", a.proxy_url()))
            .send()
            .await
            .unwrap()
            .status();
        if s == 404 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "delete did not propagate"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// Changes carry the entity in the notification when it fits (the other nodes apply it without
/// reading it back); a bigger one (here a consumer with 9 KB of tags) is read back from the
/// table. Both arrive on node B, and so do an update and a delete of the big one.
#[tokio::test]
async fn small_and_big_entities_propagate() {
    let Some(url) = migrated_database().await else {
        return;
    };
    let a = node(&url).await;
    let b = node(&url).await;
    let c = client();
    let tags: Vec<String> = (0..100)
        .map(|i| format!("tag-{i:03}-{}", "x".repeat(80)))
        .collect();
    let get_on_b = |name: &str| {
        let url = format!("{}/consumers/{name}", admin(&b));
        let c = c.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let until = async |name: &str, want: &dyn Fn(u16, &Value) -> bool| {
        let start = Instant::now();
        loop {
            let (s, v) = get_on_b(name).await;
            if want(s, &v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{name} on B: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (s, small) = post(
        &c,
        format!("{}/consumers", admin(&a)),
        json!({"username": "small", "tags": ["t"]}),
    )
    .await;
    assert_eq!(s, 201, "{small}");
    let (s, big) = post(
        &c,
        format!("{}/consumers", admin(&a)),
        json!({"username": "big", "tags": tags}),
    )
    .await;
    assert_eq!(s, 201, "{big}");
    assert!(big.to_string().len() > 8000, "bigger than a NOTIFY payload");
    let on_b = until("small", &|s, _| s == 200).await;
    assert_eq!(on_b, small);
    let on_b = until("big", &|s, _| s == 200).await;
    assert_eq!(on_b, big);
    // An update of the big one, then its delete.
    let r = c
        .patch(format!("{}/consumers/big", admin(&a)))
        .json(&json!({"custom_id": "c-42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until("big", &|_, v| v["custom_id"] == "c-42").await;
    let r = c
        .delete(format!("{}/consumers/big", admin(&a)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    until("big", &|s, _| s == 404).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_change_without_notification_arrives_through_the_poll() {
    let Some(url) = migrated_database().await else {
        return;
    };
    let a = node(&url).await;
    // Write a consumer behind the gateway's back: the row and its change-log entry, no NOTIFY.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let id = uuid::Uuid::new_v4();
    let data = json!({"id": id, "username": "quiet", "custom_id": null, "tags": null,
                      "created_at": 1_700_000_000, "updated_at": 1_700_000_000});
    sqlx::query("INSERT INTO consumers (id, username, data) VALUES ($1, 'quiet', $2)")
        .bind(id)
        .bind(sqlx::types::Json(&data))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO gwctl_changes (kind, entity_id, op) VALUES ('consumers', $1, 'upsert')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let c = client();
    let deadline = Instant::now() + gwctl::store::postgres::POLL_INTERVAL * 3;
    loop {
        let r = c
            .get(format!("{}/consumers/quiet", admin(&a)))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["id"], json!(id));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poll did not pick up the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
}

/// A change-log id is taken when a write starts and seen when it commits: a write that took a
/// lower id but commits after a higher one was applied (and whose notification is lost) must
/// still arrive through the poll's look-back.
#[tokio::test]
async fn a_change_committed_out_of_order_arrives_through_the_poll() {
    let Some(url) = migrated_database().await else {
        return;
    };
    let a = node(&url).await;
    let c = client();
    // The slow write: its row and change-log entry in a transaction left open (id N, no NOTIFY).
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut slow = pool.begin().await.unwrap();
    let id = uuid::Uuid::new_v4();
    let data = json!({"id": id, "username": "late", "custom_id": null, "tags": null,
                      "created_at": 1_700_000_000, "updated_at": 1_700_000_000});
    sqlx::query("INSERT INTO consumers (id, username, data) VALUES ($1, 'late', $2)")
        .bind(id)
        .bind(sqlx::types::Json(&data))
        .execute(&mut *slow)
        .await
        .unwrap();
    let slow_change: i64 = sqlx::query_scalar(
        "INSERT INTO gwctl_changes (kind, entity_id, op) VALUES ('consumers', $1, 'upsert') \
         RETURNING id",
    )
    .bind(id)
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    // A later write commits first (id N+1) through the node, and a poll goes past it.
    let (status, _) = post(
        &c,
        format!("{}/consumers", admin(&a)),
        json!({"username": "early"}),
    )
    .await;
    assert_eq!(status, 201);
    let newest: i64 = sqlx::query_scalar("SELECT MAX(id) FROM gwctl_changes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(newest > slow_change, "{newest} {slow_change}");
    tokio::time::sleep(gwctl::store::postgres::POLL_INTERVAL * 2).await;
    // Now the slow write commits, its notification lost.
    slow.commit().await.unwrap();
    let deadline = Instant::now() + gwctl::store::postgres::POLL_INTERVAL * 4;
    loop {
        let r = c
            .get(format!("{}/consumers/late", admin(&a)))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a change that committed after a higher id never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
}

#[tokio::test]
async fn postgres_outage_loses_no_proxy_request_and_writes_resume() {
    let pg = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let url = pg.url();
    migrate(&url).await;
    let a = node(&url).await;
    let b = node(&url).await;
    let echo = Echo::start("outage").await;
    let c = client();
    add_route(&c, &a, "svc", "/svc", &echo).await;
    assert!(
        until_ok(
            &c,
            &format!("{}/svc/x", b.proxy_url()),
            Duration::from_secs(2)
        )
        .await
        .is_some()
    );

    // Proxy load on both nodes for the whole outage.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for base in [a.proxy_url(), b.proxy_url()] {
        for _ in 0..4 {
            let (stop, ok, failed, base) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                base.clone(),
            );
            load.push(tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    match c.get(format!("{base}/svc/x")).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }

    let pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        pg
    })
    .await
    .unwrap();
    // The nodes notice; writes are refused with a clear 503 and nothing changes.
    let status_url = format!("{}/status", a.status_url());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: Value = c
            .get(&status_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["database"]["reachable"] == json!(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never reported the database unreachable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, body) = post(
        &c,
        format!("{}/consumers", admin(&a)),
        json!({"username": "during-outage"}),
    )
    .await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("database unavailable"),
        "{body}"
    );
    // Reads keep working from the node's mirror.
    let r = c
        .get(format!("{}/services/svc", admin(&b)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let _pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let consumer = loop {
        let (s, body) = post(
            &c,
            format!("{}/consumers", admin(&a)),
            json!({"username": "after-outage"}),
        )
        .await;
        if s == 201 {
            break body;
        }
        assert_eq!(s, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "writes did not resume after Postgres came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The write propagates to node B, and node B's status recovers.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c
            .get(format!("{}/consumers/after-outage", admin(&b)))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["id"], consumer["id"]);
            break;
        }
        assert!(Instant::now() < deadline, "the write did not reach node B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    add_route(&c, &b, "svc2", "/svc2", &echo).await;
    assert!(
        until_ok(
            &c,
            &format!("{}/svc2/x", a.proxy_url()),
            Duration::from_secs(2)
        )
        .await
        .is_some(),
        "a route created after the outage did not propagate"
    );

    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert_eq!(
        failed, 0,
        "{failed} proxy requests failed during the outage ({ok} ok)"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn config_file_and_database_together_are_refused() {
    let err = Gateway::try_start_with("_format_version: \"3.0\"\n", |o| {
        o.database_url = Some("postgres://nobody@127.0.0.1:1/none".into());
    })
    .await
    .err()
    .expect("refused");
    assert!(
        format!("{err:#}").contains("--config is for DB-less mode"),
        "{err:#}"
    );
}
