//! `request-transformer` (kong-compat §4.4, priority 801): rewrites the request on its way
//! upstream: `replace.uri`, `http_method`, then headers, body and query string, each with
//! remove -> rename -> replace -> add -> append.
//!
//! Differences from Kong worth knowing:
//! - Templates: Kong evaluates `$(...)` as sandboxed Lua. gwctl accepts the common subset,
//!   checked when the plugin is configured (anything else is a schema violation, never a runtime
//!   500): `headers.x` / `headers["x-y"]`, `query_params.x` / `query_params["x"]`,
//!   `uri_captures.name` / `uri_captures[1]` / `uri_captures["name"]`, string literals
//!   (`$("$(literal)")`), chained with `or` (`$(headers.x or "none")`). Like penlight's
//!   templates, a missing value without a default renders as the empty string. Repeated
//!   headers or query arguments render joined with `", "` (Kong renders Lua's `table: 0x..`).
//!   Templates read the request as it was when the plugin started (Kong loads it lazily, which
//!   in practice is the same: a removed or replaced header still renders its old value).
//! - Bodies are read into memory up to [`BODY_LIMIT`] bytes (Kong keeps `client_body_buffer_size`,
//!   8 KiB by default, in memory and past that its transformer sees an empty body and may drop
//!   the client's fields). A larger body is sent upstream untouched.
//! - `append.headers` never touches `Host`; `replace.headers` with `Host` sets the upstream
//!   Host header (and SNI) whatever the route's `preserve_host` says.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::warn;

use super::transform_common::{
    Args, append_value, decode_args, encode_args, header_names, header_pairs, header_renames,
    lua_truthy, names, pairs, parse_entries,
};
use super::{BodyError, BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};
use crate::router::UriCaptures;

/// The largest request body the plugin reads into memory to transform (8 MiB).
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The plugin kind.
pub struct Kind;

/// `config.remove`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoveConfig {
    /// Header names.
    pub headers: Vec<String>,
    /// Query argument names.
    pub querystring: Vec<String>,
    /// Body parameter names.
    pub body: Vec<String>,
}

/// `config.rename` / `add` / `append` (`name:value` entries) and `replace` (plus `uri`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PairsConfig {
    /// Header entries.
    pub headers: Vec<String>,
    /// Query argument entries.
    pub querystring: Vec<String>,
    /// Body parameter entries.
    pub body: Vec<String>,
    /// `replace.uri`: the new upstream path (a template).
    #[serde(default)]
    pub uri: Option<String>,
}

/// `config` of request-transformer.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestTransformerConfig {
    /// Method override.
    pub http_method: Option<String>,
    /// Removals.
    pub remove: RemoveConfig,
    /// Renames (`old:new`).
    pub rename: PairsConfig,
    /// Replacements (only where present).
    pub replace: PairsConfig,
    /// Additions (only where absent).
    pub add: PairsConfig,
    /// Appended values.
    pub append: PairsConfig,
}

fn check_method(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

fn check_entry_template(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    let value = super::transform_common::split_pair(s).1.unwrap_or_default();
    Template::parse(value).map(|_| ())
}

fn check_template(v: &Value) -> Result<(), String> {
    Template::parse(v.as_str().unwrap_or_default()).map(|_| ())
}

fn pairs_record(with_uri: bool) -> Field {
    let t = Some(check_entry_template as super::transform_common::EntryCheck);
    let mut fields = vec![
        ("body", pairs(t)),
        ("headers", header_pairs(t)),
        ("querystring", pairs(t)),
    ];
    if with_uri {
        fields.push(("uri", Field::string().validator(check_template)));
    }
    let name = if with_uri { "replace" } else { "pairs" };
    Field::record(Schema::new(name, fields)).required()
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "request-transformer"
    }
    fn priority(&self) -> i64 {
        801
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                ("http_method", Field::string().validator(check_method)),
                (
                    "remove",
                    Field::record(Schema::new(
                        "remove",
                        vec![
                            ("body", names()),
                            ("headers", header_names()),
                            ("querystring", names()),
                        ],
                    ))
                    .required(),
                ),
                (
                    "rename",
                    Field::record(Schema::new(
                        "rename",
                        vec![
                            ("body", pairs(None)),
                            ("headers", header_renames()),
                            ("querystring", pairs(None)),
                        ],
                    ))
                    .required(),
                ),
                ("replace", pairs_record(true)),
                ("add", pairs_record(false)),
                ("append", pairs_record(false)),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: RequestTransformerConfig = typed_config(plugin)?;
        RequestTransformer::new(&conf).map(|h| Arc::new(h) as Arc<dyn Handler>)
    }
}

// ---------------------------------------------------------------------------------------------
// Templates

/// Where a template term reads from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Headers(String),
    Query(String),
    CaptureName(String),
    CaptureIndex(usize),
    Literal(String),
}

/// One `$(a or b or "c")`.
#[derive(Debug, Clone, PartialEq)]
struct Expr(Vec<Source>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Expr(Expr),
}

/// A compiled template: literal text and `$(...)` expressions.
#[derive(Debug, Clone, PartialEq)]
struct Template(Vec<Piece>);

/// What templates read: the request as the plugin first saw it.
struct Env {
    headers: HeaderMap,
    query: Vec<(String, Option<String>)>,
    captures: UriCaptures,
}

impl Env {
    fn of(ctx: &Ctx) -> Self {
        Self {
            headers: ctx.headers.clone(),
            query: ctx.query.as_deref().map(decode_args).unwrap_or_default(),
            captures: ctx.captures.clone(),
        }
    }

    fn lookup(&self, s: &Source) -> Option<String> {
        match s {
            Source::Literal(l) => Some(l.clone()),
            Source::Headers(name) => {
                // ngx.req.get_headers(): lower case, `_` read as `-`.
                let name = name.to_ascii_lowercase().replace('_', "-");
                let vals: Vec<String> = self
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                (!vals.is_empty()).then(|| vals.join(", "))
            }
            Source::Query(name) => {
                let vals: Vec<&str> = self
                    .query
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.as_deref().unwrap_or("true"))
                    .collect();
                (!vals.is_empty()).then(|| vals.join(", "))
            }
            Source::CaptureName(n) => self
                .captures
                .named
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone()),
            Source::CaptureIndex(i) => self.captures.positional.get(*i).cloned().flatten(),
        }
    }
}

impl Template {
    /// Compile `src`; an unsupported expression is an error naming it.
    fn parse(src: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = src;
        while let Some(at) = rest.find("$(") {
            // Like Lua's `%b()`: the balanced parenthesis closing `$(`.
            let body = &rest[at + 1..];
            let mut depth = 0usize;
            let mut end = None;
            for (i, c) in body.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                // No balanced close: the rest is plain text (penlight leaves it as is).
                break;
            };
            text.push_str(&rest[..at]);
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            let inner = &body[1..end];
            let expr = parse_expr(inner)
                .map_err(|e| format!("invalid template expression '$({inner})': {e}"))?;
            pieces.push(Piece::Expr(expr));
            rest = &body[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self(pieces))
    }

    fn is_plain(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    fn render(&self, env: Option<&Env>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(Expr(terms)) => {
                    let v = terms.iter().find_map(|t| match t {
                        Source::Literal(l) => Some(l.clone()),
                        _ => env.and_then(|env| env.lookup(t)),
                    });
                    out.push_str(v.as_deref().unwrap_or(""));
                }
            }
        }
        out
    }
}

/// A tiny tokenizer/parser for `term (or term)*`.
fn parse_expr(src: &str) -> Result<Expr, String> {
    let mut p = Parser { s: src, i: 0 };
    let mut terms = vec![p.term()?];
    loop {
        p.ws();
        if p.i == p.s.len() {
            break;
        }
        if p.keyword("or") {
            terms.push(p.term()?);
        } else {
            return Err(format!("unexpected '{}'", &p.s[p.i..]));
        }
    }
    Ok(Expr(terms))
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s[self.i..].starts_with([' ', '\t']) {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn ident(&mut self) -> Option<&str> {
        let start = self.i;
        let rest = &self.s[start..];
        let first = rest.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.i += len;
        Some(&self.s[start..start + len])
    }
    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.i;
        match self.ident() {
            Some(w) if w == kw => true,
            _ => {
                self.i = save;
                false
            }
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let Some(q) = self.peek().filter(|c| *c == '"' || *c == '\'') else {
            return Err("expected a string".into());
        };
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.s[self.i..].char_indices();
        while let Some((off, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('\\' | '"' | '\''))) => out.push(e),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    _ => return Err("unsupported escape in string".into()),
                },
                c if c == q => {
                    self.i += off + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
    fn term(&mut self) -> Result<Source, String> {
        self.ws();
        if matches!(self.peek(), Some('"' | '\'')) {
            return self.string().map(Source::Literal);
        }
        let start = self.i;
        let Some(base) = self.ident().map(str::to_owned) else {
            return Err(format!("unsupported expression '{}'", &self.s[start..]));
        };
        if !matches!(base.as_str(), "headers" | "query_params" | "uri_captures") {
            return Err(format!(
                "unknown variable '{base}' (expected headers, query_params or uri_captures)"
            ));
        }
        self.ws();
        enum Key {
            Name(String),
            Index(usize),
        }
        let key = match self.peek() {
            Some('.') => {
                self.i += 1;
                self.ws();
                let Some(n) = self.ident() else {
                    return Err(format!("expected a name after '{base}.'"));
                };
                Key::Name(n.to_owned())
            }
            Some('[') => {
                self.i += 1;
                self.ws();
                let k = if matches!(self.peek(), Some('"' | '\'')) {
                    Key::Name(self.string()?)
                } else {
                    let digits: String = self.s[self.i..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if digits.is_empty() {
                        return Err(format!("expected a string or an index in '{base}[...]'"));
                    }
                    self.i += digits.len();
                    Key::Index(digits.parse().map_err(|_| "index too large".to_owned())?)
                };
                self.ws();
                if self.peek() != Some(']') {
                    return Err("expected ']'".into());
                }
                self.i += 1;
                k
            }
            _ => return Err(format!("'{base}' must be indexed ('{base}.name')")),
        };
        Ok(match (base.as_str(), key) {
            ("headers", Key::Name(n)) => Source::Headers(n),
            ("query_params", Key::Name(n)) => Source::Query(n),
            ("uri_captures", Key::Name(n)) => Source::CaptureName(n),
            ("uri_captures", Key::Index(i)) => Source::CaptureIndex(i),
            (b, Key::Index(_)) => return Err(format!("'{b}' has no numeric indexes")),
            _ => return Err("unsupported expression".into()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The handler

/// A compiled `name:value` entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    value: Option<Template>,
}

impl Entry {
    fn value(&self, env: Option<&Env>) -> Option<String> {
        self.value.as_ref().map(|t| t.render(env))
    }
}

#[derive(Debug, Clone, Default)]
struct Rules {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    replace: Vec<Entry>,
    add: Vec<Entry>,
    append: Vec<Entry>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}

struct RequestTransformer {
    uri: Option<Template>,
    method: Option<Method>,
    headers: Rules,
    query: Rules,
    body: Rules,
    /// Some template reads the request.
    templated: bool,
}

fn entries(list: &[String]) -> Result<Vec<Entry>, String> {
    parse_entries(list)
        .into_iter()
        .map(|(name, value)| {
            Ok(Entry {
                name,
                value: value.as_deref().map(Template::parse).transpose()?,
            })
        })
        .collect()
}

fn renames(list: &[String]) -> Vec<(String, String)> {
    parse_entries(list)
        .into_iter()
        .filter_map(|(o, n)| n.map(|n| (o, n)))
        .collect()
}

fn rules(
    c: &RequestTransformerConfig,
    pick: fn(&PairsConfig) -> &Vec<String>,
) -> Result<Rules, String> {
    Ok(Rules {
        remove: Vec::new(),
        rename: renames(pick(&c.rename)),
        replace: entries(pick(&c.replace))?,
        add: entries(pick(&c.add))?,
        append: entries(pick(&c.append))?,
    })
}

impl RequestTransformer {
    fn new(c: &RequestTransformerConfig) -> Result<Self, String> {
        let mut headers = rules(c, |p| &p.headers)?;
        headers.remove = c
            .remove
            .headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let mut query = rules(c, |p| &p.querystring)?;
        query.remove = c.remove.querystring.clone();
        let mut body = rules(c, |p| &p.body)?;
        body.remove = c.remove.body.clone();
        let uri = c.replace.uri.as_deref().map(Template::parse).transpose()?;
        let method = c
            .http_method
            .as_deref()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string()))
            .transpose()?;
        let templated = uri.as_ref().is_some_and(|t| !t.is_plain())
            || [&headers, &query, &body].iter().any(|r| {
                r.replace
                    .iter()
                    .chain(&r.add)
                    .chain(&r.append)
                    .any(|e| e.value.as_ref().is_some_and(|t| !t.is_plain()))
            });
        Ok(Self {
            uri,
            method,
            headers,
            query,
            body,
            templated,
        })
    }
}

/// The kind of body the plugin can edit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyKind {
    Json,
    Form,
    Multipart,
}

fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers
        .get(CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    if ct.contains("application/json") {
        Some(BodyKind::Json)
    } else if ct.contains("multipart/form-data") {
        Some(BodyKind::Multipart)
    } else if ct.contains("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// Why the body could not be edited.
enum Read {
    Ok(Bytes),
    /// Too large (or declared so): leave it alone.
    Skip,
    /// The client's body broke.
    Failed,
}

async fn read(ctx: &mut Ctx) -> Read {
    let declared = ctx
        .header(CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        warn!(
            limit = BODY_LIMIT,
            "request-transformer: body too large to transform"
        );
        return Read::Skip;
    }
    match ctx.read_body(BODY_LIMIT).await {
        Ok(b) => Read::Ok(b.clone()),
        Err(BodyError::TooLarge(_)) => {
            warn!(
                limit = BODY_LIMIT,
                "request-transformer: body too large to transform"
            );
            Read::Skip
        }
        Err(BodyError::Read(e)) => {
            warn!(error = %e, "request-transformer: reading the request body");
            Read::Failed
        }
    }
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl RequestTransformer {
    fn transform_uri(&self, ctx: &mut Ctx, env: Option<&Env>) {
        let Some(t) = &self.uri else { return };
        let rendered = t.render(env);
        if rendered.is_empty() {
            return;
        }
        // Kong's set_path escapes what a path cannot carry.
        const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'#')
            .add(b'<')
            .add(b'>')
            .add(b'?')
            .add(b'`')
            .add(b'{')
            .add(b'}')
            .add(b'\\')
            .add(b'^')
            .add(b'|');
        let mut path = percent_encoding::utf8_percent_encode(&rendered, PATH).to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        ctx.upstream_path = Some(path);
    }

    async fn transform_method(&self, ctx: &mut Ctx) -> Result<(), ()> {
        let Some(m) = &self.method else { return Ok(()) };
        ctx.method = m.clone();
        if !matches!(m.as_str(), "GET" | "HEAD" | "TRACE")
            || body_kind(&ctx.headers) != Some(BodyKind::Form)
        {
            return Ok(());
        }
        let body = match read(ctx).await {
            Read::Ok(b) => b,
            Read::Skip => return Ok(()),
            Read::Failed => return Err(()),
        };
        let form = decode_args(&String::from_utf8_lossy(&body));
        if form.is_empty() {
            return Ok(());
        }
        let mut query = ctx.query.as_deref().map(decode_args).unwrap_or_default();
        query.extend(form);
        set_query(ctx, query);
        Ok(())
    }

    fn transform_headers(&self, ctx: &mut Ctx, env: Option<&Env>) {
        let r = &self.headers;
        if r.is_empty() {
            return;
        }
        let h = &mut ctx.headers;
        for name in &r.remove {
            if name != "host" {
                h.remove(name.as_str());
            }
        }
        for (old, new) in &r.rename {
            let (Ok(old), Ok(new)) = (
                HeaderName::from_bytes(old.as_bytes()),
                HeaderName::from_bytes(new.as_bytes()),
            ) else {
                continue;
            };
            if old == HOST || old == new {
                continue;
            }
            let vals: Vec<HeaderValue> = h.get_all(&old).iter().cloned().collect();
            if vals.is_empty() {
                continue;
            }
            h.remove(&old);
            h.remove(&new);
            if new == HOST {
                ctx.upstream_host = vals.first().cloned();
            }
            for v in vals {
                h.append(new.clone(), v);
            }
        }
        for e in &r.replace {
            let (Ok(name), Some(v)) = (
                HeaderName::from_bytes(e.name.as_bytes()),
                e.value(env).as_deref().and_then(header_value),
            ) else {
                continue;
            };
            if name == HOST {
                ctx.upstream_host = Some(v.clone());
                h.insert(name, v);
            } else if h.contains_key(&name) {
                h.insert(name, v);
            }
        }
        for e in &r.add {
            let (Ok(name), Some(v)) = (
                HeaderName::from_bytes(e.name.as_bytes()),
                e.value(env).as_deref().and_then(header_value),
            ) else {
                continue;
            };
            if name != HOST && !h.contains_key(&name) {
                h.insert(name, v);
            }
        }
        for e in &r.append {
            let (Ok(name), Some(v)) = (
                HeaderName::from_bytes(e.name.as_bytes()),
                e.value(env).as_deref().and_then(header_value),
            ) else {
                continue;
            };
            if name != HOST {
                h.append(name, v);
            }
        }
    }

    async fn transform_body(&self, ctx: &mut Ctx, env: Option<&Env>) -> Result<(), ()> {
        let r = &self.body;
        if r.is_empty() {
            return Ok(());
        }
        let Some(kind) = body_kind(&ctx.headers) else {
            return Ok(());
        };
        let body = match read(ctx).await {
            Read::Ok(b) => b,
            Read::Skip => return Ok(()),
            Read::Failed => return Err(()),
        };
        let out = match kind {
            BodyKind::Json => json_body(r, &body, env),
            BodyKind::Form => form_body(r, &body, env),
            BodyKind::Multipart => {
                let ct = ctx
                    .header(CONTENT_TYPE.as_str())
                    .unwrap_or_default()
                    .to_owned();
                multipart_body(r, body, &ct, env).await
            }
        };
        if let Some(out) = out {
            ctx.set_body(out);
        }
        Ok(())
    }

    fn transform_query(&self, ctx: &mut Ctx, env: Option<&Env>) {
        let r = &self.query;
        if r.is_empty() {
            return;
        }
        let mut q = Args(ctx.query.as_deref().map(decode_args).unwrap_or_default());
        for name in &r.remove {
            q.remove(name);
        }
        for (old, new) in &r.rename {
            q.rename(old, new);
        }
        for e in &r.replace {
            if let Some(v) = e.value(env) {
                q.replace(&e.name, &v);
            }
        }
        for e in &r.add {
            if let Some(v) = e.value(env) {
                q.add(&e.name, &v);
            }
        }
        for e in &r.append {
            if let Some(v) = e.value(env) {
                q.append(&e.name, &v);
            }
        }
        set_query(ctx, q.0);
    }
}

/// `kong.service.request.set_query`: arguments sorted by name (values keep their order).
fn set_query(ctx: &mut Ctx, mut args: Vec<(String, Option<String>)>) {
    args.sort_by(|a, b| a.0.cmp(&b.0));
    let q = encode_args(&args);
    ctx.query = (!q.is_empty()).then_some(q);
}

fn json_body(r: &Rules, body: &[u8], env: Option<&Env>) -> Option<Bytes> {
    let has_content = !body.is_empty();
    let mut obj: Map<String, Value> = if has_content {
        match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => m,
            // Not JSON, or not an object: leave it alone.
            _ => return None,
        }
    } else {
        Map::new()
    };
    let mut changed = false;
    if has_content {
        for name in &r.remove {
            changed |= obj.remove(name).is_some();
        }
        for (old, new) in &r.rename {
            if old != new
                && lua_truthy(obj.get(old))
                && let Some(v) = obj.remove(old)
            {
                obj.insert(new.clone(), v);
                changed = true;
            }
        }
        for e in &r.replace {
            if let Some(v) = e.value(env)
                && lua_truthy(obj.get(&e.name))
            {
                obj.insert(e.name.clone(), Value::String(v));
                changed = true;
            }
        }
    }
    for e in &r.add {
        if let Some(v) = e.value(env)
            && !lua_truthy(obj.get(&e.name))
        {
            obj.insert(e.name.clone(), Value::String(v));
            changed = true;
        }
    }
    for e in &r.append {
        if let Some(v) = e.value(env) {
            let cur = obj.remove(&e.name);
            obj.insert(e.name.clone(), append_value(cur, Value::String(v)));
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&Value::Object(obj))
        .ok()
        .map(Bytes::from)
}

fn form_body(r: &Rules, body: &[u8], env: Option<&Env>) -> Option<Bytes> {
    let has_content = !body.is_empty();
    let mut form = Args(decode_args(&String::from_utf8_lossy(body)));
    let mut changed = false;
    if has_content {
        for name in &r.remove {
            changed |= form.remove(name);
        }
        for (old, new) in &r.rename {
            changed |= form.rename(old, new);
        }
        for e in &r.replace {
            if let Some(v) = e.value(env) {
                changed |= form.replace(&e.name, &v);
            }
        }
    }
    for e in &r.add {
        if let Some(v) = e.value(env) {
            changed |= form.add(&e.name, &v);
        }
    }
    for e in &r.append {
        if let Some(v) = e.value(env) {
            form.append(&e.name, &v);
            changed = true;
        }
    }
    changed.then(|| Bytes::from(encode_args(&form.0)))
}

/// One part of a multipart body: its headers as received (or generated) and its content.
struct Part {
    name: Option<String>,
    head: Vec<u8>,
    data: Bytes,
}

impl Part {
    fn simple(name: &str, value: &str) -> Self {
        let quoted = name.replace('"', "%22").replace(['\r', '\n'], " ");
        Self {
            name: Some(name.to_owned()),
            head: format!("Content-Disposition: form-data; name=\"{quoted}\"\r\n").into_bytes(),
            data: Bytes::copy_from_slice(value.as_bytes()),
        }
    }
}

async fn parse_multipart(body: Bytes, boundary: &str) -> Option<Vec<Part>> {
    if body.is_empty() {
        return Some(Vec::new());
    }
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut mp = multer::Multipart::new(stream, boundary.to_owned());
    let mut parts = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().map(str::to_owned);
                let mut head = Vec::new();
                for (k, v) in field.headers() {
                    head.extend_from_slice(k.as_str().as_bytes());
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(v.as_bytes());
                    head.extend_from_slice(b"\r\n");
                }
                let data = field.bytes().await.ok()?;
                parts.push(Part { name, head, data });
            }
            Ok(None) => return Some(parts),
            Err(e) => {
                warn!(error = %e, "request-transformer: malformed multipart body left as is");
                return None;
            }
        }
    }
}

async fn multipart_body(
    r: &Rules,
    body: Bytes,
    content_type: &str,
    env: Option<&Env>,
) -> Option<Bytes> {
    let boundary = multer::parse_boundary(content_type).ok()?;
    let has_content = !body.is_empty();
    let mut parts = parse_multipart(body, &boundary).await?;
    let find =
        |parts: &[Part], name: &str| parts.iter().position(|p| p.name.as_deref() == Some(name));
    let set_simple = |parts: &mut Vec<Part>, name: &str, value: &str| match find(parts, name) {
        Some(i) => parts[i].data = Bytes::copy_from_slice(value.as_bytes()),
        None => parts.push(Part::simple(name, value)),
    };
    let delete =
        |parts: &mut Vec<Part>, name: &str| parts.retain(|p| p.name.as_deref() != Some(name));
    let mut changed = false;
    if has_content {
        // lua-multipart order in Kong: rename, remove, replace.
        for (old, new) in &r.rename {
            if old == new {
                continue;
            }
            if let Some(i) = find(&parts, old) {
                let value = String::from_utf8_lossy(&parts[i].data).into_owned();
                set_simple(&mut parts, new, &value);
                delete(&mut parts, old);
                changed = true;
            }
        }
        for name in &r.remove {
            if find(&parts, name).is_some() {
                delete(&mut parts, name);
                changed = true;
            }
        }
        for e in &r.replace {
            if let Some(v) = e.value(env)
                && find(&parts, &e.name).is_some()
            {
                delete(&mut parts, &e.name);
                parts.push(Part::simple(&e.name, &v));
                changed = true;
            }
        }
    }
    for e in &r.add {
        if let Some(v) = e.value(env)
            && find(&parts, &e.name).is_none()
        {
            parts.push(Part::simple(&e.name, &v));
            changed = true;
        }
    }
    // No append for multipart bodies (as in Kong).
    if !changed {
        return None;
    }
    let mut out = Vec::new();
    for p in &parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.head);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Some(Bytes::from(out))
}

#[async_trait]
impl Handler for RequestTransformer {
    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let env = self.templated.then(|| Env::of(ctx));
        let env = env.as_ref();
        self.transform_uri(ctx, env);
        let failed = self.transform_method(ctx).await.is_err();
        if !failed {
            self.transform_headers(ctx, env);
        }
        if failed || self.transform_body(ctx, env).await.is_err() {
            return Flow::Respond(crate::proxy::respond::error_with(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &ctx.request_id,
                ctx.headers.get(http::header::ACCEPT),
            ));
        }
        self.transform_query(ctx, env);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        let t = Template::parse("a-$(headers.x_y)-$(query_params[\"q\"] or 'd')").unwrap();
        assert_eq!(
            t,
            Template(vec![
                Piece::Text("a-".into()),
                Piece::Expr(Expr(vec![Source::Headers("x_y".into())])),
                Piece::Text("-".into()),
                Piece::Expr(Expr(vec![
                    Source::Query("q".into()),
                    Source::Literal("d".into())
                ])),
            ])
        );
        assert_eq!(
            Template::parse("$(uri_captures[1])$(uri_captures['n'])$(uri_captures.n)").unwrap(),
            Template(vec![
                Piece::Expr(Expr(vec![Source::CaptureIndex(1)])),
                Piece::Expr(Expr(vec![Source::CaptureName("n".into())])),
                Piece::Expr(Expr(vec![Source::CaptureName("n".into())])),
            ])
        );
        assert!(Template::parse("plain $ text (x)").unwrap().is_plain());
        assert_eq!(
            Template::parse("$('$(uri_captures.user1)')")
                .unwrap()
                .render(None),
            "$(uri_captures.user1)"
        );
        for bad in [
            "$(foo.x)",
            "$(headers)",
            "$(10 * uri_captures.a)",
            "$(headers.x and 1)",
            "$(shared.written = true)",
            "$(headers[1])",
            "$(require('x'))",
            "$(headers['x)",
            "$()",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_render() {
        let mut headers = HeaderMap::new();
        headers.insert("x-y", HeaderValue::from_static("1"));
        headers.append("m", HeaderValue::from_static("a"));
        headers.append("m", HeaderValue::from_static("b"));
        let env = Env {
            headers,
            query: decode_args("q=2&flag"),
            captures: UriCaptures {
                positional: vec![Some("/u/bob".into()), Some("bob".into())],
                named: vec![("user".into(), "bob".into())],
            },
        };
        let r = |s: &str| Template::parse(s).unwrap().render(Some(&env));
        assert_eq!(
            r("$(headers.x_y)|$(headers['X-Y'])|$(headers.m)"),
            "1|1|a, b"
        );
        assert_eq!(r("$(query_params.q)$(query_params.flag)"), "2true");
        assert_eq!(
            r("$(uri_captures[0])|$(uri_captures[1])|$(uri_captures.user)"),
            "/u/bob|bob|bob"
        );
        assert_eq!(r("[$(headers.none)]"), "[]");
        assert_eq!(r("$(headers.none or query_params.none or \"d\")"), "d");
        assert_eq!(r("$(uri_captures[7] or 'x')"), "x");
    }
}
