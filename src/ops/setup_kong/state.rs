//! The server's current configuration: every collection `setup kong` manages, all pages, with
//! each entity's natural key and its references resolved from ids to names.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::client::{AdminClient, ApiError};
use super::plan::{Key, Ref};
use super::{Kind, file::Scope};

/// One entity on the server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Existing {
    /// Its kind.
    pub(crate) kind: Kind,
    /// What it is matched by.
    pub(crate) key: Key,
    /// Its id.
    pub(crate) id: String,
    /// How output lines name it.
    pub(crate) label: String,
    /// The entity as the Admin API returned it.
    pub(crate) json: Map<String, Value>,
    /// A route's service, a target's upstream, a credential's or ACL's consumer.
    pub(crate) parent: Option<Ref>,
    /// The id of that parent.
    pub(crate) parent_id: Option<String>,
}

/// Everything on the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Current {
    /// The entities, grouped by kind in apply order.
    pub(crate) entities: Vec<Existing>,
}

/// The raw collections, as listed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lists {
    pub(crate) upstreams: Vec<Value>,
    /// (upstream id, target).
    pub(crate) targets: Vec<(String, Value)>,
    pub(crate) services: Vec<Value>,
    pub(crate) routes: Vec<Value>,
    pub(crate) consumers: Vec<Value>,
    pub(crate) jwt_secrets: Vec<Value>,
    pub(crate) keyauth_credentials: Vec<Value>,
    pub(crate) acls: Vec<Value>,
    pub(crate) plugins: Vec<Value>,
}

/// Read every collection, following `next` through all pages.
pub(crate) async fn read(client: &AdminClient) -> Result<Current, ApiError> {
    let mut lists = Lists {
        upstreams: client.list("/upstreams").await?,
        ..Lists::default()
    };
    for u in &lists.upstreams {
        let id = str_of(u, "id");
        for t in client.list(&format!("/upstreams/{id}/targets")).await? {
            lists.targets.push((id.to_owned(), t));
        }
    }
    lists.services = client.list("/services").await?;
    lists.routes = client.list("/routes").await?;
    lists.consumers = client.list("/consumers").await?;
    // The credential collections belong to their plugins: a Kong without the plugin enabled
    // answers 404, which means there are none.
    lists.jwt_secrets = client.list_if_present("/jwts").await?;
    lists.keyauth_credentials = client.list_if_present("/key-auths").await?;
    lists.acls = client.list_if_present("/acls").await?;
    lists.plugins = client.list("/plugins").await?;
    Ok(build(lists))
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn fk<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field)
        .and_then(|f| f.get("id"))
        .and_then(Value::as_str)
}

/// Resolve the raw lists into keyed entities.
pub(crate) fn build(lists: Lists) -> Current {
    let refs = |rows: &[Value], name_field: &str| -> HashMap<String, Ref> {
        rows.iter()
            .map(|r| {
                let id = str_of(r, "id").to_owned();
                let reference = match r.get(name_field).and_then(Value::as_str) {
                    Some(n) => Ref::Name(n.to_owned()),
                    None => Ref::Id(id.clone()),
                };
                (id, reference)
            })
            .collect()
    };
    let upstream_names = refs(&lists.upstreams, "name");
    let services = refs(&lists.services, "name");
    let routes = refs(&lists.routes, "name");
    let consumers = refs(&lists.consumers, "username");
    let resolve = |map: &HashMap<String, Ref>, id: Option<&str>| -> Option<Ref> {
        id.map(|id| {
            map.get(id)
                .cloned()
                .unwrap_or_else(|| Ref::Id(id.to_owned()))
        })
    };
    let shown = |r: &Option<Ref>| match r {
        Some(Ref::Name(n)) => n.clone(),
        Some(Ref::Id(id)) => format!("id={id}"),
        None => String::new(),
    };

    let mut out = Vec::new();
    let mut push = |kind: Kind,
                    key: Key,
                    label: String,
                    row: &Value,
                    parent: Option<Ref>,
                    parent_id: Option<String>| {
        out.push(Existing {
            kind,
            key,
            id: str_of(row, "id").to_owned(),
            label,
            json: row.as_object().cloned().unwrap_or_default(),
            parent,
            parent_id,
        });
    };

    let named = |row: &Value, field: &str| match row.get(field).and_then(Value::as_str) {
        Some(n) => (Key::Name(n.to_owned()), n.to_owned()),
        None => {
            let id = str_of(row, "id");
            (Key::Unnamed(id.to_owned()), format!("id={id}"))
        }
    };

    for u in &lists.upstreams {
        let (key, label) = named(u, "name");
        push(Kind::Upstream, key, label, u, None, None);
    }
    for (uid, t) in &lists.targets {
        let upstream = resolve(&upstream_names, Some(uid));
        let target = str_of(t, "target").to_owned();
        let uname = shown(&upstream);
        push(
            Kind::Target,
            Key::Target {
                upstream: uname.clone(),
                target: target.clone(),
            },
            format!("{uname}/{target}"),
            t,
            upstream,
            Some(uid.clone()),
        );
    }
    for s in &lists.services {
        let (key, label) = named(s, "name");
        push(Kind::Service, key, label, s, None, None);
    }
    for r in &lists.routes {
        let (key, label) = named(r, "name");
        let service = resolve(&services, fk(r, "service"));
        let sid = fk(r, "service").map(str::to_owned);
        push(Kind::Route, key, label, r, service, sid);
    }
    for c in &lists.consumers {
        let (key, label) = named(c, "username");
        push(Kind::Consumer, key, label, c, None, None);
    }
    for (kind, rows) in [
        (Kind::JwtSecret, &lists.jwt_secrets),
        (Kind::KeyauthCredential, &lists.keyauth_credentials),
        (Kind::Acl, &lists.acls),
    ] {
        for row in rows {
            let consumer = resolve(&consumers, fk(row, "consumer"));
            let cid = fk(row, "consumer").map(str::to_owned);
            let c = shown(&consumer);
            let (key, label) = match kind {
                Kind::Acl => {
                    let group = str_of(row, "group").to_owned();
                    let label = format!("{c}/{group}");
                    (
                        Key::Acl {
                            consumer: consumer.clone().unwrap_or(Ref::Id(String::new())),
                            group,
                        },
                        label,
                    )
                }
                Kind::JwtSecret => {
                    let k = str_of(row, "key").to_owned();
                    let label = format!("{c}/{k}");
                    (Key::Credential(k), label)
                }
                _ => (
                    Key::Credential(str_of(row, "key").to_owned()),
                    // Never the key: it is the credential.
                    format!("{c}/key-auth id={}", str_of(row, "id")),
                ),
            };
            push(kind, key, label, row, consumer, cid);
        }
    }
    for p in &lists.plugins {
        let name = str_of(p, "name").to_owned();
        let service = resolve(&services, fk(p, "service"));
        let route = resolve(&routes, fk(p, "route"));
        let consumer = resolve(&consumers, fk(p, "consumer"));
        let scope = Scope {
            service: service.as_ref().map(|r| shown(&Some(r.clone()))),
            route: route.as_ref().map(|r| shown(&Some(r.clone()))),
            consumer: consumer.as_ref().map(|r| shown(&Some(r.clone()))),
        };
        let label = format!("{name} ({})", scope.describe());
        push(
            Kind::Plugin,
            Key::Plugin {
                name,
                service,
                route,
                consumer,
            },
            label,
            p,
            None,
            None,
        );
    }
    Current { entities: out }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_resolve_to_names() {
        let lists = Lists {
            upstreams: vec![json!({"id": "u1", "name": "up"})],
            targets: vec![(
                "u1".into(),
                json!({"id": "t1", "target": "10.0.0.1:80", "upstream": {"id": "u1"}}),
            )],
            services: vec![
                json!({"id": "s1", "name": "svc"}),
                json!({"id": "s2", "name": null}),
            ],
            routes: vec![json!({"id": "r1", "name": "rt", "service": {"id": "s1"}})],
            consumers: vec![json!({"id": "c1", "username": "bob"})],
            jwt_secrets: vec![json!({"id": "j1", "key": "iss", "consumer": {"id": "c1"}})],
            keyauth_credentials: vec![
                json!({"id": "k1", "key": "sekrit", "consumer": {"id": "c1"}}),
            ],
            acls: vec![json!({"id": "a1", "group": "g", "consumer": {"id": "c1"}})],
            plugins: vec![
                json!({"id": "p1", "name": "jwt", "service": {"id": "s1"}, "route": null, "consumer": null}),
                json!({"id": "p2", "name": "cors", "service": {"id": "s2"}, "route": {"id": "r1"}}),
                json!({"id": "p3", "name": "prometheus"}),
            ],
        };
        let c = build(lists);
        let labels: Vec<String> = c
            .entities
            .iter()
            .map(|e| format!("{} {}", e.kind, e.label))
            .collect();
        assert_eq!(
            labels,
            vec![
                "upstream up",
                "target up/10.0.0.1:80",
                "service svc",
                "service id=s2",
                "route rt",
                "consumer bob",
                "jwt_secret bob/iss",
                "keyauth_credential bob/key-auth id=k1",
                "acl bob/g",
                "plugin jwt (service svc)",
                "plugin cors (service id=s2, route rt)",
                "plugin prometheus (global)",
            ]
        );
        assert!(!labels.iter().any(|l| l.contains("sekrit")));
        assert_eq!(c.entities[3].key, Key::Unnamed("s2".into()));
        assert_eq!(c.entities[4].parent, Some(Ref::Name("svc".into())));
        assert_eq!(
            c.entities[9].key,
            Key::Plugin {
                name: "jwt".into(),
                service: Some(Ref::Name("svc".into())),
                route: None,
                consumer: None
            }
        );
    }
}
