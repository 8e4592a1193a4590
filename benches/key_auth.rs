//! key-auth credential lookup benchmark: 100,000 consumers, each with one key-auth credential
//! (random 32-character keys, as the Admin API generates them), measuring
//! [`gwctl::plugins::key_auth::lookup`] - the function the handler calls - for hits, a ttl
//! credential and misses. Goal: well under 1 µs.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gwctl::model::schema::validators::random_alnum;
use gwctl::model::{Config, Consumer, KeyAuthCredential};
use gwctl::plugins::key_auth::{Lookup, lookup};
use gwctl::store::Tables;
use uuid::Uuid;

const CONSUMERS: usize = 100_000;

fn tables() -> (Tables, Vec<String>) {
    let mut config = Config::default();
    let mut keys = Vec::with_capacity(CONSUMERS);
    for i in 0..CONSUMERS {
        let consumer = Consumer {
            id: Uuid::new_v4(),
            username: Some(format!("user-{i}")),
            custom_id: (i % 2 == 0).then(|| format!("custom-{i}")),
            tags: None,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
        };
        let key = random_alnum(32);
        config.keyauth_credentials.push(KeyAuthCredential {
            id: Uuid::new_v4(),
            consumer: consumer.id.into(),
            key: key.clone(),
            ttl: (i % 10 == 0).then_some(1_000_000_000),
            tags: None,
            created_at: 1_700_000_000,
        });
        config.consumers.push(consumer);
        keys.push(key);
    }
    (Tables::from_config(config), keys)
}

fn bench_lookup(c: &mut Criterion) {
    let (tables, keys) = tables();
    let now = 1_750_000_000;
    let hit = keys[CONSUMERS / 2 + 1].clone();
    let ttl = keys[CONSUMERS / 2].clone();
    let miss = random_alnum(32);
    for (key, found) in [(&hit, true), (&ttl, true), (&miss, false)] {
        if matches!(lookup(&tables, key, now), Lookup::Found { .. }) != found {
            eprintln!("unexpected lookup result for {key}");
            return;
        }
    }

    let mut group = c.benchmark_group("key_auth_100k");
    for (name, key) in [("hit", &hit), ("hit_ttl", &ttl), ("miss", &miss)] {
        group.bench_function(name, |b| {
            b.iter(|| match lookup(&tables, black_box(key), now) {
                Lookup::Found { consumer, .. } => black_box(consumer.id.as_u128()),
                _ => 0,
            })
        });
    }
    // Every key in turn: no single hot path through the B-tree stays in cache.
    let mut i = 0;
    group.bench_function("hit_rotating", |b| {
        b.iter(|| {
            i = (i + 7919) % CONSUMERS;
            match lookup(&tables, black_box(&keys[i]), now) {
                Lookup::Found { consumer, .. } => black_box(consumer.id.as_u128()),
                _ => 0,
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench_lookup
}
criterion_main!(benches);
