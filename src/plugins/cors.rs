//! `cors` (kong-compat §4.6, priority 2000): answers CORS preflight requests itself (unless
//! `preflight_continue`) and adds the CORS response headers to every other response, including
//! the ones the gateway makes (a plugin's short-circuit, an upstream error).
//!
//! Origin matching follows Kong 3.9's handler: no origins (or a lone `*`) allow every origin; a
//! lone plain origin (only `[A-Za-z0-9.:/-]`) is sent as it is; otherwise the request's
//! normalized origin is compared with each entry, plain entries exactly (scheme, host, port with
//! the default port dropped) and the others as regexes anchored at both ends, matched against the
//! origin's host when the entry has no `:`, against `scheme://host[:port]` otherwise.

use std::sync::Arc;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue, SERVER, VARY};
use http::response::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};
use crate::proxy::body::ProxyBody;
use crate::proxy::respond::SERVER_HEADER;

/// The nine methods Kong allows by default (also the `methods` field's accepted values).
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

static ACAO: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ACAC: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static ACAH: HeaderName = HeaderName::from_static("access-control-allow-headers");
static ACAM: HeaderName = HeaderName::from_static("access-control-allow-methods");
static ACMA: HeaderName = HeaderName::from_static("access-control-max-age");
static ACAPN: HeaderName = HeaderName::from_static("access-control-allow-private-network");
static ACEH: HeaderName = HeaderName::from_static("access-control-expose-headers");
static ACRM: HeaderName = HeaderName::from_static("access-control-request-method");
static ACRH: HeaderName = HeaderName::from_static("access-control-request-headers");
static ACRPN: HeaderName = HeaderName::from_static("access-control-request-private-network");

static ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static STAR: HeaderValue = HeaderValue::from_static("*");

/// The plugin kind.
pub struct Kind;

/// `config` of cors.
#[derive(Debug, Clone, Deserialize)]
pub struct CorsConfig {
    /// Allowed origins: `*`, plain origins or regexes; `None` allows all.
    pub origins: Option<Vec<String>>,
    /// `Access-Control-Allow-Headers` of preflights (default: the requested headers).
    pub headers: Option<Vec<String>>,
    /// `Access-Control-Expose-Headers`.
    pub exposed_headers: Option<Vec<String>>,
    /// `Access-Control-Allow-Methods` of preflights.
    pub methods: Option<Vec<String>>,
    /// `Access-Control-Max-Age` of preflights (seconds).
    pub max_age: Option<serde_json::Number>,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// Answer `Access-Control-Request-Private-Network: true` preflights.
    pub private_network: bool,
    /// Proxy preflights upstream instead of answering them.
    pub preflight_continue: bool,
}

/// Kong's `validate_asterisk_or_regex`: `*` or anything that compiles as a regex.
fn asterisk_or_regex(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if s == "*" || Regex::new(s).is_ok() {
        Ok(())
    } else {
        Err(format!("'{s}' is not a valid regex"))
    }
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "cors"
    }
    fn priority(&self) -> i64 {
        2000
    }
    fn allows_consumer(&self) -> bool {
        false
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                (
                    "origins",
                    Field::array(Field::string().validator(asterisk_or_regex)),
                ),
                ("headers", Field::array(Field::string())),
                ("exposed_headers", Field::array(Field::string())),
                (
                    "methods",
                    Field::array(Field::string().one_of_str(&METHODS)).default(json!(METHODS)),
                ),
                ("max_age", Field::number()),
                (
                    "credentials",
                    Field::boolean().required().default(json!(false)),
                ),
                (
                    "private_network",
                    Field::boolean().required().default(json!(false)),
                ),
                (
                    "preflight_continue",
                    Field::boolean().required().default(json!(false)),
                ),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: CorsConfig = typed_config(plugin)?;
        let value = |s: String, what: &str| {
            HeaderValue::from_str(&s).map_err(|_| format!("cors: {what} is not a header value"))
        };
        let joined = |list: &Option<Vec<String>>, what: &str| match list {
            Some(l) if !l.is_empty() => value(l.join(","), what).map(Some),
            _ => Ok(None),
        };
        Ok(Arc::new(Cors {
            origins: Origins::compile(conf.origins.as_deref().unwrap_or(&[]))?,
            allow_headers: joined(&conf.headers, "headers")?,
            expose_headers: joined(&conf.exposed_headers, "exposed_headers")?,
            methods: match &conf.methods {
                Some(m) => value(m.join(","), "methods")?,
                None => {
                    HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
                }
            },
            max_age: conf
                .max_age
                .as_ref()
                .map(|n| value(lua_number(n), "max_age"))
                .transpose()?,
            credentials: conf.credentials,
            private_network: conf.private_network,
            preflight_continue: conf.preflight_continue,
        }))
    }
}

/// A number as Lua's `tostring` prints it (`3600`, not `3600.0`).
fn lua_number(n: &serde_json::Number) -> String {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i.to_string(),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
        (None, Some(f)) => f.to_string(),
        (None, None) => n.to_string(),
    }
}

/// A configured origin after Kong's classification.
#[derive(Debug)]
enum Entry {
    /// `*` somewhere in a list: every origin is allowed (when the request has one).
    Star,
    /// A plain origin, normalized (`http://a.test:80` -> `http://a.test`).
    Exact(String),
    /// A regex, anchored at both ends; `by_host` when the entry has no `:`.
    Regex { re: Regex, by_host: bool },
}

#[derive(Debug)]
enum Origins {
    /// No origins or a lone `*`.
    All,
    /// A lone plain origin, sent as it is.
    Fixed(HeaderValue),
    /// Matched against the request's origin.
    List(Vec<Entry>),
}

impl Origins {
    fn compile(origins: &[String]) -> Result<Self, String> {
        match origins {
            [] => return Ok(Self::All),
            [one] if one == "*" => return Ok(Self::All),
            [one] if is_plain(one) => {
                return HeaderValue::from_str(one)
                    .map(Self::Fixed)
                    .map_err(|_| format!("cors: origin {one:?} is not a header value"));
            }
            _ => {}
        }
        let mut entries = Vec::with_capacity(origins.len());
        for entry in origins {
            if entry == "*" {
                entries.push(Entry::Star);
                continue;
            }
            let by_host = !entry.contains(':');
            if !entry.bytes().any(|b| !is_origin_byte(b)) {
                entries.push(Entry::Exact(normalize(entry).domain));
                continue;
            }
            // Kong 0.x did not anchor regexes; Kong anchors them at the start (PCRE's `a`
            // flag) and appends `$` unless the entry already ends with one.
            let body = entry.strip_prefix('^').unwrap_or(entry);
            let pattern = if body.ends_with('$') {
                format!("^(?:{body})")
            } else {
                format!("^(?:{body}$)")
            };
            let re = Regex::new(&pattern).map_err(|e| format!("cors: origin {entry:?}: {e}"))?;
            entries.push(Entry::Regex { re, by_host });
        }
        Ok(Self::List(entries))
    }
}

/// Whether an origin entry holds only `[A-Za-z0-9.:/-]` (Kong: "does not look like a regex").
fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_origin_byte)
}

fn is_origin_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'-')
}

/// An origin as Kong's `normalize_origin` sees it.
#[derive(Debug, PartialEq, Eq)]
struct Normalized {
    /// `scheme://host[:port]` (default ports dropped), or the input when it has no host.
    domain: String,
    /// The host, or the input when it has no host.
    host: String,
}

/// Kong's `normalize_origin` (LuaSocket's `url.parse` rules): the scheme, the authority's host
/// and port (dropping `:80` for http and `:443` for https); userinfo, path, query and fragment
/// are ignored. Without a host the whole input is both domain and host (`null`, `example.com`).
fn normalize(origin: &str) -> Normalized {
    let whole = || Normalized {
        domain: origin.to_owned(),
        host: origin.to_owned(),
    };
    let rest = origin.split('#').next().unwrap_or("");
    let (scheme, rest) = match rest.find(':') {
        Some(i)
            if i > 0
                && rest.as_bytes()[0].is_ascii_alphanumeric()
                && rest[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            (Some(&rest[..i]), &rest[i + 1..])
        }
        _ => (None, rest),
    };
    let Some(after) = rest.strip_prefix("//") else {
        return whole();
    };
    let authority = &after[..after.find('/').unwrap_or(after.len())];
    let authority = authority.split(['?', ';']).next().unwrap_or("");
    let authority = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i + 1..].contains(']') => {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    };
    if host.is_empty() {
        return whole();
    }
    let port = match (scheme, port) {
        (Some("http"), Some("80")) | (Some("https"), Some("443")) => None,
        (_, p) => p,
    };
    // Kong strips IPv6 brackets from the host; they are kept in the domain here so that the
    // echoed origin stays a valid origin.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut domain = String::with_capacity(origin.len());
    if let Some(s) = scheme {
        domain.push_str(s);
        domain.push_str("://");
    }
    domain.push_str(host);
    if let Some(p) = port {
        domain.push(':');
        domain.push_str(p);
    }
    Normalized {
        domain,
        host: bare.to_owned(),
    }
}

struct Cors {
    origins: Origins,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
}

/// Set by `access` for preflights: the response headers were added already (or the upstream
/// answers the preflight), the header filter leaves the response alone.
#[derive(Clone)]
struct Preflight;

impl Cors {
    /// Kong's `configure_origin`: sets or clears `Access-Control-Allow-Origin` and `Vary`;
    /// returns whether every origin is allowed (`*`).
    fn configure_origin(&self, h: &mut HeaderMap, add_vary: bool, origin: Option<&str>) -> bool {
        let entries = match &self.origins {
            Origins::All => {
                h.insert(ACAO.clone(), STAR.clone());
                return true;
            }
            Origins::Fixed(v) => {
                vary(h, add_vary);
                h.insert(ACAO.clone(), v.clone());
                return false;
            }
            Origins::List(entries) => entries,
        };
        vary(h, add_vary);
        if let Some(origin) = origin {
            if entries.iter().any(|e| matches!(e, Entry::Star)) {
                h.insert(ACAO.clone(), STAR.clone());
                return true;
            }
            let req = normalize(origin);
            let found = entries.iter().any(|e| match e {
                Entry::Star => false,
                Entry::Exact(d) => *d == req.domain,
                Entry::Regex { re, by_host } => {
                    re.is_match(if *by_host { &req.host } else { &req.domain })
                }
            });
            if found && let Ok(v) = HeaderValue::from_str(&req.domain) {
                h.insert(ACAO.clone(), v);
                return false;
            }
        }
        h.remove(&ACAO);
        false
    }

    /// Kong's `configure_credentials`: with `*` the request's origin is echoed instead, since
    /// credentials are not allowed with a wildcard origin.
    fn configure_credentials(
        &self,
        h: &mut HeaderMap,
        allow_all: bool,
        add_vary: bool,
        origin: Option<&HeaderValue>,
    ) {
        if !self.credentials {
            return;
        }
        if !allow_all {
            h.insert(ACAC.clone(), TRUE.clone());
            return;
        }
        if let Some(origin) = origin {
            vary(h, add_vary);
            h.insert(ACAO.clone(), origin.clone());
            h.insert(ACAC.clone(), TRUE.clone());
        }
    }

    fn preflight(&self, ctx: &Ctx) -> Response<ProxyBody> {
        let origin = ctx.headers.get(http::header::ORIGIN);
        let mut h = HeaderMap::new();
        let allow_all = self.configure_origin(&mut h, false, origin.and_then(|v| v.to_str().ok()));
        self.configure_credentials(&mut h, allow_all, false, origin);
        match (&self.allow_headers, ctx.headers.get(&ACRH)) {
            (Some(v), _) | (None, Some(v)) => {
                h.insert(ACAH.clone(), v.clone());
            }
            (None, None) => {}
        }
        h.insert(ACAM.clone(), self.methods.clone());
        if let Some(v) = &self.max_age {
            h.insert(ACMA.clone(), v.clone());
        }
        if self.private_network
            && ctx
                .headers
                .get(&ACRPN)
                .is_some_and(|v| v.as_bytes() == b"true")
        {
            h.insert(ACAPN.clone(), TRUE.clone());
        }
        h.insert(SERVER, SERVER_HEADER.clone());
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = StatusCode::OK;
        *resp.headers_mut() = h;
        resp
    }
}

/// `Vary: Origin`: added to the upstream's `Vary` in the header filter, set on preflights.
fn vary(h: &mut HeaderMap, add: bool) {
    if add {
        h.append(VARY, ORIGIN.clone());
    } else {
        h.insert(VARY, ORIGIN.clone());
    }
}

#[async_trait]
impl Handler for Cors {
    async fn access(&self, ctx: &mut Ctx) -> Flow {
        if ctx.method != Method::OPTIONS
            || !ctx.headers.contains_key(http::header::ORIGIN)
            || !ctx.headers.contains_key(&ACRM)
        {
            return Flow::Continue;
        }
        ctx.data.insert(Preflight);
        if self.preflight_continue {
            return Flow::Continue;
        }
        Flow::Respond(self.preflight(ctx))
    }

    fn header_filter(&self, ctx: &mut Ctx, resp: &mut Parts) {
        if ctx.data.get::<Preflight>().is_some() {
            return;
        }
        // Released 3.x adds the headers whether or not the request has an Origin.
        let origin = ctx.headers.get(http::header::ORIGIN);
        let h = &mut resp.headers;
        let allow_all = self.configure_origin(h, true, origin.and_then(|v| v.to_str().ok()));
        self.configure_credentials(h, allow_all, true, origin);
        if let Some(v) = &self.expose_headers {
            h.insert(ACEH.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(domain: &str, host: &str) -> Normalized {
        Normalized {
            domain: domain.into(),
            host: host.into(),
        }
    }

    #[test]
    fn normalizes_like_kong() {
        assert_eq!(normalize("http://a.test:80"), n("http://a.test", "a.test"));
        assert_eq!(
            normalize("https://a.test:443/x?y"),
            n("https://a.test", "a.test")
        );
        assert_eq!(
            normalize("https://u:p@a.test:8443"),
            n("https://a.test:8443", "a.test")
        );
        assert_eq!(
            normalize("http://a.test:443"),
            n("http://a.test:443", "a.test")
        );
        assert_eq!(normalize("null"), n("null", "null"));
        assert_eq!(normalize("a.test"), n("a.test", "a.test"));
        assert_eq!(
            normalize("http://[::1]:8080"),
            n("http://[::1]:8080", "::1")
        );
    }

    #[test]
    fn classifies_entries() {
        assert!(matches!(Origins::compile(&[]), Ok(Origins::All)));
        assert!(matches!(Origins::compile(&["*".into()]), Ok(Origins::All)));
        assert!(matches!(
            Origins::compile(&["http://a.test".into()]),
            Ok(Origins::Fixed(_))
        ));
        let Ok(Origins::List(l)) = Origins::compile(&[
            "http://a.test:80".into(),
            r"^.*\.b\.test$".into(),
            r"https?://c\.test:\d+".into(),
        ]) else {
            panic!("list");
        };
        assert!(matches!(&l[0], Entry::Exact(d) if d == "http://a.test"));
        assert!(
            matches!(&l[1], Entry::Regex { re, by_host: true } if re.as_str() == r"^(?:.*\.b\.test$)")
        );
        assert!(matches!(&l[2], Entry::Regex { by_host: false, .. }));
    }

    #[test]
    fn origins_validator() {
        assert!(asterisk_or_regex(&json!("*")).is_ok());
        assert!(asterisk_or_regex(&json!(r".*\.test")).is_ok());
        assert_eq!(
            asterisk_or_regex(&json!("(")),
            Err("'(' is not a valid regex".to_owned())
        );
    }

    #[test]
    fn lua_numbers() {
        assert_eq!(lua_number(&serde_json::Number::from(3600)), "3600");
        let f = serde_json::Number::from_f64(3600.0).unwrap();
        assert_eq!(lua_number(&f), "3600");
        let f = serde_json::Number::from_f64(1.5).unwrap();
        assert_eq!(lua_number(&f), "1.5");
    }
}
