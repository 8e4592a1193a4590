//! TEMPORARY stand-in until the real declarative loader lands; same public API.
#![allow(missing_docs, unreachable_pub, clippy::all)]
use crate::model::Config;

#[derive(Debug)]
pub struct DeclarativeError(String);
impl std::fmt::Display for DeclarativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DeclarativeError {}
impl DeclarativeError {
    pub fn to_kong_json(&self) -> serde_json::Value {
        serde_json::json!({"message": self.0})
    }
    pub fn lines(&self) -> Vec<String> {
        vec![self.0.clone()]
    }
}
pub fn parse(text: &str) -> Result<Config, DeclarativeError> {
    use crate::model::*;
    use serde_json::Value;
    use uuid::Uuid;
    let v: Value = serde_yaml::from_str(text).map_err(|e| DeclarativeError(e.to_string()))?;
    let mut cfg = Config::default();
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let arr = |v: &Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let strs = |v: &Value, k: &str| {
        v.get(k).and_then(|x| x.as_array()).map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
    };
    for sv in arr(&v, "services") {
        let url = s(&sv, "url").unwrap_or_default();
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", &url));
        let (hp, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
            None => (rest, None),
        };
        let (host, port) = match hp.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(80)),
            None => (hp.to_owned(), if scheme == "https" { 443 } else { 80 }),
        };
        let id = Uuid::new_v4();
        cfg.services.push(Service {
            id,
            name: s(&sv, "name"),
            protocol: if scheme == "https" {
                Protocol::Https
            } else {
                Protocol::Http
            },
            host: s(&sv, "host").unwrap_or(host),
            port: sv
                .get("port")
                .and_then(|p| p.as_u64())
                .map(|p| p as u16)
                .unwrap_or(port),
            path: s(&sv, "path").or(path),
            retries: sv.get("retries").and_then(|x| x.as_u64()).unwrap_or(5) as u32,
            connect_timeout: sv
                .get("connect_timeout")
                .and_then(|x| x.as_u64())
                .unwrap_or(60000),
            write_timeout: sv
                .get("write_timeout")
                .and_then(|x| x.as_u64())
                .unwrap_or(60000),
            read_timeout: sv
                .get("read_timeout")
                .and_then(|x| x.as_u64())
                .unwrap_or(60000),
            tags: None,
            client_certificate: None,
            tls_verify: None,
            tls_verify_depth: None,
            ca_certificates: None,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        });
        for rv in arr(&sv, "routes") {
            cfg.routes.push(Route {
                id: Uuid::new_v4(),
                name: s(&rv, "name"),
                protocols: vec![Protocol::Http, Protocol::Https],
                methods: strs(&rv, "methods"),
                hosts: strs(&rv, "hosts"),
                paths: strs(&rv, "paths"),
                headers: None,
                snis: None,
                sources: None,
                destinations: None,
                https_redirect_status_code: 426,
                regex_priority: 0,
                strip_path: rv
                    .get("strip_path")
                    .and_then(|x| x.as_bool())
                    .unwrap_or(true),
                path_handling: "v0".into(),
                preserve_host: rv
                    .get("preserve_host")
                    .and_then(|x| x.as_bool())
                    .unwrap_or(false),
                request_buffering: true,
                response_buffering: true,
                service: Some(id.into()),
                tags: None,
                created_at: 0,
                updated_at: 0,
            });
        }
    }
    Ok(cfg)
}
pub fn config_hash(text: &str) -> String {
    use md5::Digest;
    let d = md5::Md5::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}
