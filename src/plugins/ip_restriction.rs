//! `ip-restriction` (kong-compat §4.9, priority 990): rejects clients by address. The deny list
//! is checked first, then the allow list; the client address is the one the proxy settled on
//! (the peer, or `X-Real-IP` from a trusted peer). Rejections are `kong.response.error` with the
//! configured status (403) and message (`IP address not allowed: <client ip>`).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::{BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{EntityCheck, Field, Schema};
use crate::proxy::respond;

/// The plugin kind.
pub struct Kind;

/// `config` of ip-restriction.
#[derive(Debug, Clone, Deserialize)]
pub struct IpRestrictionConfig {
    /// Addresses and CIDR ranges allowed (everything else is rejected).
    pub allow: Option<Vec<String>>,
    /// Addresses and CIDR ranges rejected.
    pub deny: Option<Vec<String>>,
    /// Status of rejections (403 when unset).
    pub status: Option<serde_json::Number>,
    /// Message of rejections (`IP address not allowed: <client ip>` when unset).
    pub message: Option<String>,
}

/// Parse an `ip_or_cidr` entry: an IPv4/IPv6 address or a CIDR range (host bits allowed, as
/// Kong's matcher masks them).
fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Kong's `typedefs.ip_or_cidr` validator.
fn ip_or_cidr(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if parse_net(s).is_none() => Err(format!("invalid ip or cidr range: '{s}'")),
        _ => Ok(()),
    }
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "ip-restriction"
    }
    fn priority(&self) -> i64 {
        990
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                ("allow", Field::array(Field::string().validator(ip_or_cidr))),
                ("deny", Field::array(Field::string().validator(ip_or_cidr))),
                ("status", Field::number()),
                ("message", Field::string()),
            ],
        ))
        .required()
    }
    fn entity_checks(&self) -> Vec<EntityCheck> {
        vec![EntityCheck::AtLeastOneOf(vec![
            "config.allow",
            "config.deny",
        ])]
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: IpRestrictionConfig = typed_config(plugin)?;
        let list = |l: &Option<Vec<String>>| -> Result<Vec<IpNet>, String> {
            l.iter()
                .flatten()
                .map(|s| parse_net(s).ok_or_else(|| format!("ip-restriction: bad entry {s:?}")))
                .collect()
        };
        // `kong.response.error` only takes 4xx/5xx statuses; anything else makes Kong fail
        // the request with a 500.
        let status = match &conf.status {
            None => Some(StatusCode::FORBIDDEN),
            Some(n) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .filter(|s| (400..=599).contains(s))
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok()),
        };
        Ok(Arc::new(IpRestriction {
            allow: list(&conf.allow)?,
            deny: list(&conf.deny)?,
            status,
            message: conf.message,
        }))
    }
}

struct IpRestriction {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// `None`: the configured status is not one `kong.response.error` accepts.
    status: Option<StatusCode>,
    message: Option<String>,
}

impl IpRestriction {
    fn reject(&self, ctx: &Ctx, ip: IpAddr) -> Flow {
        let accept = ctx.headers.get(http::header::ACCEPT);
        let Some(status) = self.status else {
            tracing::error!(request_id = %ctx.request_id, "ip-restriction: status is not 4xx/5xx");
            return Flow::Respond(respond::error_with(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error occurred",
                &ctx.request_id,
                accept,
            ));
        };
        let message = match &self.message {
            Some(m) => m.clone(),
            None => format!("IP address not allowed: {ip}"),
        };
        tracing::warn!(client_ip = %ip, "ip-restriction: {message}");
        Flow::Respond(respond::error_with(
            status,
            &message,
            &ctx.request_id,
            accept,
        ))
    }
}

#[async_trait]
impl Handler for IpRestriction {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d; Kong's matcher sees
        // the IPv4 address.
        let ip = match ctx.client_ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return self.reject(ctx, ip);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return self.reject(ctx, ip);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries() {
        assert!(parse_net("10.0.0.1").is_some());
        assert!(parse_net("10.0.0.0/8").is_some());
        assert!(
            parse_net("10.1.2.3/8")
                .is_some_and(|n| n.contains(&"10.9.9.9".parse::<IpAddr>().unwrap()))
        );
        assert!(parse_net("2001:db8::/32").is_some());
        assert!(parse_net("::1").is_some());
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("10.0.0.256").is_none());
        assert!(parse_net("example.com").is_none());
        assert_eq!(
            ip_or_cidr(&json!("1.2.3")),
            Err("invalid ip or cidr range: '1.2.3'".to_owned())
        );
    }
}
