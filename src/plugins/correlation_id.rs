//! `correlation-id` (kong-compat §4.7, priority 100001): a request id header sent upstream when
//! the client did not send one, optionally echoed to the client.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use serde::Deserialize;
use serde_json::json;

use super::{BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};

/// The plugin kind.
pub struct Kind;

/// `config` of correlation-id.
#[derive(Debug, Clone, Deserialize)]
pub struct CorrelationIdConfig {
    /// Header carrying the id.
    pub header_name: String,
    /// `uuid`, `uuid#counter` or `tracker`.
    pub generator: String,
    /// Also send the header back to the client.
    pub echo_downstream: bool,
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "correlation-id"
    }
    fn priority(&self) -> i64 {
        100_001
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                (
                    "header_name",
                    Field::string().default(json!("Kong-Request-ID")),
                ),
                (
                    "generator",
                    Field::string()
                        .required()
                        .default(json!("uuid#counter"))
                        .one_of_str(&["uuid", "uuid#counter", "tracker"]),
                ),
                (
                    "echo_downstream",
                    Field::boolean().required().default(json!(false)),
                ),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: CorrelationIdConfig = typed_config(plugin)?;
        let header = HeaderName::from_bytes(conf.header_name.as_bytes())
            .map_err(|_| format!("correlation-id: bad header name {:?}", conf.header_name))?;
        let generator = match conf.generator.as_str() {
            "uuid" => Generator::Uuid,
            "tracker" => Generator::Tracker,
            _ => Generator::UuidCounter,
        };
        Ok(Arc::new(CorrelationId {
            header,
            generator,
            echo: conf.echo_downstream,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo: bool,
}

/// The id this request carries (kept for the echo).
#[derive(Clone)]
struct Id(HeaderValue);

/// Kong's worker UUID: one per process here.
static WORKER_UUID: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().to_string());
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl CorrelationId {
    fn generate(&self, ctx: &Ctx) -> String {
        match self.generator {
            Generator::Uuid => uuid::Uuid::new_v4().to_string(),
            Generator::UuidCounter => {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}#{n}", *WORKER_UUID)
            }
            Generator::Tracker => {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                format!(
                    "{}-{}-{}-{}-{}-{now:.3}",
                    ctx.conn.local.ip(),
                    ctx.conn.local.port(),
                    std::process::id(),
                    ctx.conn.peer.port(),
                    n
                )
            }
        }
    }
}

#[async_trait]
impl Handler for CorrelationId {
    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let value = match ctx.headers.get(&self.header) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => {
                let Ok(v) = HeaderValue::from_str(&self.generate(ctx)) else {
                    return Flow::Continue;
                };
                ctx.headers.insert(self.header.clone(), v.clone());
                v
            }
        };
        if self.echo {
            ctx.data.insert(Id(value));
        }
        Flow::Continue
    }

    fn header_filter(&self, ctx: &mut Ctx, resp: &mut Parts) {
        if self.echo
            && let Some(Id(v)) = ctx.data.get::<Id>()
        {
            resp.headers.insert(self.header.clone(), v.clone());
        }
    }
}
