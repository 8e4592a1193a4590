//! What every authentication plugin shares (kong-compat §4.0): attaching the consumer and its
//! upstream headers, the `anonymous` fallback, and the "already authenticated" skip of a logical
//! OR between auth plugins.

use http::header::{HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use uuid::Uuid;

use super::Flow;
use super::ctx::{Authenticated, Credential, Ctx};
use crate::model::Consumer;
use crate::model::schema::{EntityKind, Validated};
use crate::proxy::body::ProxyBody;
use crate::proxy::respond;
use crate::store::Tables;

/// `X-Consumer-ID`.
pub static X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
/// `X-Consumer-Custom-ID`.
pub static X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
/// `X-Consumer-Username`.
pub static X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
/// `X-Credential-Identifier`.
pub static X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
/// `X-Anonymous-Consumer`.
pub static X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// The consumer with primary key `id`.
pub fn consumer_by_id(tables: &Tables, id: Uuid) -> Option<Consumer> {
    match tables.get(EntityKind::Consumers, id).map(|e| &**e) {
        Some(Validated::Consumer(c)) => Some(c.clone()),
        _ => None,
    }
}

/// The consumer named by an `anonymous` setting: an id, else a username.
pub fn consumer_by_id_or_username(tables: &Tables, key: &str) -> Option<Consumer> {
    if let Ok(id) = Uuid::parse_str(key)
        && let Some(c) = consumer_by_id(tables, id)
    {
        return Some(c);
    }
    tables
        .by_field(EntityKind::Consumers, "username", key)
        .and_then(|id| consumer_by_id(tables, id))
}

/// Whether an auth plugin should not run at all: a preflight request with
/// `run_on_preflight=false`, or (with `anonymous` set) a request another auth plugin already
/// authenticated with a credential (a logical OR between auth plugins).
pub fn skip(ctx: &Ctx, run_on_preflight: bool, anonymous: Option<&str>) -> bool {
    if !run_on_preflight && ctx.method == Method::OPTIONS {
        return true;
    }
    anonymous.is_some()
        && ctx
            .auth
            .as_ref()
            .is_some_and(|a| a.credential.is_some() && !a.anonymous)
}

/// Attach `consumer` (and the credential it used) to the request and set Kong's upstream
/// headers: each `X-Consumer-*` header only when the value exists (cleared otherwise, so a
/// client cannot forge them), `X-Anonymous-Consumer: true` only for the anonymous consumer.
pub fn attach(ctx: &mut Ctx, consumer: Consumer, credential: Option<Credential>) {
    let anonymous = credential.is_none();
    let h = &mut ctx.headers;
    let mut id = uuid::Uuid::encode_buffer();
    let id = consumer.id.hyphenated().encode_lower(&mut id);
    set_or_clear(h, &X_CONSUMER_ID, Some(id));
    set_or_clear(h, &X_CONSUMER_CUSTOM_ID, consumer.custom_id.as_deref());
    set_or_clear(h, &X_CONSUMER_USERNAME, consumer.username.as_deref());
    set_or_clear(
        h,
        &X_CREDENTIAL_IDENTIFIER,
        credential.as_ref().map(|c| c.identifier.as_str()),
    );
    if anonymous {
        h.insert(
            X_ANONYMOUS_CONSUMER.clone(),
            HeaderValue::from_static("true"),
        );
    } else {
        h.remove(&X_ANONYMOUS_CONSUMER);
    }
    ctx.auth = Some(Authenticated {
        consumer,
        credential,
        anonymous,
    });
}

/// An auth failure with `anonymous` configured: attach the anonymous consumer and go on
/// ([`Flow::Continue`]), or answer 500 when it does not exist (Kong's message).
pub fn fall_back_to_anonymous(ctx: &mut Ctx, anonymous: &str) -> Flow {
    match consumer_by_id_or_username(&ctx.snapshot.tables, anonymous) {
        Some(c) => {
            attach(ctx, c, None);
            Flow::Continue
        }
        None => Flow::Respond(internal_error(
            ctx,
            &format!("anonymous consumer {anonymous} is configured but doesn't exist"),
        )),
    }
}

/// A 500 in Kong's error shape (the message is logged, as Kong does, and also sent: Kong sends
/// it for a missing anonymous consumer).
pub fn internal_error(ctx: &Ctx, message: &str) -> Response<ProxyBody> {
    tracing::error!(request_id = %ctx.request_id, "{message}");
    respond::error_with(
        StatusCode::INTERNAL_SERVER_ERROR,
        message,
        &ctx.request_id,
        ctx.headers.get(http::header::ACCEPT),
    )
}

fn set_or_clear(h: &mut http::HeaderMap, name: &HeaderName, value: Option<&str>) {
    match value.and_then(|v| HeaderValue::from_str(v).ok()) {
        Some(v) => {
            h.insert(name.clone(), v);
        }
        None => {
            h.remove(name);
        }
    }
}
