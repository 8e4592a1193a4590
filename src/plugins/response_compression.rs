//! `response-compression` (gwctl's own; no Kong equivalent): gzip or brotli of responses by
//! content type, minimum size and the client's `Accept-Encoding`. It replaces nginx's
//! `gzip on; gzip_types ...; gzip_min_length ...; gzip_comp_level ...; gzip_proxied ...;
//! gzip_vary on;` (the seed deployment's `KONG_NGINX_HTTP_GZIP_*` settings) with plugin config:
//!
//! | nginx | config field | default |
//! |---|---|---|
//! | `gzip on` | the plugin instance (`algorithms` adds brotli) | `[br, gzip]` |
//! | `gzip_types` | `content_types` (`*` and `type/*` allowed) | common text types, JSON, XML, JS, SVG |
//! | `gzip_min_length` | `min_length` (bytes, from `Content-Length`) | `20` (nginx's) |
//! | `gzip_comp_level` | `gzip_level` 1-9 | `6` (the seed's) |
//! | `gzip_proxied` | `proxied` (same keywords) | `[any]` (the seed's) |
//! | `gzip_vary` | `vary` | `true` (the seed's) |
//! | `brotli_comp_level` / `brotli_window` (ngx_brotli) | `brotli_quality` 0-11 / `brotli_window` 10-24 | `6` / `19` (512 KiB) |
//!
//! Negotiation (RFC 9110 §12.5.3): q-values are honoured, `x-gzip` is `gzip`, `*` covers the
//! codings not named, `q=0` refuses. Among the acceptable codings with the highest q the first in
//! `algorithms` wins, so with the default order brotli is preferred when the client rates both
//! alike. When the client explicitly rates `identity` above every offered coding, the response
//! is sent as is. No `Accept-Encoding` means no compression (nginx does the same). Nothing is
//! ever refused with 406: `identity;q=0` without an acceptable coding still gets the plain body.
//!
//! Skipped (sent unchanged): responses that already have a `Content-Encoding`, `HEAD`, 1xx, 204,
//! 206 and 304 responses, types not in `content_types` (no `Content-Type`: only `*` matches), bodies whose
//! `Content-Length` is below `min_length` (unknown length: compressed), `Cache-Control:
//! no-transform`, and proxied requests (with `Via`) that `proxied` excludes. `Vary:
//! Accept-Encoding` is added to every response that would be compressed for some client (also
//! when this client did not ask, and to HEAD), so caches keep the variants apart.
//!
//! A compressed response gets `Content-Encoding`, loses `Content-Length` (it streams chunked) and
//! `Accept-Ranges`, and a strong `ETag` becomes weak (`W/"..."`), as nginx's gzip filter does.
//! The body is compressed as it streams: each upstream chunk goes into the encoder and whatever
//! compressed output is ready goes out, so memory per response is the encoder's window, not the
//! body.
//!
//! Priority -1100: body filters run in priority order (first filter first), so compression
//! must come after every plugin that rewrites the body (response-transformer 800, post-function
//! -1000), the way nginx's gzip output filter runs after every Lua body filter. The response head
//! it inspects is final anyway: body filters start after every header filter ran.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::response::Parts;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BodyFilter, BuildCtx, Ctx, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};
use crate::proxy::body::BoxError;

/// The plugin kind.
pub struct Kind;

/// Default `content_types`: nginx users' usual `gzip_types` (nginx always includes text/html).
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "text/csv",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/problem+json",
    "application/ld+json",
    "application/manifest+json",
    "application/xml",
    "application/problem+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/xhtml+xml",
    "image/svg+xml",
];

/// `proxied` keywords (nginx's `gzip_proxied`).
const PROXIED: &[&str] = &[
    "off",
    "expired",
    "no-cache",
    "no-store",
    "private",
    "no_last_modified",
    "no_etag",
    "auth",
    "any",
];

/// `config` of response-compression.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseCompressionConfig {
    /// Offered codings (`br`, `gzip`) in the server's order of preference.
    pub algorithms: Vec<String>,
    /// Media types compressed (`type/subtype`, `type/*` or `*`), case-insensitive.
    pub content_types: Vec<String>,
    /// Smallest `Content-Length` compressed, in bytes.
    pub min_length: u64,
    /// gzip level 1 (fast) to 9 (small).
    pub gzip_level: u32,
    /// brotli quality 0 (fast) to 11 (small).
    pub brotli_quality: u32,
    /// brotli window, log2 of bytes (10-24).
    pub brotli_window: u32,
    /// Add `Vary: Accept-Encoding`.
    pub vary: bool,
    /// Which proxied requests (those with a `Via` header) are compressed, as `gzip_proxied`.
    pub proxied: Vec<String>,
}

fn content_type_entry(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else {
        return Ok(());
    };
    if s == "*" {
        return Ok(());
    }
    let valid_token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match s.split_once('/') {
        Some((ty, sub)) if valid_token(ty) && (sub == "*" || valid_token(sub)) => Ok(()),
        _ => Err(format!(
            "invalid media type '{s}': expected type/subtype, type/* or *"
        )),
    }
}

fn proxied_entries(v: &Value) -> Result<(), String> {
    let Some(items) = v.as_array() else {
        return Ok(());
    };
    let off = items.iter().any(|i| i.as_str() == Some("off"));
    if off && items.len() > 1 {
        return Err("'off' cannot be combined with other values".to_owned());
    }
    Ok(())
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "response-compression"
    }
    fn priority(&self) -> i64 {
        -1100
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                (
                    "algorithms",
                    Field::array(Field::string().one_of_str(&["br", "gzip"]))
                        .required()
                        .len_min(1)
                        .default(json!(["br", "gzip"])),
                ),
                (
                    "content_types",
                    Field::array(Field::string().validator(content_type_entry))
                        .required()
                        .len_min(1)
                        .default(json!(DEFAULT_CONTENT_TYPES)),
                ),
                (
                    "min_length",
                    Field::integer()
                        .required()
                        .between(0, i64::MAX)
                        .default(json!(20)),
                ),
                (
                    "gzip_level",
                    Field::integer().required().between(1, 9).default(json!(6)),
                ),
                (
                    "brotli_quality",
                    Field::integer().required().between(0, 11).default(json!(6)),
                ),
                (
                    "brotli_window",
                    Field::integer()
                        .required()
                        .between(10, 24)
                        .default(json!(19)),
                ),
                ("vary", Field::boolean().required().default(json!(true))),
                (
                    "proxied",
                    Field::array(Field::string().one_of_str(PROXIED))
                        .required()
                        .len_min(1)
                        .default(json!(["any"]))
                        .validator(proxied_entries),
                ),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: ResponseCompressionConfig = typed_config(plugin)?;
        let mut algorithms = Vec::new();
        for a in &conf.algorithms {
            let alg = match a.as_str() {
                "br" => Algorithm::Brotli,
                _ => Algorithm::Gzip,
            };
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        let types = conf
            .content_types
            .iter()
            .map(|t| TypeMatch::parse(t))
            .collect();
        let has = |k: &str| conf.proxied.iter().any(|p| p == k);
        let proxied = if has("any") {
            Proxied::Any
        } else if has("off") {
            Proxied::Off
        } else {
            Proxied::When {
                expired: has("expired"),
                no_cache: has("no-cache"),
                no_store: has("no-store"),
                private: has("private"),
                no_last_modified: has("no_last_modified"),
                no_etag: has("no_etag"),
                auth: has("auth"),
            }
        };
        Ok(Arc::new(Compression {
            algorithms,
            types,
            min_length: conf.min_length,
            gzip_level: conf.gzip_level.clamp(1, 9),
            brotli_quality: conf.brotli_quality.min(11),
            brotli_window: conf.brotli_window.clamp(10, 24),
            vary: conf.vary,
            proxied,
        }))
    }
}

/// A content coding the plugin can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `br`.
    Brotli,
    /// `gzip`.
    Gzip,
}

impl Algorithm {
    fn token(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Gzip => "gzip",
        }
    }
    fn matches(self, coding: &str) -> bool {
        match self {
            Self::Brotli => coding == "br",
            Self::Gzip => coding == "gzip" || coding == "x-gzip",
        }
    }
}

#[derive(Debug, Clone)]
enum TypeMatch {
    Any,
    Major(String),
    Exact(String),
}

impl TypeMatch {
    fn parse(s: &str) -> Self {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            Self::Any
        } else if let Some(major) = s.strip_suffix("/*") {
            Self::Major(major.to_owned())
        } else {
            Self::Exact(s)
        }
    }
    fn matches(&self, media: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Major(m) => media
                .split_once('/')
                .is_some_and(|(ty, _)| ty.eq_ignore_ascii_case(m)),
            Self::Exact(t) => media.eq_ignore_ascii_case(t),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Proxied {
    Any,
    Off,
    When {
        expired: bool,
        no_cache: bool,
        no_store: bool,
        private: bool,
        no_last_modified: bool,
        no_etag: bool,
        auth: bool,
    },
}

struct Compression {
    algorithms: Vec<Algorithm>,
    types: Vec<TypeMatch>,
    min_length: u64,
    gzip_level: u32,
    brotli_quality: u32,
    brotli_window: u32,
    vary: bool,
    proxied: Proxied,
}

/// Whether the comma-separated header `name` has the directive `token` (case-insensitive, an
/// optional `=value` ignored).
fn has_directive(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            let d = d.split('=').next().unwrap_or("").trim();
            d.eq_ignore_ascii_case(token)
        })
}

/// The media type of `Content-Type`, without parameters, trimmed.
fn media_type(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let t = v.split(';').next().unwrap_or("").trim();
    (!t.is_empty()).then_some(t)
}

/// Parse `Accept-Encoding` (every line) into (coding, q) pairs; codings lower-cased. Elements
/// with an unreadable q-value are ignored.
fn parse_accept_encoding(headers: &HeaderMap) -> Vec<(String, f32)> {
    let mut out = Vec::new();
    for line in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(line) = line.to_str() else {
            continue;
        };
        for item in line.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1.0f32);
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q));
                }
            }
            if let Some(q) = q {
                out.push((coding, q));
            }
        }
    }
    out
}

/// Pick the coding for a response from the client's `Accept-Encoding` and the server's
/// preference order (`offered`). `None`: send the body as it is.
pub fn negotiate(headers: &HeaderMap, offered: &[Algorithm]) -> Option<Algorithm> {
    if !headers.contains_key(header::ACCEPT_ENCODING) {
        return None;
    }
    let accepted = parse_accept_encoding(headers);
    // The most specific entry wins; among repeated entries for one coding, the last.
    let q_of = |pred: &dyn Fn(&str) -> bool| {
        accepted
            .iter()
            .rev()
            .find(|(c, _)| pred(c))
            .map(|(_, q)| *q)
    };
    let star = q_of(&|c| c == "*");
    let mut best: Option<(Algorithm, f32)> = None;
    for alg in offered {
        let q = q_of(&|c| alg.matches(c)).or(star).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((*alg, q));
        }
    }
    let (alg, q) = best?;
    match q_of(&|c| c == "identity") {
        Some(identity) if identity > q => None,
        _ => Some(alg),
    }
}

impl Compression {
    /// Whether this response would be compressed for a client that asks for it.
    fn eligible(&self, ctx: &Ctx, resp: &Parts) -> bool {
        let status = resp.status;
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return false;
        }
        let h = &resp.headers;
        if h.contains_key(header::CONTENT_ENCODING) || h.contains_key(header::CONTENT_RANGE) {
            return false;
        }
        if has_directive(h, header::CACHE_CONTROL, "no-transform") {
            return false;
        }
        // Without a Content-Type only `*` matches (nginx's `gzip_types *`).
        let typed = match media_type(h) {
            Some(media) => self.types.iter().any(|t| t.matches(media)),
            None => self.types.iter().any(|t| matches!(t, TypeMatch::Any)),
        };
        if !typed {
            return false;
        }
        if let Some(len) = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            && (len == 0 || len < self.min_length)
        {
            return false;
        }
        self.proxied_ok(ctx, h)
    }

    /// nginx's `gzip_proxied`: requests that came through a proxy (`Via`) are compressed only
    /// when the response matches one of the configured conditions.
    fn proxied_ok(&self, ctx: &Ctx, h: &HeaderMap) -> bool {
        if !ctx.headers.contains_key(header::VIA) {
            return true;
        }
        match self.proxied {
            Proxied::Any => true,
            Proxied::Off => false,
            Proxied::When {
                expired,
                no_cache,
                no_store,
                private,
                no_last_modified,
                no_etag,
                auth,
            } => {
                let expires_passed = || {
                    h.get(header::EXPIRES).is_some_and(|v| {
                        v.to_str()
                            .ok()
                            .and_then(|s| httpdate::parse_http_date(s).ok())
                            .is_none_or(|t| t <= std::time::SystemTime::now())
                    })
                };
                (expired && expires_passed())
                    || (no_cache && has_directive(h, header::CACHE_CONTROL, "no-cache"))
                    || (no_store && has_directive(h, header::CACHE_CONTROL, "no-store"))
                    || (private && has_directive(h, header::CACHE_CONTROL, "private"))
                    || (no_last_modified && !h.contains_key(header::LAST_MODIFIED))
                    || (no_etag && !h.contains_key(header::ETAG))
                    || (auth && ctx.headers.contains_key(header::AUTHORIZATION))
            }
        }
    }
}

/// Add `Accept-Encoding` to `Vary` unless it (or `*`) is already there.
fn add_vary(h: &mut HeaderMap) {
    if has_directive(h, header::VARY, "accept-encoding") || has_directive(h, header::VARY, "*") {
        return;
    }
    h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
}

/// A strong `ETag` becomes weak: the compressed bytes differ from the representation's.
fn weaken_etag(h: &mut HeaderMap) {
    let Some(v) = h.get(header::ETAG) else {
        return;
    };
    let b = v.as_bytes();
    if b.starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(b.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(b);
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        h.insert(header::ETAG, v);
    }
}

impl Handler for Compression {
    fn body_filter(&self, ctx: &mut Ctx, resp: &mut Parts) -> Option<Box<dyn BodyFilter>> {
        if !self.eligible(ctx, resp) {
            return None;
        }
        if self.vary {
            add_vary(&mut resp.headers);
        }
        if ctx.method == Method::HEAD {
            return None;
        }
        let alg = negotiate(&ctx.headers, &self.algorithms)?;
        let h = &mut resp.headers;
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(alg.token()),
        );
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::ACCEPT_RANGES);
        weaken_etag(h);
        Some(Box::new(Compressor::new(
            alg,
            self.gzip_level,
            self.brotli_quality,
            self.brotli_window,
        )))
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// A streaming compressor: what the encoder has produced leaves with each chunk.
pub struct Compressor {
    encoder: Option<Encoder>,
}

/// Output buffer of the brotli writer.
const BROTLI_BUFFER: usize = 16 * 1024;

impl Compressor {
    /// A compressor for `alg` with the given gzip level, brotli quality and window.
    pub fn new(alg: Algorithm, gzip_level: u32, brotli_quality: u32, brotli_window: u32) -> Self {
        let encoder = match alg {
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(gzip_level),
            )),
            Algorithm::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                brotli_quality,
                brotli_window,
            ))),
        };
        Self {
            encoder: Some(encoder),
        }
    }
}

/// Take what the encoder wrote so far, keeping the buffer's capacity.
fn drain(out: &mut Vec<u8>) -> Bytes {
    if out.is_empty() {
        return Bytes::new();
    }
    let b = Bytes::copy_from_slice(out);
    out.clear();
    b
}

impl BodyFilter for Compressor {
    fn data(&mut self, chunk: Bytes) -> Result<Bytes, BoxError> {
        match &mut self.encoder {
            Some(Encoder::Gzip(e)) => {
                e.write_all(&chunk)?;
                Ok(drain(e.get_mut()))
            }
            Some(Encoder::Brotli(e)) => {
                e.write_all(&chunk)?;
                Ok(drain(e.get_mut()))
            }
            None => Err("response-compression: data after the end of the body".into()),
        }
    }

    fn end(&mut self) -> Result<Bytes, BoxError> {
        match self.encoder.take() {
            Some(Encoder::Gzip(e)) => Ok(Bytes::from(e.finish()?)),
            Some(Encoder::Brotli(e)) => Ok(Bytes::from(e.into_inner())),
            None => Ok(Bytes::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn ae(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    const BOTH: &[Algorithm] = &[Algorithm::Brotli, Algorithm::Gzip];

    #[test]
    fn negotiation_honours_q_values_and_preference() {
        use Algorithm::*;
        assert_eq!(negotiate(&HeaderMap::new(), BOTH), None);
        assert_eq!(negotiate(&ae(""), BOTH), None);
        assert_eq!(negotiate(&ae("gzip"), BOTH), Some(Gzip));
        assert_eq!(negotiate(&ae("x-gzip"), BOTH), Some(Gzip));
        assert_eq!(negotiate(&ae("GZIP, deflate"), BOTH), Some(Gzip));
        assert_eq!(negotiate(&ae("gzip, br"), BOTH), Some(Brotli));
        assert_eq!(
            negotiate(&ae("gzip, br"), &[Gzip, Brotli]),
            Some(Gzip),
            "ties go to the server's order"
        );
        assert_eq!(negotiate(&ae("gzip;q=1.0, br;q=0.5"), BOTH), Some(Gzip));
        assert_eq!(negotiate(&ae("br;q=0, gzip;q=0.1"), BOTH), Some(Gzip));
        assert_eq!(negotiate(&ae("br;q=0, gzip;q=0"), BOTH), None);
        assert_eq!(negotiate(&ae("*"), BOTH), Some(Brotli));
        assert_eq!(negotiate(&ae("*;q=0.5, br;q=0"), BOTH), Some(Gzip));
        assert_eq!(negotiate(&ae("*;q=0"), BOTH), None);
        assert_eq!(negotiate(&ae("identity"), BOTH), None);
        assert_eq!(negotiate(&ae("identity;q=0"), BOTH), None);
        assert_eq!(negotiate(&ae("gzip;q=0.5, identity"), BOTH), None);
        assert_eq!(
            negotiate(&ae("gzip, identity;q=0"), BOTH),
            Some(Gzip),
            "identity refused: gzip it is"
        );
        assert_eq!(negotiate(&ae("gzip;q=bogus, br;q=2"), BOTH), None);
        assert_eq!(negotiate(&ae("deflate, compress"), BOTH), None);
        assert_eq!(negotiate(&ae("br"), &[Gzip]), None);
        let mut two = ae("deflate");
        two.append(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            negotiate(&two, BOTH),
            Some(Gzip),
            "every header line counts"
        );
    }

    #[test]
    fn content_type_entries() {
        assert!(content_type_entry(&json!("*")).is_ok());
        assert!(content_type_entry(&json!("text/*")).is_ok());
        assert!(content_type_entry(&json!("application/vnd.api+json")).is_ok());
        assert!(content_type_entry(&json!("text")).is_err());
        assert!(content_type_entry(&json!("*/json")).is_err());
        assert!(content_type_entry(&json!("text/html; charset=utf-8")).is_err());
        assert!(TypeMatch::parse("TEXT/*").matches("text/plain"));
        assert!(!TypeMatch::parse("text/*").matches("application/json"));
        assert!(TypeMatch::parse("application/json").matches("Application/JSON"));
        assert!(proxied_entries(&json!(["off", "auth"])).is_err());
        assert!(proxied_entries(&json!(["expired", "auth"])).is_ok());
    }

    /// Pseudo-random text (compresses, but not to nothing).
    fn noisy(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(x % 38) as usize]
            })
            .collect()
    }

    fn run(alg: Algorithm, input: &[u8]) -> (Vec<u8>, usize, usize) {
        let mut c = Compressor::new(alg, 6, 6, 19);
        let mut out = Vec::new();
        let mut largest = 0;
        let mut emitted_before_end = 0;
        for chunk in input.chunks(64 * 1024) {
            let b = c.data(Bytes::copy_from_slice(chunk)).unwrap();
            largest = largest.max(b.len());
            emitted_before_end += b.len();
            out.extend_from_slice(&b);
        }
        let tail = c.end().unwrap();
        largest = largest.max(tail.len());
        out.extend_from_slice(&tail);
        (out, largest, emitted_before_end)
    }

    #[test]
    fn streams_with_bounded_buffers_and_round_trips() {
        let input = noisy(8 * 1024 * 1024, 7);
        for alg in [Algorithm::Gzip, Algorithm::Brotli] {
            let (out, largest, early) = run(alg, &input);
            // Output leaves while the input still arrives, in pieces far smaller than the body.
            assert!(largest < 1024 * 1024, "{alg:?}: a {largest}-byte piece");
            assert!(
                early > out.len() / 2,
                "{alg:?}: {early} of {} early",
                out.len()
            );
            assert!(out.len() < input.len(), "{alg:?} compresses");
            let mut back = Vec::new();
            match alg {
                Algorithm::Gzip => {
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Algorithm::Brotli => {
                    brotli::Decompressor::new(&out[..], 4096)
                        .read_to_end(&mut back)
                        .unwrap();
                }
            }
            assert!(back == input, "{alg:?} round trip");
        }
    }

    #[test]
    fn empty_bodies_still_make_valid_streams() {
        for alg in [Algorithm::Gzip, Algorithm::Brotli] {
            let (out, ..) = run(alg, b"");
            assert!(!out.is_empty());
        }
    }

    #[test]
    fn etag_and_vary() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        weaken_etag(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        weaken_etag(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h);
        add_vary(&mut h);
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        let mut star = HeaderMap::new();
        star.insert(header::VARY, HeaderValue::from_static("*"));
        add_vary(&mut star);
        assert_eq!(star.get_all(header::VARY).iter().count(), 1);
    }
}
