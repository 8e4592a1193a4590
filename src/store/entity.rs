//! What the store needs to know about each entity kind: primary key, unique keys, foreign keys
//! and their delete rules, endpoint keys, and the typed <-> JSON conversions.
//!
//! Both stores (memory and Postgres) and the Admin API read these tables, so a rule such as
//! "deleting a consumer deletes its credentials" is written once.

use serde_json::Value;
use uuid::Uuid;

use crate::model::schema::{EntityKind, Validated};

/// A validated entity of any kind (the store keeps these behind `Arc`).
pub type Entity = Validated;

/// What happens to children when their parent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// Children are deleted with the parent.
    Cascade,
    /// The parent cannot be deleted while children exist (Kong: routes of a service).
    Restrict,
}

/// A foreign key of an entity kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignDef {
    /// Field name in Kong's JSON (`service`).
    pub field: &'static str,
    /// The referenced kind.
    pub target: EntityKind,
    /// Delete rule.
    pub on_delete: OnDelete,
    /// Column in the Postgres table (`service_id`).
    pub column: &'static str,
    /// Whether the reference is required.
    pub required: bool,
}

/// A unique key of an entity kind (single field or composite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueDef {
    /// Fields making up the key, in Kong's (alphabetical) display order.
    pub fields: &'static [&'static str],
    /// The Postgres constraint (or unique index) enforcing it.
    pub constraint: &'static str,
}

/// A scalar column mirrored out of `data` in the Postgres table (for constraints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub column: &'static str,
    /// Field in the entity JSON.
    pub field: &'static str,
    /// `uuid` (a foreign key, read from `field.id`) or `text`.
    pub is_uuid: bool,
}

const fn fk(
    field: &'static str,
    target: EntityKind,
    on_delete: OnDelete,
    column: &'static str,
    required: bool,
) -> ForeignDef {
    ForeignDef {
        field,
        target,
        on_delete,
        column,
        required,
    }
}

/// Foreign keys of `kind`.
pub fn foreign_defs(kind: EntityKind) -> &'static [ForeignDef] {
    use EntityKind as K;
    use OnDelete::{Cascade, Restrict};
    const ROUTES: [ForeignDef; 1] = [fk("service", K::Services, Restrict, "service_id", false)];
    const TARGETS: [ForeignDef; 1] = [fk("upstream", K::Upstreams, Cascade, "upstream_id", true)];
    const PLUGINS: [ForeignDef; 3] = [
        fk("route", K::Routes, Cascade, "route_id", false),
        fk("service", K::Services, Cascade, "service_id", false),
        fk("consumer", K::Consumers, Cascade, "consumer_id", false),
    ];
    const CONSUMER_OWNED: [ForeignDef; 1] =
        [fk("consumer", K::Consumers, Cascade, "consumer_id", true)];
    match kind {
        K::Routes => &ROUTES,
        K::Targets => &TARGETS,
        K::Plugins => &PLUGINS,
        K::KeyauthCredentials | K::JwtSecrets | K::Acls => &CONSUMER_OWNED,
        K::Services | K::Upstreams | K::Consumers | K::CaCertificates => &[],
    }
}

/// Unique keys of `kind` (besides the primary key).
pub fn unique_defs(kind: EntityKind) -> &'static [UniqueDef] {
    use EntityKind as K;
    macro_rules! u {
        ($fields:expr, $c:expr) => {
            UniqueDef {
                fields: $fields,
                constraint: $c,
            }
        };
    }
    match kind {
        K::Services => &[u!(&["name"], "services_name_key")],
        K::Routes => &[u!(&["name"], "routes_name_key")],
        K::Upstreams => &[u!(&["name"], "upstreams_name_key")],
        K::Targets => &[u!(
            &["target", "upstream"],
            "targets_upstream_id_target_key"
        )],
        K::Consumers => &[
            u!(&["username"], "consumers_username_key"),
            u!(&["custom_id"], "consumers_custom_id_key"),
        ],
        K::Plugins => &[
            u!(&["instance_name"], "plugins_instance_name_key"),
            u!(
                &["consumer", "name", "route", "service"],
                "plugins_scope_key"
            ),
        ],
        K::KeyauthCredentials => &[u!(&["key"], "keyauth_credentials_key_key")],
        K::JwtSecrets => &[u!(&["key"], "jwt_secrets_key_key")],
        K::Acls => &[u!(&["consumer", "group"], "acls_consumer_id_group_key")],
        K::CaCertificates => &[u!(&["cert_digest"], "ca_certificates_cert_digest_key")],
    }
}

/// Scalar columns of the Postgres table besides `id` and `data`.
pub fn column_defs(kind: EntityKind) -> &'static [ColumnDef] {
    use EntityKind as K;
    macro_rules! t {
        ($c:expr, $f:expr) => {
            ColumnDef {
                column: $c,
                field: $f,
                is_uuid: false,
            }
        };
    }
    macro_rules! f {
        ($c:expr, $f:expr) => {
            ColumnDef {
                column: $c,
                field: $f,
                is_uuid: true,
            }
        };
    }
    match kind {
        K::Services | K::Upstreams => &[t!("name", "name")],
        K::Routes => &[t!("name", "name"), f!("service_id", "service")],
        K::Targets => &[f!("upstream_id", "upstream"), t!("target", "target")],
        K::Consumers => &[t!("username", "username"), t!("custom_id", "custom_id")],
        K::Plugins => &[
            t!("name", "name"),
            t!("instance_name", "instance_name"),
            f!("route_id", "route"),
            f!("service_id", "service"),
            f!("consumer_id", "consumer"),
        ],
        K::KeyauthCredentials | K::JwtSecrets => &[f!("consumer_id", "consumer"), t!("key", "key")],
        K::Acls => &[f!("consumer_id", "consumer"), t!("\"group\"", "group")],
        K::CaCertificates => &[t!("cert_digest", "cert_digest")],
    }
}

/// The field that identifies an entity in URLs besides its id (Kong's `endpoint_key`).
pub fn endpoint_key(kind: EntityKind) -> Option<&'static str> {
    use EntityKind as K;
    match kind {
        K::Services | K::Routes | K::Upstreams => Some("name"),
        K::Consumers => Some("username"),
        K::Targets => Some("target"),
        K::Plugins => Some("instance_name"),
        K::KeyauthCredentials | K::JwtSecrets => Some("key"),
        K::Acls => Some("group"),
        K::CaCertificates => None,
    }
}

/// Position of `kind` in [`EntityKind::ALL`] (table index).
pub fn kind_index(kind: EntityKind) -> usize {
    EntityKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

impl Validated {
    /// The entity's kind.
    pub fn kind(&self) -> EntityKind {
        match self {
            Self::Service(_) => EntityKind::Services,
            Self::Route(_) => EntityKind::Routes,
            Self::Upstream(_) => EntityKind::Upstreams,
            Self::Target(_) => EntityKind::Targets,
            Self::Consumer(_) => EntityKind::Consumers,
            Self::Plugin(_) => EntityKind::Plugins,
            Self::KeyauthCredential(_) => EntityKind::KeyauthCredentials,
            Self::JwtSecret(_) => EntityKind::JwtSecrets,
            Self::Acl(_) => EntityKind::Acls,
            Self::CaCertificate(_) => EntityKind::CaCertificates,
        }
    }

    /// The primary key.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Service(e) => e.id,
            Self::Route(e) => e.id,
            Self::Upstream(e) => e.id,
            Self::Target(e) => e.id,
            Self::Consumer(e) => e.id,
            Self::Plugin(e) => e.id,
            Self::KeyauthCredential(e) => e.id,
            Self::JwtSecret(e) => e.id,
            Self::Acl(e) => e.id,
            Self::CaCertificate(e) => e.id,
        }
    }

    /// The entity's tags.
    pub fn tags(&self) -> Option<&[String]> {
        match self {
            Self::Service(e) => e.tags.as_deref(),
            Self::Route(e) => e.tags.as_deref(),
            Self::Upstream(e) => e.tags.as_deref(),
            Self::Target(e) => e.tags.as_deref(),
            Self::Consumer(e) => e.tags.as_deref(),
            Self::Plugin(e) => e.tags.as_deref(),
            Self::KeyauthCredential(e) => e.tags.as_deref(),
            Self::JwtSecret(e) => e.tags.as_deref(),
            Self::Acl(e) => e.tags.as_deref(),
            Self::CaCertificate(e) => e.tags.as_deref(),
        }
    }

    /// The value of foreign key `field` (`None` when unset or not a foreign key of this kind).
    pub fn foreign(&self, field: &str) -> Option<Uuid> {
        let fk = match (self, field) {
            (Self::Route(e), "service") => e.service,
            (Self::Target(e), "upstream") => Some(e.upstream),
            (Self::Plugin(e), "route") => e.route,
            (Self::Plugin(e), "service") => e.service,
            (Self::Plugin(e), "consumer") => e.consumer,
            (Self::KeyauthCredential(e), "consumer") => Some(e.consumer),
            (Self::JwtSecret(e), "consumer") => Some(e.consumer),
            (Self::Acl(e), "consumer") => Some(e.consumer),
            _ => None,
        };
        fk.map(|f| f.id)
    }

    /// The value of a scalar text field used by keys (`name`, `username`, `key`, ...).
    pub fn text(&self, field: &str) -> Option<&str> {
        match (self, field) {
            (Self::Service(e), "name") => e.name.as_deref(),
            (Self::Route(e), "name") => e.name.as_deref(),
            (Self::Upstream(e), "name") => Some(&e.name),
            (Self::Target(e), "target") => Some(&e.target),
            (Self::Consumer(e), "username") => e.username.as_deref(),
            (Self::Consumer(e), "custom_id") => e.custom_id.as_deref(),
            (Self::Plugin(e), "name") => Some(&e.name),
            (Self::Plugin(e), "instance_name") => e.instance_name.as_deref(),
            (Self::KeyauthCredential(e), "key") => Some(&e.key),
            (Self::JwtSecret(e), "key") => Some(&e.key),
            (Self::Acl(e), "group") => Some(&e.group),
            (Self::CaCertificate(e), "cert_digest") => e.cert_digest.as_deref(),
            _ => None,
        }
    }

    /// Whether `field` is a foreign key of this entity's kind.
    pub fn is_foreign_field(&self, field: &str) -> bool {
        foreign_defs(self.kind()).iter().any(|d| d.field == field)
    }

    /// The index key of unique key `def`, or `None` when a single-field key is unset (NULLs are
    /// never equal). Composite keys treat an unset foreign key as a value of its own, like the
    /// plugins' scope key.
    pub fn unique_value(&self, def: &UniqueDef) -> Option<String> {
        let mut out = String::new();
        for (i, field) in def.fields.iter().enumerate() {
            if i > 0 {
                out.push('\u{1f}');
            }
            if self.is_foreign_field(field) {
                match self.foreign(field) {
                    Some(id) => out.push_str(&id.to_string()),
                    None if def.fields.len() > 1 => out.push('-'),
                    None => return None,
                }
            } else {
                out.push_str(self.text(field)?);
            }
        }
        Some(out)
    }

    /// Kong's rendering of a unique key for the 409 message and `fields`:
    /// (`{name="svc"}`, `{"name":"svc"}`).
    pub fn unique_display(&self, def: &UniqueDef) -> (String, Value) {
        let mut parts = Vec::new();
        let mut fields = serde_json::Map::new();
        for field in def.fields {
            if self.is_foreign_field(field) {
                match self.foreign(field) {
                    Some(id) => {
                        parts.push(format!("{field}={{id=\"{id}\"}}"));
                        fields.insert(
                            (*field).to_owned(),
                            serde_json::json!({ "id": id.to_string() }),
                        );
                    }
                    None => {
                        parts.push(format!("{field}=null"));
                        fields.insert((*field).to_owned(), Value::Null);
                    }
                }
            } else {
                let v = self.text(field).unwrap_or_default();
                parts.push(format!("{field}=\"{v}\""));
                fields.insert((*field).to_owned(), Value::from(v));
            }
        }
        (format!("{{{}}}", parts.join(",")), Value::Object(fields))
    }

    /// Kong's JSON for the entity.
    pub fn to_json(&self) -> Value {
        let r = match self {
            Self::Service(e) => serde_json::to_value(e),
            Self::Route(e) => serde_json::to_value(e),
            Self::Upstream(e) => serde_json::to_value(e),
            Self::Target(e) => serde_json::to_value(e),
            Self::Consumer(e) => serde_json::to_value(e),
            Self::Plugin(e) => serde_json::to_value(e),
            Self::KeyauthCredential(e) => serde_json::to_value(e),
            Self::JwtSecret(e) => serde_json::to_value(e),
            Self::Acl(e) => serde_json::to_value(e),
            Self::CaCertificate(e) => serde_json::to_value(e),
        };
        r.unwrap_or(Value::Null)
    }

    /// An entity from its stored JSON (already validated when it was written).
    pub fn from_json(kind: EntityKind, value: Value) -> Result<Self, serde_json::Error> {
        use serde_json::from_value as v;
        Ok(match kind {
            EntityKind::Services => Self::Service(Box::new(v(value)?)),
            EntityKind::Routes => Self::Route(Box::new(v(value)?)),
            EntityKind::Upstreams => Self::Upstream(Box::new(v(value)?)),
            EntityKind::Targets => Self::Target(v(value)?),
            EntityKind::Consumers => Self::Consumer(v(value)?),
            EntityKind::Plugins => Self::Plugin(Box::new(v(value)?)),
            EntityKind::KeyauthCredentials => Self::KeyauthCredential(v(value)?),
            EntityKind::JwtSecrets => Self::JwtSecret(v(value)?),
            EntityKind::Acls => Self::Acl(v(value)?),
            EntityKind::CaCertificates => Self::CaCertificate(v(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{Ctx, NoPlugins, validate};
    use serde_json::json;

    fn entity(kind: EntityKind, v: Value) -> Entity {
        validate(kind, &v, &Ctx::new(1_700_000_000_000, &NoPlugins)).unwrap()
    }

    #[test]
    fn keys_and_json_round_trip() {
        let s = entity(
            EntityKind::Services,
            json!({"name": "svc", "host": "example.com"}),
        );
        let def = unique_defs(EntityKind::Services)[0];
        assert_eq!(s.unique_value(&def).as_deref(), Some("svc"));
        assert_eq!(s.unique_display(&def).0, "{name=\"svc\"}");
        let back = Entity::from_json(EntityKind::Services, s.to_json()).unwrap();
        assert_eq!(back, s);

        let unnamed = entity(EntityKind::Services, json!({"host": "example.com"}));
        assert_eq!(unnamed.unique_value(&def), None);
    }

    #[test]
    fn composite_keys_include_unset_scopes() {
        let sid = Uuid::new_v4();
        let c = entity(EntityKind::Consumers, json!({"username": "bob"}));
        let a = entity(
            EntityKind::Acls,
            json!({"consumer": {"id": c.id().to_string()}, "group": "admins"}),
        );
        let def = unique_defs(EntityKind::Acls)[0];
        assert_eq!(
            a.unique_value(&def).unwrap(),
            format!("{}\u{1f}admins", c.id())
        );
        let t = entity(
            EntityKind::Targets,
            json!({"upstream": {"id": sid.to_string()}, "target": "10.0.0.1:80"}),
        );
        let (msg, fields) = t.unique_display(&unique_defs(EntityKind::Targets)[0]);
        assert_eq!(
            msg,
            format!("{{target=\"10.0.0.1:80\",upstream={{id=\"{sid}\"}}}}")
        );
        assert_eq!(fields["upstream"]["id"], json!(sid.to_string()));
    }
}
