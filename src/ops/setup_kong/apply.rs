//! Sending the plan to the Admin API, one request per change, in the plan's order, stopping at
//! the first error.
//!
//! - Creates of named entities (upstreams, services, routes, consumers) are `PUT /<collection>/
//!   {name}`: Kong's upsert by endpoint key, so a create that raced another writer replaces
//!   rather than duplicates. Targets and credentials are created under their parent
//!   (`POST /upstreams/{id}/targets`, `POST /consumers/{id}/jwt`), plugins with `POST /plugins`
//!   and their scope as `{"id": ...}` references.
//! - Updates are `PATCH` by id with only the fields that differ: the entity keeps its id and
//!   everything the file does not set (Kong merges a PATCHed record such as a plugin's
//!   `config` field by field).
//! - Deletes are `DELETE` by id. Credentials are addressed by id through their top-level
//!   collections (`/jwts/{id}`, `/key-auths/{id}`): a key-auth key is the credential itself and
//!   never goes into a URL.

use std::collections::HashMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{AdminClient, ApiError};
use super::diff::Secrets;
use super::plan::{Key, Plan, Step};
use super::state::Existing;
use super::{Change, Kind, Outcome, Reporter, SetupKongError};

/// What stays unescaped in a path segment: Kong's name characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The ids of named entities, from the server's state and from what this run created.
struct Ids(HashMap<(Kind, String), String>);

impl Ids {
    fn get(&self, kind: Kind, name: &str, method: &Method, path: &str) -> Result<String, ApiError> {
        self.0
            .get(&(kind, name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError {
                method: method.to_string(),
                path: path.to_owned(),
                status: None,
                message: format!("no id known for {kind} {name}"),
            })
    }
}

/// The URL path of an existing entity.
fn entity_path(e: &Existing) -> String {
    let id = segment(&e.id);
    match e.kind {
        Kind::Upstream => format!("/upstreams/{id}"),
        Kind::Target => format!(
            "/upstreams/{}/targets/{id}",
            segment(e.parent_id.as_deref().unwrap_or_default())
        ),
        Kind::Service => format!("/services/{id}"),
        Kind::Route => format!("/routes/{id}"),
        Kind::Consumer => format!("/consumers/{id}"),
        Kind::JwtSecret => format!("/jwts/{id}"),
        Kind::KeyauthCredential => format!("/key-auths/{id}"),
        Kind::Acl => format!("/acls/{id}"),
        Kind::Plugin => format!("/plugins/{id}"),
    }
}

fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Upstream => "upstreams",
        Kind::Service => "services",
        Kind::Route => "routes",
        Kind::Consumer => "consumers",
        Kind::Target => "targets",
        Kind::JwtSecret => "jwt",
        Kind::KeyauthCredential => "key-auth",
        Kind::Acl => "acls",
        Kind::Plugin => "plugins",
    }
}

/// Send every step of `plan`; returns the changes applied, or the first failure with what was
/// applied before it.
pub(crate) async fn apply(
    client: &AdminClient,
    plan: &Plan<'_>,
    secrets: &Secrets,
    reporter: &dyn Reporter,
) -> Result<Vec<Change>, SetupKongError> {
    if plan.steps.is_empty() {
        return Ok(Vec::new());
    }
    let n = plan.steps.len();
    let step = format!(
        "applying {n} change{} to {}",
        if n == 1 { "" } else { "s" },
        client.shown()
    );
    reporter.started(&step);
    let mut ids = Ids(plan
        .current
        .entities
        .iter()
        .filter_map(|e| match &e.key {
            Key::Name(name) => Some(((e.kind, name.clone()), e.id.clone())),
            _ => None,
        })
        .collect());
    let mut applied = Vec::with_capacity(n);
    for s in &plan.steps {
        let change = plan.change(s, secrets);
        match send(client, plan, s, &mut ids).await {
            Ok(()) => {
                tracing::debug!(change = %change, "applied");
                applied.push(change);
            }
            Err(error) => {
                reporter.finished(&step, Outcome::Failed);
                return Err(SetupKongError::Apply {
                    change: Box::new(change),
                    error: error.redacted(secrets),
                    applied,
                });
            }
        }
    }
    reporter.finished(&step, Outcome::Ok);
    Ok(applied)
}

async fn send(
    client: &AdminClient,
    plan: &Plan<'_>,
    step: &Step,
    ids: &mut Ids,
) -> Result<(), ApiError> {
    match step {
        Step::Create { want } => {
            let d = &plan.desired.entities[*want];
            let mut body = d.fields.clone();
            if let Some(id) = &d.id {
                body.insert("id".to_owned(), Value::from(id.as_str()));
            }
            let (method, path) = match d.kind {
                Kind::Upstream | Kind::Service | Kind::Route | Kind::Consumer => {
                    let Key::Name(name) = &d.key else {
                        return Err(internal(d.kind));
                    };
                    // A name that looks like a UUID would address an id: POST it instead.
                    if uuid::Uuid::parse_str(name).is_ok() {
                        (Method::POST, format!("/{}", collection(d.kind)))
                    } else {
                        (
                            Method::PUT,
                            format!("/{}/{}", collection(d.kind), segment(name)),
                        )
                    }
                }
                Kind::Target => {
                    let path = "/upstreams/{upstream}/targets";
                    let uid = ids.get(
                        Kind::Upstream,
                        d.parent.as_deref().unwrap_or_default(),
                        &Method::POST,
                        path,
                    )?;
                    (
                        Method::POST,
                        format!("/upstreams/{}/targets", segment(&uid)),
                    )
                }
                Kind::JwtSecret | Kind::KeyauthCredential | Kind::Acl => {
                    let path = format!("/consumers/{{consumer}}/{}", collection(d.kind));
                    let cid = ids.get(
                        Kind::Consumer,
                        d.parent.as_deref().unwrap_or_default(),
                        &Method::POST,
                        &path,
                    )?;
                    (
                        Method::POST,
                        format!("/consumers/{}/{}", segment(&cid), collection(d.kind)),
                    )
                }
                Kind::Plugin => (Method::POST, "/plugins".to_owned()),
            };
            if d.kind == Kind::Route
                && let Some(service) = &d.parent
            {
                let sid = ids.get(Kind::Service, service, &method, &path)?;
                body.insert("service".to_owned(), json!({ "id": sid }));
            }
            if d.kind == Kind::Plugin {
                for (field, kind, name) in [
                    ("service", Kind::Service, &d.scope.service),
                    ("route", Kind::Route, &d.scope.route),
                    ("consumer", Kind::Consumer, &d.scope.consumer),
                ] {
                    if let Some(name) = name {
                        let id = ids.get(kind, name, &method, &path)?;
                        body.insert(field.to_owned(), json!({ "id": id }));
                    }
                }
            }
            let created = client
                .send(method, &path, Some(&Value::Object(body)))
                .await?;
            if let (Key::Name(name), Some(id)) = (&d.key, created.get("id").and_then(Value::as_str))
            {
                ids.0.insert((d.kind, name.clone()), id.to_owned());
            }
            Ok(())
        }
        Step::Update { want, have, diffs } => {
            let d = &plan.desired.entities[*want];
            let e = &plan.current.entities[*have];
            let path = entity_path(e);
            let mut body = Map::new();
            for field in Step::changed_fields(diffs) {
                let value = match (d.kind, field.as_str()) {
                    (Kind::Route, "service") => {
                        let name = d.parent.as_deref().unwrap_or_default();
                        json!({ "id": ids.get(Kind::Service, name, &Method::PATCH, &path)? })
                    }
                    (Kind::JwtSecret | Kind::KeyauthCredential, "consumer") => {
                        let name = d.parent.as_deref().unwrap_or_default();
                        json!({ "id": ids.get(Kind::Consumer, name, &Method::PATCH, &path)? })
                    }
                    _ => d.fields.get(&field).cloned().unwrap_or(Value::Null),
                };
                body.insert(field, value);
            }
            client
                .send(Method::PATCH, &path, Some(&Value::Object(body)))
                .await
                .map(|_| ())
        }
        Step::Delete { have } => {
            let e = &plan.current.entities[*have];
            client
                .send(Method::DELETE, &entity_path(e), None)
                .await
                .map(|_| ())
        }
    }
}

/// Named kinds always carry a name key (the file loader makes them so).
fn internal(kind: Kind) -> ApiError {
    ApiError {
        method: String::new(),
        path: String::new(),
        status: None,
        message: format!("internal error: a {kind} without a name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_kong_names_readable() {
        assert_eq!(segment("auth-upstream_1.x~"), "auth-upstream_1.x~");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
