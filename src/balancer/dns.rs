//! Target strings and name resolution: `host:port` parsing (IPv6 in brackets, port 8000 by
//! default) and bounded `lookup_host`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long one resolution may take.
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// A parsed target string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetAddr {
    /// The host as written (IPv6 keeps its brackets, so `host:port` is a valid Host header).
    pub(crate) host: String,
    /// The port (8000 when omitted).
    pub(crate) port: u16,
    /// Set when the host is an IP literal.
    pub(crate) ip: Option<IpAddr>,
}

/// Parse `host:port`, `ip:port`, `[v6]:port` (port optional, default 8000).
pub(crate) fn parse_target(t: &str) -> Option<TargetAddr> {
    let t = t.trim();
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 8000,
            None => return None,
        };
        let ip: IpAddr = inner.parse().ok()?;
        return Some(TargetAddr {
            host: format!("[{inner}]"),
            port,
            ip: Some(ip),
        });
    } else if let Ok(ip) = t.parse::<IpAddr>() {
        // bare IPv6 without brackets (or bare IPv4): default port
        let host = if ip.is_ipv6() {
            format!("[{t}]")
        } else {
            t.to_string()
        };
        return Some(TargetAddr {
            host,
            port: 8000,
            ip: Some(ip),
        });
    } else {
        match t.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (t, 8000),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(TargetAddr {
        host: host.to_string(),
        port,
        ip: host.parse().ok(),
    })
}

/// Resolve a hostname to a sorted, de-duplicated address list (an empty answer is an error).
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("dns timeout resolving {host}")),
        Ok(Err(e)) => Err(format!("dns error resolving {host}: {e}")),
        Ok(Ok(it)) => {
            let mut v: Vec<SocketAddr> = it.collect();
            v.sort();
            v.dedup();
            if v.is_empty() {
                Err(format!("no addresses for {host}"))
            } else {
                Ok(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = parse_target("example.com:8080").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.ip), ("example.com", 8080, None));
        let t = parse_target("example.com").unwrap();
        assert_eq!(t.port, 8000);
        let t = parse_target("10.0.0.1:81").unwrap();
        assert_eq!(t.ip, Some("10.0.0.1".parse().unwrap()));
        let t = parse_target("[::1]:9000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 9000));
        assert_eq!(t.ip, Some("::1".parse().unwrap()));
        let t = parse_target("[::1]").unwrap();
        assert_eq!(t.port, 8000);
        assert!(parse_target("host:notaport").is_none());
        assert!(parse_target("").is_none());
    }
}
