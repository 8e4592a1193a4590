//! Request router with Kong 3.x `traditional_compatible` semantics (kong-compat §2).
//!
//! [`Router::new`] compiles routes into *matchers*: one per plain path, one per regex path (all
//! regex paths of a route share one priority), or one for a route without paths. Every matcher
//! gets a priority key (kong-compat §2.2) and the matchers are sorted once, so a matcher's index
//! is its global rank and comparing two candidates is comparing two integers. Ties are broken by
//! route UUID (ascending), then by the path's position in the route, so the order of the input
//! slice never matters.
//!
//! Matchers are indexed by host: one bucket per exact host, per `*.suffix`, per `prefix.*`, and
//! one for routes without hosts. Each bucket is a byte trie over path prefixes (plain paths at
//! their full length, regex paths at their literal prefix, path-less matchers at the root). A
//! lookup visits only the buckets the request host selects and, in each, only the trie nodes on
//! the request path; each node's candidates are sorted by rank, so evaluation stops at the first
//! full match or as soon as a candidate cannot beat the best match found so far.
//!
//! Not decided here: route `protocols` (the proxy checks them after matching, §2.1), and
//! `sources`/`destinations`, which only count towards the match weight.

mod normalize;
mod pattern;
#[cfg(test)]
mod tests;
mod trie;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use http::header::HeaderName;
use uuid::Uuid;

use crate::model::Route;

pub use normalize::{PathError, normalize_path};
pub use upstream::upstream_path;

use pattern::{HostPattern, literal_prefix, regex_source, split_host_port};
use trie::{Entry, Trie};

/// Why a set of routes could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A `~` path is not a valid regex for the Rust `regex` crate.
    #[error("route {route}: invalid regex path '{path}': {reason}")]
    InvalidRegex {
        /// The route's id.
        route: Uuid,
        /// The path as configured (with its `~`).
        path: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A `headers` key is not a valid HTTP header name.
    #[error("route {route}: invalid header name '{name}'")]
    InvalidHeaderName {
        /// The route's id.
        route: Uuid,
        /// The configured header name.
        name: String,
    },
    /// A `~*` header value is not a valid regex.
    #[error("route {route}: invalid regex '{value}' for header '{name}': {reason}")]
    InvalidHeaderRegex {
        /// The route's id.
        route: Uuid,
        /// The header name.
        name: String,
        /// The configured value (with its `~*`).
        value: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// More matchers than the router can index (over `u32::MAX`).
    #[error("too many route paths to index")]
    TooManyMatchers,
}

/// The routing attributes of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Request method, compared exactly (case-sensitive) with route `methods`.
    pub method: &'a str,
    /// Host header value as received (may carry ":port"; compare case-insensitively).
    /// The port part is ignored: see [`RequestInfo::port`].
    pub host: &'a str,
    /// Local port the connection arrived on (compared only when a route host carries a port).
    /// As in Kong (`net.dst.port`), a route host `a.com:8080` requires Host `a.com` (any Host
    /// port) AND a connection to local port 8080.
    pub port: u16,
    /// Already-normalized path, no query string (see [`normalize_path`]).
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// The route chosen for a request.
#[derive(Debug, Clone)]
pub struct RouteMatch<'r> {
    /// The winning route.
    pub route: &'r Arc<Route>,
    /// Bytes of `path` consumed by the matching path: the prefix length for a plain path, the end
    /// of the regex match for a regex path, 0 when the route has no paths.
    pub matched_len: usize,
    /// Regex captures (empty for plain paths and for regex paths without capture groups):
    /// positional (index 0 = whole match) and named; these feed plugins
    /// (`$(uri_captures.name)`) later.
    pub captures: UriCaptures,
}

/// Captures of a regex path match (Kong's `uri_captures`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UriCaptures {
    /// Groups by position; index 0 is the whole match, `None` for groups that did not take part.
    pub positional: Vec<Option<String>>,
    /// Named groups that took part in the match, in pattern order.
    pub named: Vec<(String, String)>,
}

/// A compiled, immutable router (`Send + Sync`; share it behind an `Arc`).
#[derive(Debug)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    /// Sorted by priority: index == rank, 0 is the best.
    matchers: Vec<Matcher>,
    exact: HashMap<Box<str>, Trie>,
    /// Keyed by `.suffix` (from `*.suffix`).
    suffix: HashMap<Box<str>, Trie>,
    /// Keyed by `prefix.` (from `prefix.*`).
    prefix: HashMap<Box<str>, Trie>,
    hostless: Trie,
}

#[derive(Debug)]
struct CompiledRoute {
    route: Arc<Route>,
    methods: Option<Box<[Box<str>]>>,
    headers: Box<[HeaderCond]>,
    snis: Option<Box<[HostPattern]>>,
}

#[derive(Debug)]
struct HeaderCond {
    name: HeaderName,
    /// Lower-cased exact values.
    exact: Box<[Box<[u8]>]>,
    /// Case-insensitive, unanchored regexes (`~*` values).
    regexes: Box<[regex::bytes::Regex]>,
}

impl HeaderCond {
    /// Any value of the header (it may be repeated) equals or matches any configured value.
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            let v = v.as_bytes();
            self.exact.iter().any(|e| e.eq_ignore_ascii_case(v))
                || self.regexes.iter().any(|r| r.is_match(v))
        })
    }
}

#[derive(Debug)]
enum PathCond {
    /// The route has no paths.
    Any,
    /// A plain prefix of this many bytes (the trie guarantees the bytes).
    Prefix(usize),
    /// A regex path, anchored at the start.
    Regex {
        re: regex::Regex,
        /// Whether the pattern has capture groups (otherwise no captures are reported).
        groups: bool,
    },
}

#[derive(Debug)]
struct Matcher {
    route: u32,
    path: PathCond,
}

/// Kong's priority (kong-compat §2.2), most significant field first; higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PriorityKey {
    weight: u8,
    plain_hosts: bool,
    header_names: u8,
    regex: bool,
    /// Only for regex matchers (0 otherwise).
    regex_priority: i64,
    /// Only for plain-path matchers (0 otherwise).
    path_len: usize,
}

/// A matcher before ranking.
struct Pending {
    key: PriorityKey,
    id: Uuid,
    path_index: usize,
    route: u32,
    path: PathCond,
    /// Trie key: the plain path, the regex literal prefix, or empty.
    trie_key: String,
}

/// Whether an optional list field counts as set.
fn is_set<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn json_is_set(v: &Option<serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// The best candidate so far.
#[derive(Debug, Clone, Copy)]
struct Best {
    m: u32,
    len: usize,
}

/// Per-lookup inputs.
struct Ctx<'q> {
    req: &'q RequestInfo<'q>,
    /// `None`: plain-text connection (SNI conditions do not apply); `Some(sni)`: TLS.
    tls_sni: Option<&'q str>,
}

impl Router {
    /// Compile routes (callers already removed routes of disabled services). Route order in the
    /// slice must never change which route wins.
    pub fn new(routes: &[Arc<Route>]) -> Result<Self, RouterError> {
        let mut compiled = Vec::with_capacity(routes.len());
        let mut pending: Vec<Pending> = Vec::new();
        for (ri, r) in routes.iter().enumerate() {
            let route_idx = u32::try_from(ri).map_err(|_| RouterError::TooManyMatchers)?;
            compiled.push(compile_route(r)?);
            let has_hosts = is_set(&r.hosts);
            let hosts = r.hosts.as_deref().unwrap_or_default();
            let header_names = {
                let mut names: Vec<String> = r
                    .headers
                    .iter()
                    .flatten()
                    .map(|(k, _)| k.to_ascii_lowercase())
                    .collect();
                names.sort_unstable();
                names.dedup();
                u8::try_from(names.len()).unwrap_or(u8::MAX)
            };
            let weight = [
                is_set(&r.methods),
                has_hosts,
                r.headers.as_ref().is_some_and(|h| !h.is_empty()),
                is_set(&r.paths),
                is_set(&r.snis),
                json_is_set(&r.sources),
                json_is_set(&r.destinations),
            ]
            .into_iter()
            .filter(|b| *b)
            .count();
            let base = PriorityKey {
                weight: u8::try_from(weight).unwrap_or(u8::MAX),
                plain_hosts: has_hosts && hosts.iter().all(|h| !h.contains('*')),
                header_names,
                regex: false,
                regex_priority: 0,
                path_len: 0,
            };
            let paths = r.paths.as_deref().unwrap_or_default();
            if paths.is_empty() {
                pending.push(Pending {
                    key: base,
                    id: r.id,
                    path_index: 0,
                    route: route_idx,
                    path: PathCond::Any,
                    trie_key: String::new(),
                });
            }
            for (pi, p) in paths.iter().enumerate() {
                if let Some(pat) = p.strip_prefix('~') {
                    let re = regex::Regex::new(&regex_source(pat)).map_err(|e| {
                        RouterError::InvalidRegex {
                            route: r.id,
                            path: p.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    let groups = re.captures_len() > 1;
                    pending.push(Pending {
                        key: PriorityKey {
                            regex: true,
                            regex_priority: r.regex_priority,
                            ..base
                        },
                        id: r.id,
                        path_index: pi,
                        route: route_idx,
                        path: PathCond::Regex { re, groups },
                        trie_key: literal_prefix(pat),
                    });
                } else {
                    pending.push(Pending {
                        key: PriorityKey {
                            path_len: p.len(),
                            ..base
                        },
                        id: r.id,
                        path_index: pi,
                        route: route_idx,
                        path: PathCond::Prefix(p.len()),
                        trie_key: p.clone(),
                    });
                }
            }
        }

        // Rank: priority descending, then route id ascending, then path position.
        pending.sort_by(|a, b| {
            b.key
                .cmp(&a.key)
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.path_index.cmp(&b.path_index))
        });
        if u32::try_from(pending.len()).is_err() {
            return Err(RouterError::TooManyMatchers);
        }

        let mut router = Router {
            routes: Vec::new(),
            matchers: Vec::with_capacity(pending.len()),
            exact: HashMap::new(),
            suffix: HashMap::new(),
            prefix: HashMap::new(),
            hostless: Trie::default(),
        };
        for (rank, p) in pending.into_iter().enumerate() {
            let m = u32::try_from(rank).map_err(|_| RouterError::TooManyMatchers)?;
            let route = &routes[p.route as usize];
            let key = p.trie_key.as_bytes();
            match route.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => {
                    for h in hosts {
                        let (name, port) = split_host_port(h);
                        let entry = Entry { m, port };
                        let trie = match HostPattern::parse(name) {
                            HostPattern::Exact(n) => router.exact.entry(n.into()).or_default(),
                            HostPattern::Suffix(s) => router.suffix.entry(s.into()).or_default(),
                            HostPattern::Prefix(s) => router.prefix.entry(s.into()).or_default(),
                        };
                        trie.insert(key, entry);
                    }
                }
                _ => router.hostless.insert(key, Entry { m, port: None }),
            }
            router.matchers.push(Matcher {
                route: p.route,
                path: p.path,
            });
        }
        for t in router
            .exact
            .values_mut()
            .chain(router.suffix.values_mut())
            .chain(router.prefix.values_mut())
        {
            t.finish();
        }
        router.hostless.finish();
        router.routes = compiled;
        Ok(router)
    }

    /// Number of routes compiled.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the router has no routes (every lookup misses).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Find the best route for a request, or None (-> 404 "no Route matched with those values").
    ///
    /// For a plain-text connection: route `snis` conditions are not applied (as in Kong, where
    /// they only constrain `https` requests). For TLS connections use [`Router::find_tls`].
    pub fn find<'r>(&'r self, req: &RequestInfo<'_>) -> Option<RouteMatch<'r>> {
        self.find_inner(&Ctx { req, tls_sni: None })
    }

    /// [`Router::find`] for a request that arrived over TLS with the given SNI (`None` when the
    /// client sent none): routes with `snis` then also require the SNI to match one of them
    /// (exact, `*.suffix` or `prefix.*`, case-insensitive).
    pub fn find_tls<'r>(
        &'r self,
        req: &RequestInfo<'_>,
        sni: Option<&str>,
    ) -> Option<RouteMatch<'r>> {
        self.find_inner(&Ctx {
            req,
            tls_sni: Some(sni.unwrap_or("")),
        })
    }

    fn find_inner<'r>(&'r self, ctx: &Ctx<'_>) -> Option<RouteMatch<'r>> {
        let path = ctx.req.path.as_bytes();
        let mut best: Option<Best> = None;
        let mut visit = |entries: &[Entry]| self.eval(entries, ctx, &mut best);

        let has_host_buckets =
            !(self.exact.is_empty() && self.suffix.is_empty() && self.prefix.is_empty());
        if has_host_buckets {
            let (name, _) = split_host_port(ctx.req.host);
            let mut buf = [0u8; 256];
            let lowered;
            let host: &str = if !name.bytes().any(|b| b.is_ascii_uppercase()) {
                name
            } else if let Some(dst) = buf.get_mut(..name.len()) {
                dst.copy_from_slice(name.as_bytes());
                dst.make_ascii_lowercase();
                std::str::from_utf8(dst).unwrap_or(name)
            } else {
                lowered = name.to_ascii_lowercase();
                &lowered
            };
            if let Some(t) = self.exact.get(host) {
                t.walk(path, &mut visit);
            }
            if !self.suffix.is_empty() || !self.prefix.is_empty() {
                for (i, b) in host.bytes().enumerate() {
                    if b != b'.' {
                        continue;
                    }
                    if let Some(t) = host.get(i..).and_then(|k| self.suffix.get(k)) {
                        t.walk(path, &mut visit);
                    }
                    if let Some(t) = host.get(..=i).and_then(|k| self.prefix.get(k)) {
                        t.walk(path, &mut visit);
                    }
                }
            }
        }
        self.hostless.walk(path, &mut visit);

        let best = best?;
        let matcher = self.matchers.get(best.m as usize)?;
        let route = &self.routes.get(matcher.route as usize)?.route;
        let captures = match &matcher.path {
            PathCond::Regex { re, groups: true } => re
                .captures(ctx.req.path)
                .map(|c| UriCaptures {
                    positional: c.iter().map(|m| m.map(|m| m.as_str().to_owned())).collect(),
                    named: re
                        .capture_names()
                        .flatten()
                        .filter_map(|n| c.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
                        .collect(),
                })
                .unwrap_or_default(),
            _ => UriCaptures::default(),
        };
        Some(RouteMatch {
            route,
            matched_len: best.len,
            captures,
        })
    }

    /// Evaluates a rank-sorted candidate list, keeping the best full match.
    #[inline]
    fn eval(&self, entries: &[Entry], ctx: &Ctx<'_>, best: &mut Option<Best>) {
        for e in entries {
            if best.is_some_and(|b| e.m >= b.m) {
                return;
            }
            if let Some(len) = self.check(e, ctx) {
                *best = Some(Best { m: e.m, len });
                return;
            }
        }
    }

    /// Whether a candidate fully matches (its host bucket and path prefix already did); returns
    /// the matched path length.
    fn check(&self, e: &Entry, ctx: &Ctx<'_>) -> Option<usize> {
        let req = ctx.req;
        if e.port.is_some_and(|p| p != req.port) {
            return None;
        }
        let m = self.matchers.get(e.m as usize)?;
        let r = self.routes.get(m.route as usize)?;
        if let Some(methods) = &r.methods
            && !methods.iter().any(|x| **x == *req.method)
        {
            return None;
        }
        if let (Some(snis), Some(sni)) = (&r.snis, ctx.tls_sni)
            && !snis.iter().any(|p| p.matches(sni))
        {
            return None;
        }
        if !r.headers.iter().all(|h| h.matches(req.headers)) {
            return None;
        }
        match &m.path {
            PathCond::Any => Some(0),
            PathCond::Prefix(n) => Some(*n),
            PathCond::Regex { re, .. } => re.find(req.path).map(|m| m.end()),
        }
    }
}

/// Compiles the per-route conditions shared by all of a route's matchers.
fn compile_route(r: &Arc<Route>) -> Result<CompiledRoute, RouterError> {
    let methods = r
        .methods
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| m.iter().map(|s| s.as_str().into()).collect());
    let snis = r
        .snis
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| s.iter().map(|s| HostPattern::parse(s)).collect());
    let mut headers = Vec::new();
    for (name, values) in r.headers.iter().flatten() {
        let hname = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
            RouterError::InvalidHeaderName {
                route: r.id,
                name: name.clone(),
            }
        })?;
        let mut exact = Vec::new();
        let mut regexes = Vec::new();
        for v in values {
            if let Some(pat) = v.strip_prefix("~*") {
                let re = regex::bytes::RegexBuilder::new(pat)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| RouterError::InvalidHeaderRegex {
                        route: r.id,
                        name: name.clone(),
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
                regexes.push(re);
            } else {
                exact.push(v.to_ascii_lowercase().into_bytes().into_boxed_slice());
            }
        }
        headers.push(HeaderCond {
            name: hname,
            exact: exact.into(),
            regexes: regexes.into(),
        });
    }
    Ok(CompiledRoute {
        route: Arc::clone(r),
        methods,
        headers: headers.into(),
        snis,
    })
}
