//! `jwt-claim-headers` (gwctl's own, CONTRACT.md; priority 1449, right after `jwt`): copies
//! claims of the token that `jwt` VERIFIED to upstream headers, e.g. `{sub: auth-user-identifier}`.
//!
//! It replaces a Lua post-function that re-decoded the token without checking it. The configured
//! headers are always removed from the client's request first, so a client can never forge
//! them: without a verified token (no `jwt` on the route, an anonymous fallback) they are simply
//! absent. Strings are sent as they are, numbers and booleans as their JSON text, objects and
//! arrays as compact JSON; a missing (or `null`) claim leaves its header absent.
//!
//! Priority 1449: below jwt (1450) so the claims exist, above every other bundled plugin that
//! reads request headers (oauth2 1400, key-auth 1250, request-transformer 801, ...), so those
//! see the claim headers.

use std::sync::Arc;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::jwt::JwtClaims;
use super::{BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};

/// The plugin kind.
pub struct Kind;

/// `config` of jwt-claim-headers.
#[derive(Debug, Clone, Deserialize)]
pub struct JwtClaimHeadersConfig {
    /// Claim name -> upstream header name.
    pub claims: std::collections::BTreeMap<String, String>,
}

fn header_name(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if HeaderName::from_bytes(s.as_bytes()).is_ok() => Ok(()),
        Some(_) => {
            Err("bad header name, allowed characters are A-Z, a-z, 0-9, '_', and '-'".to_owned())
        }
        None => Ok(()),
    }
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "jwt-claim-headers"
    }
    fn priority(&self) -> i64 {
        1449
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![(
                "claims",
                Field::map(
                    Field::string().len_min(1),
                    Field::string().required().validator(header_name),
                )
                .required(),
            )],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: JwtClaimHeadersConfig = typed_config(plugin)?;
        let claims = conf
            .claims
            .into_iter()
            .map(|(claim, header)| {
                HeaderName::from_bytes(header.as_bytes())
                    .map(|h| (claim, h))
                    .map_err(|_| format!("jwt-claim-headers: bad header name {header:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(ClaimHeaders { claims }))
    }
}

struct ClaimHeaders {
    claims: Vec<(String, HeaderName)>,
}

/// A claim as header text: strings as they are, everything else as compact JSON.
fn header_text(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

#[async_trait]
impl Handler for ClaimHeaders {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        for (_, h) in &self.claims {
            ctx.headers.remove(h);
        }
        let Some(JwtClaims(claims)) = ctx.data.get::<JwtClaims>().cloned() else {
            return Flow::Continue;
        };
        for (claim, h) in &self.claims {
            if let Some(v) = claims.get(claim).and_then(header_text) {
                ctx.headers.append(h.clone(), v);
            }
        }
        Flow::Continue
    }
}
