//! The declarative file as desired state: read, `${{ env "NAME" }}` replaced, flattened.
//!
//! The text is parsed with the declarative loader's parser ([`crate::declarative::parse_text`],
//! YAML or JSON), so a file `gwctl serve --config` accepts reads the same way here. Then:
//!
//! - decK's placeholders `${{ env "NAME" }}` are replaced inside string values (after parsing,
//!   so a value can never change the file's structure); an unset variable is an error naming it.
//! - `_format_version` must be one Kong accepts; `_transform`, `_comment`, `_ignore` and decK's
//!   `_info`, `_konnect`, `_workspace` are accepted and ignored.
//! - Entities are flattened from Kong's nestings (`services[].routes[].plugins[]`,
//!   `upstreams[].targets[]`, `consumers[].{plugins,jwt_secrets,keyauth_credentials,acls}[]`, ...)
//!   and top-level references (`routes[].service: name`, `plugins[].consumer: name`, by name or
//!   by an id the file gives) are resolved to names. Each entity keeps exactly the fields the
//!   file sets, minus the structural ones (ids, references, nested children, timestamps); a
//!   service's `url` is expanded into protocol/host/port/path with the schema's own rule, and a
//!   target's address gets Kong's default port.
//! - Every entity needs its natural key, because that is what it is matched by on the server:
//!   names for upstreams, services, routes; usernames for consumers; the address for targets;
//!   the key for credentials (a generated key could never be matched again); the group for ACLs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::diff::{Secrets, is_secret_name};
use super::plan::{Key, Ref};
use super::{Kind, SetupKongError};
use crate::declarative::{FORMAT_VERSIONS, UNSUPPORTED, parse_text};
use crate::model::schema::{EntityKind, FieldErrors, validators};

/// Kong collections `setup kong` does not manage, accepted when empty: those gwctl does not
/// implement, and `ca_certificates`, which `setup kong` leaves alone.
fn unmanaged(key: &str) -> bool {
    key == "ca_certificates" || UNSUPPORTED.contains(&key)
}

/// decK's placeholder: `${{ env "NAME" }}`.
static PLACEHOLDER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"\$\{\{\s*env\s+"([A-Za-z_][A-Za-z0-9_]*)"\s*\}\}"#).ok());

/// A plugin's scope, by the names of the entities it is attached to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope {
    /// Service name.
    pub(crate) service: Option<String>,
    /// Route name.
    pub(crate) route: Option<String>,
    /// Consumer username.
    pub(crate) consumer: Option<String>,
}

impl Scope {
    /// `global`, or `service a, route b, consumer c`.
    pub(crate) fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("service", &self.service),
            ("route", &self.route),
            ("consumer", &self.consumer),
        ]
        .iter()
        .filter_map(|(what, name)| name.as_ref().map(|n| format!("{what} {n}")))
        .collect();
        if parts.is_empty() {
            "global".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// One entity of the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Desired {
    /// Its kind.
    pub(crate) kind: Kind,
    /// What it is matched by on the server.
    pub(crate) key: Key,
    /// How output lines name it.
    pub(crate) label: String,
    /// Where it is in the file (`services[0].routes[1]`).
    pub(crate) path: String,
    /// The fields the file sets (compared with the server's, sent on create and update).
    pub(crate) fields: Map<String, Value>,
    /// An id the file gives (sent on create only: ids cannot change).
    pub(crate) id: Option<String>,
    /// The entity it belongs to, by name: a route's service (when the file sets one), a
    /// target's upstream, a credential's or ACL's consumer.
    pub(crate) parent: Option<String>,
    /// Plugins: the scope.
    pub(crate) scope: Scope,
    /// Plugins: the plugin name the file used, when the entity was translated for the target
    /// (`jwt-claim-headers` -> `post-function` on Kong).
    pub(crate) translated_from: Option<String>,
}

impl Desired {
    /// The plugin name (plugins only).
    pub(crate) fn plugin_name(&self) -> Option<&str> {
        match &self.key {
            Key::Plugin { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The whole file, flattened.
#[derive(Debug, Clone, Default)]
pub(crate) struct DesiredState {
    /// The file's path (for messages).
    pub(crate) path: String,
    /// Its entities, in file order.
    pub(crate) entities: Vec<Desired>,
    /// Upstreams whose targets the file lists: only their targets are pruned (targets that
    /// `gwctl register` adds to an upstream whose file entry has no `targets` stay).
    pub(crate) managed_targets: BTreeSet<String>,
    /// `(consumer, kind)` whose credentials of that kind the file lists (likewise).
    pub(crate) managed_credentials: BTreeSet<(String, Kind)>,
    /// Secret values in the file, never to be shown.
    pub(crate) secrets: Secrets,
}

/// Read `path`, replace placeholders from `env`, and flatten it.
pub(crate) fn load(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<DesiredState, SetupKongError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SetupKongError::Read {
        path: shown.clone(),
        source,
    })?;
    from_text(&shown, &text, env)
}

/// [`load`] of text already read.
pub(crate) fn from_text(
    path: &str,
    text: &str,
    env: &HashMap<String, String>,
) -> Result<DesiredState, SetupKongError> {
    let invalid = |problems: Vec<String>| SetupKongError::InvalidFile {
        path: path.to_owned(),
        problems,
    };
    let mut doc = parse_text(text).map_err(|e| invalid(e.lines()))?;
    let mut secrets = Secrets::default();
    let mut problems = Vec::new();
    let mut missing: BTreeMap<String, String> = BTreeMap::new();
    substitute(&mut doc, env, "", &mut missing, &mut problems, &mut secrets);
    for (name, at) in &missing {
        problems.push(format!(
            "environment variable {name} is not set (used at {at})"
        ));
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let mut walker = Walker {
        secrets,
        ..Walker::default()
    };
    walker.document(&doc);
    let mut state = walker.finish();
    if !state.1.is_empty() {
        return Err(invalid(state.1));
    }
    state.0.path = path.to_owned();
    Ok(state.0)
}

/// Replace `${{ env "NAME" }}` in every string value.
fn substitute(
    v: &mut Value,
    env: &HashMap<String, String>,
    path: &str,
    missing: &mut BTreeMap<String, String>,
    problems: &mut Vec<String>,
    secrets: &mut Secrets,
) {
    match v {
        Value::String(s) if s.contains("${{") => {
            let Some(re) = PLACEHOLDER.as_ref() else {
                return;
            };
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for caps in re.captures_iter(s) {
                let (Some(all), Some(name)) = (caps.get(0), caps.get(1)) else {
                    continue;
                };
                out.push_str(&s[last..all.start()]);
                match env.get(name.as_str()) {
                    Some(value) => {
                        if is_secret_name(name.as_str()) {
                            secrets.add(value);
                        }
                        out.push_str(value);
                    }
                    None => {
                        missing
                            .entry(name.as_str().to_owned())
                            .or_insert_with(|| shown_path(path));
                    }
                }
                last = all.end();
            }
            out.push_str(&s[last..]);
            if out.contains("${{") && re.replace_all(s, "").contains("${{") {
                problems.push(format!(
                    "{}: unsupported placeholder (only ${{{{ env \"NAME\" }}}} is supported)",
                    shown_path(path)
                ));
            }
            *s = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(
                    item,
                    env,
                    &format!("{path}[{i}]"),
                    missing,
                    problems,
                    secrets,
                );
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                substitute(item, env, &p, missing, problems, secrets);
            }
        }
        _ => {}
    }
}

fn shown_path(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        path.to_owned()
    }
}

/// A reference as the file writes it, before it is resolved to a name.
#[derive(Debug, Clone)]
enum RawRef {
    /// Nested under the entity: already a name.
    Parent(String),
    /// `field: value` written out; `value` is a name or an id the file gives.
    Given { field: &'static str, value: String },
}

/// An entity while the file is walked.
struct Pending {
    desired: Desired,
    /// References still to resolve: (field, kind referenced, reference).
    refs: Vec<(&'static str, Kind, RawRef)>,
}

#[derive(Default)]
struct Walker {
    pending: Vec<Pending>,
    problems: Vec<String>,
    managed_targets: BTreeSet<String>,
    managed_credentials: BTreeSet<(String, Kind)>,
    secrets: Secrets,
}

/// The children Kong's format nests under an entity of `kind`.
fn children(kind: Kind) -> &'static [(&'static str, Kind)] {
    match kind {
        Kind::Service => &[("routes", Kind::Route), ("plugins", Kind::Plugin)],
        Kind::Route => &[("plugins", Kind::Plugin)],
        Kind::Upstream => &[("targets", Kind::Target)],
        Kind::Consumer => &[
            ("plugins", Kind::Plugin),
            ("jwt_secrets", Kind::JwtSecret),
            ("keyauth_credentials", Kind::KeyauthCredential),
            ("acls", Kind::Acl),
        ],
        _ => &[],
    }
}

/// The reference fields of `kind`: (field, kind referenced).
fn references(kind: Kind) -> &'static [(&'static str, Kind)] {
    match kind {
        Kind::Route => &[("service", Kind::Service)],
        Kind::Target => &[("upstream", Kind::Upstream)],
        Kind::JwtSecret | Kind::KeyauthCredential | Kind::Acl => &[("consumer", Kind::Consumer)],
        Kind::Plugin => &[
            ("service", Kind::Service),
            ("route", Kind::Route),
            ("consumer", Kind::Consumer),
        ],
        _ => &[],
    }
}

/// The field holding the natural key of `kind`, and why it is needed.
fn key_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Upstream | Kind::Service | Kind::Route | Kind::Plugin => "name",
        Kind::Consumer => "username",
        Kind::Target => "target",
        Kind::JwtSecret | Kind::KeyauthCredential => "key",
        Kind::Acl => "group",
    }
}

fn collection(kind: Kind) -> &'static str {
    kind.entity_kind().name()
}

impl Walker {
    fn problem(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.problems.push(format!("{path}: {msg}"));
    }

    fn document(&mut self, doc: &Value) {
        let Value::Object(top) = doc else {
            self.problems
                .push("expected an object at the top level".to_owned());
            return;
        };
        match top.get("_format_version") {
            None | Some(Value::Null) => self.problem("_format_version", "required field missing"),
            Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => {}
            Some(Value::String(_)) => self.problem(
                "_format_version",
                format!("expected one of: {}", FORMAT_VERSIONS.join(", ")),
            ),
            Some(_) => self.problem("_format_version", "expected a string"),
        }
        // Parents first, so nested and top-level children find them by name either way.
        let order: [(&str, Kind); 9] = [
            ("upstreams", Kind::Upstream),
            ("targets", Kind::Target),
            ("services", Kind::Service),
            ("routes", Kind::Route),
            ("consumers", Kind::Consumer),
            ("jwt_secrets", Kind::JwtSecret),
            ("keyauth_credentials", Kind::KeyauthCredential),
            ("acls", Kind::Acl),
            ("plugins", Kind::Plugin),
        ];
        for (key, value) in top {
            let known = order.iter().any(|(k, _)| k == key);
            match key.as_str() {
                "_format_version" | "_transform" | "_comment" | "_ignore" | "_info"
                | "_konnect" | "_workspace" => {}
                _ if known => {}
                k if unmanaged(k) => {
                    let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
                    if !empty {
                        self.problem(k, "setup kong does not manage this entity type");
                    }
                }
                k => self.problem(k, "unknown field"),
            }
        }
        for (key, kind) in order {
            match top.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        self.entity(kind, item, format!("{key}[{i}]"), None);
                    }
                }
                Some(_) => self.problem(key, "expected an array"),
            }
        }
    }

    /// One entity at `path`, nested under `parent` (kind, name) when given.
    fn entity(&mut self, kind: Kind, v: &Value, path: String, parent: Option<(Kind, String)>) {
        let Value::Object(obj) = v else {
            self.problem(&path, "expected a record");
            return;
        };
        let mut fields = obj.clone();
        for f in ["_comment", "_ignore", "created_at", "updated_at"] {
            fields.remove(f);
        }
        let nested: Vec<(&'static str, Kind, Value)> = children(kind)
            .iter()
            .filter_map(|(name, child)| fields.remove(*name).map(|v| (*name, *child, v)))
            .collect();
        let id = match fields.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.problem(&format!("{path}.id"), "expected a string");
                None
            }
        };
        // References: nested under the parent, or written out.
        let mut refs = Vec::new();
        for (field, target) in references(kind) {
            let given = fields.remove(*field);
            if let Some((pkind, pname)) = &parent
                && pkind == target
            {
                refs.push((*field, *target, RawRef::Parent(pname.clone())));
                continue;
            }
            match given {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => refs.push((
                    *field,
                    *target,
                    RawRef::Given {
                        field,
                        value: s.clone(),
                    },
                )),
                Some(Value::Object(o)) => {
                    let value = ["id", "name", "username"]
                        .iter()
                        .find_map(|k| o.get(*k).and_then(Value::as_str));
                    match value {
                        Some(s) if o.len() == 1 => refs.push((
                            *field,
                            *target,
                            RawRef::Given {
                                field,
                                value: s.to_owned(),
                            },
                        )),
                        _ => self.problem(
                            &format!("{path}.{field}"),
                            "expected a name, an id, or {id: ...} / {name: ...}",
                        ),
                    }
                }
                Some(_) => self.problem(&format!("{path}.{field}"), "expected a reference"),
            }
        }
        if matches!(
            kind,
            Kind::Target | Kind::JwtSecret | Kind::KeyauthCredential | Kind::Acl
        ) && refs.is_empty()
        {
            let (field, _) = references(kind)[0];
            self.problem(&format!("{path}.{field}"), "required field missing");
        }
        // The natural key.
        let kf = key_field(kind);
        let key_value = match fields.get(kf) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            None | Some(Value::Null) => {
                self.problem(
                    &path,
                    format!(
                        "setup kong matches {} by {kf}; this entry has no {kf}",
                        collection(kind)
                    ),
                );
                None
            }
            Some(_) => {
                self.problem(&format!("{path}.{kf}"), "expected a non-empty string");
                None
            }
        };
        if kind == Kind::Service {
            // The schema's own `url` shorthand rule.
            if let Some(pre) = EntityKind::Services.schema().pre {
                let mut errs = FieldErrors::default();
                pre(&mut fields, &mut errs);
                if !errs.is_empty() {
                    self.problem(&path, errs.message());
                }
            }
        }
        let mut key_value = key_value;
        if kind == Kind::Target
            && let Some(t) = &key_value
            && let Some(normal) = validators::normalize_target(t)
        {
            fields.insert("target".to_owned(), Value::String(normal.clone()));
            key_value = Some(normal);
        }
        self.collect_secrets(kind, &fields);
        let name = key_value.clone().unwrap_or_default();
        if let Some(key_value) = key_value {
            self.pending.push(Pending {
                desired: Desired {
                    kind,
                    key: Key::Name(key_value),
                    label: String::new(),
                    path: path.clone(),
                    fields,
                    id,
                    parent: None,
                    scope: Scope::default(),
                    translated_from: None,
                },
                refs,
            });
        }
        for (child_key, child_kind, value) in nested {
            let cpath = format!("{path}.{child_key}");
            if kind == Kind::Upstream && child_kind == Kind::Target {
                self.managed_targets.insert(name.clone());
            }
            if kind == Kind::Consumer && child_kind != Kind::Plugin {
                self.managed_credentials.insert((name.clone(), child_kind));
            }
            match value {
                Value::Null => {}
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.entity(
                            child_kind,
                            item,
                            format!("{cpath}[{i}]"),
                            Some((kind, name.clone())),
                        );
                    }
                }
                _ => self.problem(&cpath, "expected an array"),
            }
        }
    }

    /// Remember the secret values of an entity's fields.
    fn collect_secrets(&mut self, kind: Kind, fields: &Map<String, Value>) {
        fn walk(v: &Value, under_secret: bool, secrets: &mut Secrets) {
            match v {
                Value::String(s) if under_secret => secrets.add(s),
                Value::Array(items) => items.iter().for_each(|i| walk(i, under_secret, secrets)),
                Value::Object(m) => {
                    for (k, sub) in m {
                        walk(sub, under_secret || is_secret_name(k), secrets);
                    }
                }
                _ => {}
            }
        }
        for (k, v) in fields {
            // A jwt credential's key is the `iss` every token carries in clear: it names the
            // credential in output; its secret (and a key-auth key) are secrets.
            let secret = is_secret_name(k) && !(kind == Kind::JwtSecret && k == "key");
            walk(v, secret, &mut self.secrets);
        }
    }

    /// Resolve references, compute keys and labels, check uniqueness.
    fn finish(mut self) -> (DesiredState, Vec<String>) {
        // Names and file ids per kind.
        let mut names: HashMap<Kind, BTreeSet<String>> = HashMap::new();
        let mut ids: HashMap<(Kind, String), String> = HashMap::new();
        for p in &self.pending {
            if let Key::Name(n) = &p.desired.key {
                names.entry(p.desired.kind).or_default().insert(n.clone());
                if let Some(id) = &p.desired.id {
                    ids.insert((p.desired.kind, id.clone()), n.clone());
                }
            }
        }
        let mut entities = Vec::with_capacity(self.pending.len());
        let mut keyauth_seen: HashMap<String, usize> = HashMap::new();
        for p in std::mem::take(&mut self.pending) {
            let mut d = p.desired;
            let mut resolved: HashMap<&'static str, String> = HashMap::new();
            let mut ok = true;
            for (field, target, r) in p.refs {
                let name = match r {
                    RawRef::Parent(n) => Some(n),
                    RawRef::Given { field, value } => {
                        let found = ids.get(&(target, value.clone())).cloned().or_else(|| {
                            names
                                .get(&target)
                                .filter(|n| n.contains(&value))
                                .map(|_| value.clone())
                        });
                        if found.is_none() {
                            self.problems.push(format!(
                                "{}.{field}: invalid reference '{field}: {value}' (no such entry in '{}')",
                                d.path,
                                collection(target)
                            ));
                        }
                        found
                    }
                };
                match name {
                    Some(n) => {
                        resolved.insert(field, n);
                    }
                    None => ok = false,
                }
            }
            if !ok {
                continue;
            }
            let Key::Name(own) = d.key.clone() else {
                continue;
            };
            let consumer = resolved.get("consumer").cloned();
            match d.kind {
                Kind::Upstream | Kind::Service | Kind::Consumer => d.label = own,
                Kind::Route => {
                    d.parent = resolved.get("service").cloned();
                    d.label = own;
                }
                Kind::Target => {
                    let upstream = resolved.get("upstream").cloned().unwrap_or_default();
                    self.managed_targets.insert(upstream.clone());
                    d.label = format!("{upstream}/{own}");
                    d.key = Key::Target {
                        upstream: upstream.clone(),
                        target: own,
                    };
                    d.parent = Some(upstream);
                }
                Kind::JwtSecret | Kind::KeyauthCredential | Kind::Acl => {
                    let c = consumer.clone().unwrap_or_default();
                    self.managed_credentials.insert((c.clone(), d.kind));
                    d.label = match d.kind {
                        Kind::KeyauthCredential => {
                            // Never the key itself: it is the credential.
                            let n = keyauth_seen.entry(c.clone()).or_insert(0);
                            *n += 1;
                            format!("{c}/key-auth#{n}")
                        }
                        _ => format!("{c}/{own}"),
                    };
                    d.key = match d.kind {
                        Kind::Acl => Key::Acl {
                            consumer: Ref::Name(c.clone()),
                            group: own,
                        },
                        _ => Key::Credential(own),
                    };
                    d.parent = Some(c);
                }
                Kind::Plugin => {
                    d.scope = Scope {
                        service: resolved.get("service").cloned(),
                        route: resolved.get("route").cloned(),
                        consumer,
                    };
                    d.label = format!("{own} ({})", d.scope.describe());
                    d.key = Key::plugin(&own, &d.scope);
                }
            }
            entities.push(d);
        }
        // Uniqueness of the natural keys.
        let mut seen: HashMap<(Kind, Key), String> = HashMap::new();
        for d in &entities {
            if let Some(first) = seen.insert((d.kind, d.key.clone()), d.path.clone()) {
                self.problems.push(format!(
                    "{}: the same {} as {first} ({})",
                    d.path, d.kind, d.label
                ));
            }
        }
        self.problems.sort();
        let state = DesiredState {
            path: String::new(),
            entities,
            managed_targets: self.managed_targets,
            managed_credentials: self.managed_credentials,
            secrets: self.secrets,
        };
        (state, self.problems)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<DesiredState, Vec<String>> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match from_text("f.yml", text, &env) {
            Ok(s) => Ok(s),
            Err(SetupKongError::InvalidFile { problems, .. }) => Err(problems),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    fn find<'a>(s: &'a DesiredState, kind: Kind, label: &str) -> &'a Desired {
        s.entities
            .iter()
            .find(|d| d.kind == kind && d.label == label)
            .unwrap_or_else(|| {
                panic!(
                    "no {kind} {label} in {:?}",
                    s.entities.iter().map(|d| &d.label).collect::<Vec<_>>()
                )
            })
    }

    #[test]
    fn nesting_references_and_fields() {
        let s = load_str(
            r#"
_format_version: "3.0"
_info: { select_tags: [a] }
_konnect: { control_plane_name: cp }
_workspace: default
upstreams:
  - name: auth-upstream
    healthchecks: { active: { http_path: /health } }
    targets:
      - target: 10.0.0.1
services:
  - name: auth
    url: https://auth-upstream/v1
    _comment: nested
    routes:
      - name: auth-route
        paths: [/api/auth]
        plugins:
          - name: cors
    plugins:
      - name: jwt
        config: { claims_to_verify: [exp] }
  - id: 0b8a5b8e-1111-4a4a-8b8b-000000000001
    name: billing
    host: billing.internal
routes:
  - name: by-id
    service: 0b8a5b8e-1111-4a4a-8b8b-000000000001
    paths: [/b]
  - name: loose
    paths: [/l]
consumers:
  - username: api_user
    jwt_secrets:
      - key: issuer_key
        secret: ${{ env "JWT_SECRET" }}
    keyauth_credentials:
      - key: k-one
plugins:
  - name: prometheus
  - name: rate-limiting
    consumer: { username: api_user }
    route: auth-route
    config: { minute: 5 }
"#,
            &[("JWT_SECRET", "s3cr3t-value")],
        )
        .unwrap();
        let up = find(&s, Kind::Upstream, "auth-upstream");
        assert_eq!(
            Value::Object(up.fields.clone()),
            json!({"name": "auth-upstream", "healthchecks": {"active": {"http_path": "/health"}}})
        );
        let t = find(&s, Kind::Target, "auth-upstream/10.0.0.1:8000");
        assert_eq!(t.fields["target"], "10.0.0.1:8000");
        assert_eq!(t.parent.as_deref(), Some("auth-upstream"));
        let svc = find(&s, Kind::Service, "auth");
        assert_eq!(
            Value::Object(svc.fields.clone()),
            json!({"name": "auth", "protocol": "https", "host": "auth-upstream", "port": 443, "path": "/v1"})
        );
        assert_eq!(
            find(&s, Kind::Route, "auth-route").parent.as_deref(),
            Some("auth")
        );
        assert_eq!(
            find(&s, Kind::Route, "by-id").parent.as_deref(),
            Some("billing")
        );
        assert_eq!(find(&s, Kind::Route, "loose").parent, None);
        let billing = find(&s, Kind::Service, "billing");
        assert_eq!(
            billing.id.as_deref(),
            Some("0b8a5b8e-1111-4a4a-8b8b-000000000001")
        );
        assert!(!billing.fields.contains_key("id"));
        find(&s, Kind::Plugin, "cors (route auth-route)");
        find(&s, Kind::Plugin, "jwt (service auth)");
        find(&s, Kind::Plugin, "prometheus (global)");
        let rl = find(
            &s,
            Kind::Plugin,
            "rate-limiting (route auth-route, consumer api_user)",
        );
        assert_eq!(
            Value::Object(rl.fields.clone()),
            json!({"name": "rate-limiting", "config": {"minute": 5}})
        );
        let jwt = find(&s, Kind::JwtSecret, "api_user/issuer_key");
        assert_eq!(jwt.fields["secret"], "s3cr3t-value");
        assert_eq!(jwt.key, Key::Credential("issuer_key".into()));
        let ka = find(&s, Kind::KeyauthCredential, "api_user/key-auth#1");
        assert_eq!(ka.key, Key::Credential("k-one".into()));
        // Secrets: the env value, the jwt secret, the key-auth key; not the jwt key.
        assert_eq!(
            s.secrets.redact("s3cr3t-value k-one issuer_key"),
            "**** **** issuer_key"
        );
        assert!(s.managed_targets.contains("auth-upstream"));
        assert!(
            s.managed_credentials
                .contains(&("api_user".to_owned(), Kind::JwtSecret))
        );
        assert!(
            !s.managed_credentials
                .contains(&("api_user".to_owned(), Kind::Acl))
        );
    }

    #[test]
    fn placeholders() {
        let s = load_str(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://${{ env \"HOST\" }}:${{env \"PORT\"}}/x\n",
            &[("HOST", "h.internal"), ("PORT", "8080")],
        )
        .unwrap();
        assert_eq!(s.entities[0].fields["host"], "h.internal");
        assert_eq!(s.entities[0].fields["port"], 8080);
        let e = load_str(
            "_format_version: \"3.0\"\nconsumers:\n  - username: u\n    jwt_secrets:\n      - key: k\n        secret: ${{ env \"NOPE_SECRET\" }}\n      - key: k2\n        secret: ${{ env \"NOPE_SECRET\" }}\n    custom_id: ${{ env \"ALSO_MISSING\" }}\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![
                "environment variable ALSO_MISSING is not set (used at consumers[0].custom_id)",
                "environment variable NOPE_SECRET is not set (used at consumers[0].jwt_secrets[0].secret)",
            ]
        );
        let e = load_str(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    host: ${{ env \"H\" | default \"x\" }}\n",
            &[("H", "h")],
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![
                "services[0].host: unsupported placeholder (only ${{ env \"NAME\" }} is supported)"
            ]
        );
    }

    #[test]
    fn problems_are_all_reported_with_paths() {
        let e = load_str(
            r#"
_format_version: "3.0"
foo: 1
certificates: [{cert: x}]
services:
  - host: nameless
  - name: a
    host: a
  - name: a
    host: b
routes:
  - name: r
    service: ghost
    paths: [/]
consumers:
  - custom_id: "7"
  - username: u
    keyauth_credentials:
      - tags: [no-key]
jwt_secrets:
  - key: j
"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![
                "certificates: setup kong does not manage this entity type",
                "consumers[0]: setup kong matches consumers by username; this entry has no username",
                "consumers[1].keyauth_credentials[0]: setup kong matches keyauth_credentials by key; this entry has no key",
                "foo: unknown field",
                "jwt_secrets[0].consumer: required field missing",
                "routes[0].service: invalid reference 'service: ghost' (no such entry in 'services')",
                "services[0]: setup kong matches services by name; this entry has no name",
                "services[2]: the same service as services[1] (a)",
            ]
        );
        assert_eq!(
            load_str("services: []", &[]).unwrap_err(),
            vec!["_format_version: required field missing"]
        );
        assert_eq!(
            load_str("", &[]).unwrap_err(),
            vec!["expected a declarative configuration"]
        );
    }

    #[test]
    fn file_errors_name_the_file() {
        let err =
            from_text("conf/kong.yml", "_format_version: \"9\"", &HashMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conf/kong.yml: _format_version: expected one of: 1.1, 2.1, 3.0"
        );
    }
}
