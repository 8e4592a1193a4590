//! The plan: the file's entities matched with the server's by natural key, each one a create,
//! an update (only the fields the file sets, compared by [`super::diff`]) or unchanged; with
//! `--prune`, the server's entities the file does not name become deletes.
//!
//! Keys (CONTRACT.md): services, routes and upstreams by name; consumers by username; targets
//! by address under their upstream; jwt and key-auth credentials by key (Kong keeps keys unique
//! across consumers, so a key moved to another consumer is an update of `consumer`); ACLs by
//! consumer and group; plugins by name and scope (global / service / route / consumer, by the
//! names of the entities). A route's service and a credential's consumer are compared by name
//! (the file names them, the server gives ids).
//!
//! Pruning deletes targets and credentials only where the file lists them for their parent
//! (an upstream entry without `targets` keeps the targets `gwctl register` added), or where the
//! parent itself goes.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::diff::{Difference, Secrets, differences, leaves, render, top_field};
use super::file::{Desired, DesiredState, Scope};
use super::state::{Current, Existing};
use super::{Action, Change, FieldChange, Kind};
use crate::plugins::grpc_gateway::discovery::TAG_DISCOVERED;

/// A reference to another entity: by name when it has one, else by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Ref {
    /// Name (username for consumers).
    Name(String),
    /// Id, for an entity without a name.
    Id(String),
}

impl Ref {
    fn shown(&self) -> String {
        match self {
            Self::Name(n) => n.clone(),
            Self::Id(id) => format!("id={id}"),
        }
    }
}

/// What an entity is matched by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    /// Name or username.
    Name(String),
    /// A server entity without a name (never matches anything in a file).
    Unnamed(String),
    /// A target: its upstream's name and its normalized `host:port`.
    Target {
        /// Upstream name.
        upstream: String,
        /// `host:port`.
        target: String,
    },
    /// A jwt or key-auth credential's key.
    Credential(String),
    /// An ACL.
    Acl {
        /// Its consumer.
        consumer: Ref,
        /// The group.
        group: String,
    },
    /// A plugin: name and scope.
    Plugin {
        /// Plugin name.
        name: String,
        /// Service scope.
        service: Option<Ref>,
        /// Route scope.
        route: Option<Ref>,
        /// Consumer scope.
        consumer: Option<Ref>,
    },
}

impl Key {
    /// The key of plugin `name` at `scope` (names).
    pub(crate) fn plugin(name: &str, scope: &Scope) -> Self {
        Self::Plugin {
            name: name.to_owned(),
            service: scope.service.clone().map(Ref::Name),
            route: scope.route.clone().map(Ref::Name),
            consumer: scope.consumer.clone().map(Ref::Name),
        }
    }
}

/// One step of the plan (indexes into the desired and current entities).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Create desired entity `want`.
    Create {
        /// Index into the desired entities.
        want: usize,
    },
    /// Update existing entity `have` to desired entity `want`.
    Update {
        /// Index into the desired entities.
        want: usize,
        /// Index into the existing entities.
        have: usize,
        /// What differs (paths are dotted; `service` / `consumer` for references).
        diffs: Vec<Difference>,
    },
    /// Delete existing entity `have`.
    Delete {
        /// Index into the existing entities.
        have: usize,
    },
}

impl Step {
    /// The top-level fields an update changes, without repeats.
    pub(crate) fn changed_fields(diffs: &[Difference]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in diffs {
            let top = d.path.split('.').next().unwrap_or(&d.path).to_owned();
            if !out.contains(&top) {
                out.push(top);
            }
        }
        out
    }
}

/// The plan, with what it was computed from.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// The file's entities.
    pub(crate) desired: &'a DesiredState,
    /// The server's entities.
    pub(crate) current: &'a Current,
    /// Creates and updates in apply order, then deletes in reverse order.
    pub(crate) steps: Vec<Step>,
    /// Entities of the file that already match.
    pub(crate) unchanged: usize,
    /// Server entities `--prune` would delete but the run leaves (prune off).
    pub(crate) not_in_file: usize,
}

impl Plan<'_> {
    /// The change a step makes, for people.
    pub(crate) fn change(&self, step: &Step, secrets: &Secrets) -> Change {
        match step {
            Step::Create { want } => {
                let d = &self.desired.entities[*want];
                let mut fields = Vec::new();
                if d.kind == Kind::Route
                    && let Some(s) = &d.parent
                {
                    fields.push(FieldChange {
                        path: "service".into(),
                        old: None,
                        new: render("service", &Value::from(s.as_str()), secrets),
                    });
                }
                for (k, v) in &d.fields {
                    let mut flat = Vec::new();
                    leaves(k, v, &mut flat);
                    for (path, value) in flat {
                        fields.push(FieldChange {
                            new: render(&path, &value, secrets),
                            path,
                            old: None,
                        });
                    }
                }
                Change {
                    action: Action::Create,
                    kind: d.kind,
                    label: d.label.clone(),
                    fields,
                }
            }
            Step::Update { want, diffs, .. } => {
                let d = &self.desired.entities[*want];
                Change {
                    action: Action::Update,
                    kind: d.kind,
                    label: d.label.clone(),
                    fields: diffs
                        .iter()
                        .map(|x| FieldChange {
                            path: x.path.clone(),
                            old: Some(render(&x.path, &x.old, secrets)),
                            new: render(&x.path, &x.new, secrets),
                        })
                        .collect(),
                }
            }
            Step::Delete { have } => {
                let e = &self.current.entities[*have];
                Change {
                    action: Action::Delete,
                    kind: e.kind,
                    label: e.label.clone(),
                    fields: Vec::new(),
                }
            }
        }
    }

    /// Every step as a change (what `--dry-run` reports).
    pub(crate) fn changes(&self, secrets: &Secrets) -> Vec<Change> {
        self.steps.iter().map(|s| self.change(s, secrets)).collect()
    }
}

/// What differs between desired `d` and existing `e`, looking only at what the file sets.
fn compare(d: &Desired, e: &Existing) -> Vec<Difference> {
    let mut out = Vec::new();
    for (k, v) in &d.fields {
        let field = top_field(d.kind, d.plugin_name(), k);
        differences(field.as_ref(), k, v, e.json.get(k), &mut out);
    }
    let reference = match d.kind {
        Kind::Route => Some("service"),
        Kind::JwtSecret | Kind::KeyauthCredential => Some("consumer"),
        _ => None,
    };
    if let (Some(field), Some(want)) = (reference, &d.parent)
        && e.parent.as_ref() != Some(&Ref::Name(want.clone()))
    {
        out.push(Difference {
            path: field.to_owned(),
            old: e
                .parent
                .as_ref()
                .map_or(Value::Null, |r| Value::from(r.shown())),
            new: Value::from(want.as_str()),
        });
    }
    out
}

/// Whether a route carries the tag of the routes gwctl's grpc-gateway discovery made.
fn is_discovered(e: &Existing) -> bool {
    e.json
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(TAG_DISCOVERED)))
}

/// Compute the plan of converging `current` to `desired`.
pub(crate) fn plan<'a>(desired: &'a DesiredState, current: &'a Current, prune: bool) -> Plan<'a> {
    let index: HashMap<(Kind, &Key), usize> = current
        .entities
        .iter()
        .enumerate()
        .map(|(i, e)| ((e.kind, &e.key), i))
        .collect();
    let mut matched = vec![false; current.entities.len()];
    let mut steps = Vec::new();
    let mut unchanged = 0;
    for kind in Kind::ALL {
        for (i, d) in desired.entities.iter().enumerate() {
            if d.kind != kind {
                continue;
            }
            match index.get(&(kind, &d.key)) {
                None => steps.push(Step::Create { want: i }),
                Some(&h) => {
                    matched[h] = true;
                    let diffs = compare(d, &current.entities[h]);
                    if diffs.is_empty() {
                        unchanged += 1;
                    } else {
                        steps.push(Step::Update {
                            want: i,
                            have: h,
                            diffs,
                        });
                    }
                }
            }
        }
    }
    let named = |kind: Kind| -> BTreeSet<&str> {
        desired
            .entities
            .iter()
            .filter(|d| d.kind == kind)
            .filter_map(|d| match &d.key {
                Key::Name(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    };
    let upstreams = named(Kind::Upstream);
    let consumers = named(Kind::Consumer);
    let managed = |e: &Existing| -> bool {
        // Routes a grpc-gateway plugin discovered belong to the gateway's discovery (which
        // creates and removes them), not to the file: pruning them would only make discovery
        // put them back.
        if e.kind == Kind::Route && is_discovered(e) {
            return false;
        }
        let parent = match &e.parent {
            Some(Ref::Name(n)) => n.as_str(),
            _ => return true,
        };
        match e.kind {
            Kind::Target => !upstreams.contains(parent) || desired.managed_targets.contains(parent),
            Kind::JwtSecret | Kind::KeyauthCredential | Kind::Acl => {
                !consumers.contains(parent)
                    || desired
                        .managed_credentials
                        .contains(&(parent.to_owned(), e.kind))
            }
            _ => true,
        }
    };
    let mut not_in_file = 0;
    for kind in Kind::ALL.iter().rev() {
        for (i, e) in current.entities.iter().enumerate() {
            if e.kind != *kind || matched[i] || !managed(e) {
                continue;
            }
            if prune {
                steps.push(Step::Delete { have: i });
            } else {
                not_in_file += 1;
            }
        }
    }
    Plan {
        desired,
        current,
        steps,
        unchanged,
        not_in_file,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::ops::setup_kong::state::Current;

    fn desired(text: &str) -> DesiredState {
        super::super::file::from_text("f.yml", text, &HashMap::new()).unwrap()
    }

    fn existing(kind: Kind, key: Key, label: &str, json: Value, parent: Option<&str>) -> Existing {
        Existing {
            kind,
            key,
            id: format!("id-{label}"),
            label: label.to_owned(),
            json: json.as_object().cloned().unwrap(),
            parent: parent.map(|p| Ref::Name(p.to_owned())),
            parent_id: parent.map(|p| format!("id-{p}")),
        }
    }

    const FILE: &str = r#"
_format_version: "3.0"
upstreams:
  - name: u
    targets: [{target: "10.0.0.1:80"}]
  - name: registered
services:
  - name: s
    host: u
    routes:
      - name: r
        paths: [/new]
consumers:
  - username: c
    jwt_secrets: [{key: iss, secret: new-secret}]
"#;

    fn server() -> Current {
        Current {
            entities: vec![
                existing(
                    Kind::Upstream,
                    Key::Name("u".into()),
                    "u",
                    json!({"name": "u", "slots": 10000}),
                    None,
                ),
                existing(
                    Kind::Upstream,
                    Key::Name("registered".into()),
                    "registered",
                    json!({"name": "registered"}),
                    None,
                ),
                existing(
                    Kind::Upstream,
                    Key::Name("old".into()),
                    "old",
                    json!({"name": "old"}),
                    None,
                ),
                existing(
                    Kind::Target,
                    Key::Target {
                        upstream: "u".into(),
                        target: "10.0.0.1:80".into(),
                    },
                    "u/10.0.0.1:80",
                    json!({"target": "10.0.0.1:80", "weight": 100}),
                    Some("u"),
                ),
                existing(
                    Kind::Target,
                    Key::Target {
                        upstream: "u".into(),
                        target: "10.0.0.9:80".into(),
                    },
                    "u/10.0.0.9:80",
                    json!({"target": "10.0.0.9:80"}),
                    Some("u"),
                ),
                existing(
                    Kind::Target,
                    Key::Target {
                        upstream: "registered".into(),
                        target: "10.0.0.5:80".into(),
                    },
                    "registered/10.0.0.5:80",
                    json!({"target": "10.0.0.5:80"}),
                    Some("registered"),
                ),
                existing(
                    Kind::Service,
                    Key::Name("s".into()),
                    "s",
                    json!({"name": "s", "host": "u", "port": 80}),
                    None,
                ),
                existing(
                    Kind::Service,
                    Key::Name("other".into()),
                    "other",
                    json!({"name": "other", "host": "x"}),
                    None,
                ),
                existing(
                    Kind::Route,
                    Key::Name("r".into()),
                    "r",
                    json!({"name": "r", "paths": ["/old"], "strip_path": true}),
                    Some("other"),
                ),
                existing(
                    Kind::Consumer,
                    Key::Name("c".into()),
                    "c",
                    json!({"username": "c", "custom_id": null}),
                    None,
                ),
                existing(
                    Kind::JwtSecret,
                    Key::Credential("iss".into()),
                    "c/iss",
                    json!({"key": "iss", "secret": "old-secret", "algorithm": "HS256"}),
                    Some("c"),
                ),
                existing(
                    Kind::KeyauthCredential,
                    Key::Credential("k".into()),
                    "c/key-auth id=1",
                    json!({"key": "k"}),
                    Some("c"),
                ),
            ],
        }
    }

    fn lines(p: &Plan<'_>) -> Vec<String> {
        p.changes(&Secrets::default())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn updates_in_place_and_leaves_what_the_file_does_not_set() {
        let d = desired(FILE);
        let s = server();
        let p = plan(&d, &s, false);
        assert_eq!(
            lines(&p),
            vec![
                "update route r (paths, service)",
                "update jwt_secret c/iss (secret)"
            ]
        );
        // u, its target, registered, s, c are unchanged; old, the 10.0.0.9 target and other are
        // not in the file. Not managed by the file, so never pruned: registered's target (its
        // entry has no `targets`) and c's key-auth credential (c lists only jwt_secrets).
        assert_eq!((p.unchanged, p.not_in_file), (5, 3));
        let changes = p.changes(&Secrets::default());
        assert_eq!(
            changes[0].diff_lines(),
            vec![
                r#"  paths: ["/old"] -> ["/new"]"#,
                r#"  service: "other" -> "s""#
            ]
        );
        assert_eq!(
            changes[1].diff_lines(),
            vec!["  secret: (secret) -> (secret)"]
        );
    }

    #[test]
    fn prune_deletes_in_reverse_dependency_order() {
        let d = desired(FILE);
        let s = server();
        let p = plan(&d, &s, true);
        assert_eq!(
            lines(&p),
            vec![
                "update route r (paths, service)",
                "update jwt_secret c/iss (secret)",
                "delete service other",
                "delete target u/10.0.0.9:80",
                "delete upstream old",
            ]
        );
        assert_eq!(p.not_in_file, 0);
    }

    #[test]
    fn prune_leaves_routes_grpc_discovery_made() {
        let d = desired(FILE);
        let mut s = server();
        s.entities.push(existing(
            Kind::Route,
            Key::Name("s-grpc-get-users".into()),
            "s-grpc-get-users",
            json!({"name": "s-grpc-get-users", "paths": ["~/users/[^/]+$"],
                   "tags": ["grpc-discovered", "grpc-plugin:1", "grpc-method:a.B.GetUser"]}),
            Some("s"),
        ));
        s.entities.push(existing(
            Kind::Route,
            Key::Name("hand-made".into()),
            "hand-made",
            json!({"name": "hand-made", "paths": ["/h"], "tags": ["grpc-method:a.B.GetUser"]}),
            Some("s"),
        ));
        let p = plan(&d, &s, true);
        let l = lines(&p);
        assert!(l.contains(&"delete route hand-made".to_owned()), "{l:?}");
        assert!(!l.iter().any(|l| l.contains("s-grpc-get-users")), "{l:?}");
        assert_eq!(
            plan(&d, &s, false).not_in_file,
            4,
            "the discovered route is not counted"
        );
    }

    #[test]
    fn everything_is_created_on_an_empty_server() {
        let d = desired(FILE);
        let s = Current::default();
        let p = plan(&d, &s, true);
        assert_eq!(
            lines(&p),
            vec![
                "create upstream u",
                "create upstream registered",
                "create target u/10.0.0.1:80",
                "create service s",
                "create route r",
                "create consumer c",
                "create jwt_secret c/iss",
            ]
        );
        let c = p.changes(&Secrets::default());
        assert_eq!(
            c[4].diff_lines(),
            vec![
                r#"  service: "s""#,
                r#"  name: "r""#,
                r#"  paths: ["/new"]"#
            ]
        );
        assert_eq!(
            c[6].diff_lines(),
            vec!["  key: (secret)", "  secret: (secret)"]
        );
    }
}
