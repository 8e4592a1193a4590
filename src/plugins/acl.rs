//! `acl` (priority 950): allow or deny the authenticated consumer by its ACL groups (the `acls`
//! entities), after the auth plugins ran. Kong 3.9's handler:
//!
//! - no consumer and no authenticated groups: 401 `Unauthorized` (403 when a credential exists);
//! - the consumer's groups are used, except that groups an auth plugin authenticated
//!   ([`AuthenticatedGroups`]) replace them for the anonymous consumer (or always, with
//!   `always_use_authenticated_groups`);
//! - `allow`: blocked unless in one of the groups; `deny`: blocked when in one of them; blocked
//!   is 403 `You cannot consume this service`;
//! - allowed requests carry the groups upstream, comma-separated, in `X-Consumer-Groups`
//!   (`X-Authenticated-Groups` for authenticated groups) unless `hide_groups_header`. With
//!   `hide_groups_header` a client-sent header of that name is removed (Kong leaves it).

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{
    CheckFailure, EntityCheck, EntityKind, Field, Schema, Validated, is_nonempty,
};
use crate::proxy::respond;
use crate::store::Tables;

/// `X-Consumer-Groups`.
pub static X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");
/// `X-Authenticated-Groups`.
pub static X_AUTHENTICATED_GROUPS: HeaderName = HeaderName::from_static("x-authenticated-groups");

const ERR_FORBIDDEN: &str = "You cannot consume this service";

/// Groups an auth plugin authenticated for this request (Kong's `authenticated_groups`, set by
/// group-aware auth plugins such as ldap-auth); put in `Ctx::data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedGroups(pub Arc<[String]>);

/// The plugin kind.
pub struct Kind;

/// `config` of acl.
#[derive(Debug, Clone, Deserialize)]
pub struct AclConfig {
    /// Groups allowed (exclusive with `deny`).
    pub allow: Option<Vec<String>>,
    /// Groups denied (exclusive with `allow`).
    pub deny: Option<Vec<String>>,
    /// Do not send the groups header upstream.
    pub hide_groups_header: bool,
    /// Prefer authenticated groups even for a consumer with a credential.
    pub always_use_authenticated_groups: bool,
}

/// Kong's `only_one_of` and `at_least_one_of` over `config.allow` / `config.deny`.
fn allow_xor_deny(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let config = rec.get("config");
    let set = |f: &str| config.and_then(|c| c.get(f)).is_some_and(is_nonempty);
    match (set("allow"), set("deny")) {
        (true, true) => Err(CheckFailure::entity(
            "only one of these fields must be non-empty: 'config.allow', 'config.deny'",
        )),
        (false, false) => Err(CheckFailure::entity(
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        )),
        _ => Ok(()),
    }
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "acl"
    }
    fn priority(&self) -> i64 {
        950
    }
    fn allows_consumer(&self) -> bool {
        false
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                ("allow", Field::array(Field::string())),
                ("deny", Field::array(Field::string())),
                (
                    "hide_groups_header",
                    Field::boolean().required().default(json!(false)),
                ),
                (
                    "always_use_authenticated_groups",
                    Field::boolean().required().default(json!(false)),
                ),
            ],
        ))
        .required()
    }
    fn entity_checks(&self) -> Vec<EntityCheck> {
        vec![EntityCheck::Custom {
            fields: vec!["config"],
            check: allow_xor_deny,
        }]
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: AclConfig = typed_config(plugin)?;
        // Kong: a non-empty `deny` makes it a deny list, else `allow` is the allow list.
        let (mode, groups) = match conf.deny.as_ref().filter(|d| !d.is_empty()) {
            Some(d) => (Mode::Deny, d.clone()),
            None => (Mode::Allow, conf.allow.clone().unwrap_or_default()),
        };
        Ok(Arc::new(Acl {
            mode,
            groups,
            hide_groups_header: conf.hide_groups_header,
            always_use_authenticated_groups: conf.always_use_authenticated_groups,
        }))
    }
}

/// Whether the configured groups are an allow list or a deny list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `config.allow`.
    Allow,
    /// `config.deny`.
    Deny,
}

/// Whether groups `have` pass a `mode` list of `groups`.
pub fn allowed(mode: Mode, groups: &[String], have: &[String]) -> bool {
    let in_group = groups.iter().any(|g| have.contains(g));
    match mode {
        Mode::Allow => in_group,
        Mode::Deny => !in_group,
    }
}

/// The ACL groups of consumer `consumer`, in the order of their ids.
pub fn consumer_groups(tables: &Tables, consumer: uuid::Uuid) -> Vec<String> {
    let Some(ids) = tables.children(EntityKind::Acls, "consumer", consumer) else {
        return Vec::new();
    };
    ids.iter_after(None)
        .filter_map(|id| match tables.get(EntityKind::Acls, id).map(|e| &**e) {
            Some(Validated::Acl(a)) => Some(a.group.clone()),
            _ => None,
        })
        .collect()
}

struct Acl {
    mode: Mode,
    groups: Vec<String>,
    hide_groups_header: bool,
    always_use_authenticated_groups: bool,
}

#[async_trait]
impl Handler for Acl {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let has_credential = ctx.auth.as_ref().is_some_and(|a| a.credential.is_some());
        let authenticated = ctx.data.get::<AuthenticatedGroups>().cloned();
        let (groups, header) = match ctx.auth.as_ref().map(|a| a.consumer.id) {
            None => match authenticated {
                Some(AuthenticatedGroups(g)) => (g.to_vec(), &X_AUTHENTICATED_GROUPS),
                None if has_credential => return self.forbidden(ctx),
                None => {
                    return Flow::Respond(respond::error_with(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized",
                        &ctx.request_id,
                        ctx.headers.get(http::header::ACCEPT),
                    ));
                }
            },
            Some(consumer) => match authenticated {
                // Authenticated groups override the anonymous consumer's groups (or any
                // consumer's with `always_use_authenticated_groups`).
                Some(AuthenticatedGroups(g))
                    if !has_credential || self.always_use_authenticated_groups =>
                {
                    (g.to_vec(), &X_AUTHENTICATED_GROUPS)
                }
                _ => (
                    consumer_groups(&ctx.snapshot.tables, consumer),
                    &X_CONSUMER_GROUPS,
                ),
            },
        };
        if !allowed(self.mode, &self.groups, &groups) {
            return self.forbidden(ctx);
        }
        if self.hide_groups_header {
            ctx.headers.remove(header);
        } else if let Ok(v) = HeaderValue::from_str(&groups.join(", ")) {
            ctx.headers.insert(header.clone(), v);
        }
        Flow::Continue
    }
}

impl Acl {
    fn forbidden(&self, ctx: &Ctx) -> Flow {
        Flow::Respond(respond::error_with(
            StatusCode::FORBIDDEN,
            ERR_FORBIDDEN,
            &ctx.request_id,
            ctx.headers.get(http::header::ACCEPT),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{Ctx as SchemaCtx, validate_plugin};
    use crate::plugins::Registry;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn allow_and_deny_lists() {
        let list = s(&["admins", "ops"]);
        assert!(allowed(Mode::Allow, &list, &s(&["users", "ops"])));
        assert!(!allowed(Mode::Allow, &list, &s(&["users"])));
        assert!(!allowed(Mode::Allow, &list, &[]));
        assert!(!allowed(Mode::Deny, &list, &s(&["admins"])));
        assert!(allowed(Mode::Deny, &list, &s(&["users"])));
        assert!(allowed(Mode::Deny, &list, &[]));
        assert!(!allowed(Mode::Allow, &list, &s(&["Admins"])), "exact match");
    }

    #[test]
    fn exactly_one_of_allow_or_deny() {
        let reg = Registry::builtin();
        let ctx = SchemaCtx::new(0, &reg);
        let err = |config: Value| {
            let e = validate_plugin(&json!({"name": "acl", "config": config}), &ctx)
                .expect_err("refused");
            e.to_admin_body().to_string()
        };
        let both = err(json!({"allow": ["a"], "deny": ["b"]}));
        assert!(
            both.contains(r#""@entity":["only one of these fields must be non-empty: 'config.allow', 'config.deny'"]"#),
            "{both}"
        );
        assert!(err(json!({})).contains(
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
        ));
        assert!(err(json!({"allow": []})).contains("at least one of these fields"));
        let ok = validate_plugin(&json!({"name": "acl", "config": {"deny": ["x"]}}), &ctx).unwrap();
        assert_eq!(ok.config["hide_groups_header"], false);
        assert_eq!(ok.config["always_use_authenticated_groups"], false);
        assert_eq!(ok.config["allow"], Value::Null);
    }
}
