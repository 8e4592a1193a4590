//! `request-size-limiting` (kong-compat §4.8, priority 951): rejects request bodies over
//! `allowed_payload_size` `size_unit`s. A numeric `Content-Length` is checked without reading
//! the body (so `Expect: 100-continue` clients get 417 before sending it); otherwise the body is
//! read, bounded by the limit, and kept for the upstream. With `require_content_length`, a
//! request with neither a valid `Content-Length` nor chunked framing gets 411.

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use serde::Deserialize;
use serde_json::json;

use super::{BodyError, BuildCtx, Ctx, Flow, Handler, PluginKind, RequestBody, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};
use crate::proxy::respond::{self, GatewayError};

/// Kong's size units, the default first.
pub const SIZE_UNITS: [&str; 3] = ["megabytes", "kilobytes", "bytes"];

/// The plugin kind.
pub struct Kind;

/// `config` of request-size-limiting.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestSizeLimitingConfig {
    /// The limit, in `size_unit`s.
    pub allowed_payload_size: Option<i64>,
    /// `megabytes` (2^20 bytes), `kilobytes` (2^10) or `bytes`.
    pub size_unit: String,
    /// Reject requests without a valid Content-Length (unless chunked) with 411.
    pub require_content_length: bool,
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "request-size-limiting"
    }
    fn priority(&self) -> i64 {
        951
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                ("allowed_payload_size", Field::integer().default(json!(128))),
                (
                    "size_unit",
                    Field::string()
                        .required()
                        .default(json!("megabytes"))
                        .one_of_str(&SIZE_UNITS),
                ),
                (
                    "require_content_length",
                    Field::boolean().required().default(json!(false)),
                ),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: RequestSizeLimitingConfig = typed_config(plugin)?;
        let factor: i128 = match conf.size_unit.as_str() {
            "bytes" => 1,
            "kilobytes" => 1 << 10,
            _ => 1 << 20,
        };
        // Kong multiplies a nil size (explicit null) and fails every request; null is read as
        // the default here.
        let allowed = i128::from(conf.allowed_payload_size.unwrap_or(128)) * factor;
        Ok(Arc::new(RequestSizeLimiting {
            allowed,
            require_content_length: conf.require_content_length,
        }))
    }
}

struct RequestSizeLimiting {
    /// The limit in bytes (negative when configured so: every request is over it).
    allowed: i128,
    require_content_length: bool,
}

const EXCEEDED: &str = "Request size limit exceeded";

impl RequestSizeLimiting {
    /// 413, or 417 when the client waits for `100 Continue` before sending the body.
    fn too_large(&self, ctx: &Ctx) -> Flow {
        let expects_continue = ctx
            .header(EXPECT.as_str())
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("100-continue"));
        let status = if expects_continue {
            StatusCode::EXPECTATION_FAILED
        } else {
            StatusCode::PAYLOAD_TOO_LARGE
        };
        error(ctx, status, EXCEEDED)
    }

    fn over(&self, len: u64) -> bool {
        i128::from(len) > self.allowed
    }
}

fn error(ctx: &Ctx, status: StatusCode, msg: &str) -> Flow {
    Flow::Respond(respond::error_with(
        status,
        msg,
        &ctx.request_id,
        ctx.headers.get(http::header::ACCEPT),
    ))
}

#[async_trait]
impl Handler for RequestSizeLimiting {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        if let Some(len) = ctx
            .header(CONTENT_LENGTH.as_str())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return if self.over(len) {
                self.too_large(ctx)
            } else {
                Flow::Continue
            };
        }
        if self.require_content_length && ctx.header(TRANSFER_ENCODING.as_str()) != Some("chunked")
        {
            return error(
                ctx,
                StatusCode::LENGTH_REQUIRED,
                "A valid Content-Length header is required",
            );
        }
        if let RequestBody::Empty = ctx.body {
            return if self.over(0) {
                self.too_large(ctx)
            } else {
                Flow::Continue
            };
        }
        // Bounded read: at most `allowed` bytes are buffered.
        let limit = usize::try_from(self.allowed.max(0)).unwrap_or(usize::MAX);
        match ctx.read_body(limit).await {
            Ok(body) => {
                let len = body.len() as u64;
                if self.over(len) {
                    self.too_large(ctx)
                } else {
                    Flow::Continue
                }
            }
            Err(BodyError::TooLarge(_)) => self.too_large(ctx),
            Err(BodyError::Read(e)) => {
                tracing::debug!(request_id = %ctx.request_id, error = %e, "reading the request body");
                Flow::Respond(respond::error(
                    GatewayError::BAD_REQUEST,
                    &ctx.request_id,
                    ctx.headers.get(http::header::ACCEPT),
                ))
            }
        }
    }
}
