//! TEMPORARY stand-in (linear scan) until the real router lands; same public API.
#![allow(missing_docs, unreachable_pub, clippy::all)]
use std::borrow::Cow;
use std::sync::Arc;

use crate::model::Route;

pub struct Router {
    routes: Vec<Arc<Route>>,
}
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("bad regex")]
    InvalidRegex,
}
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}
pub struct RouteMatch<'r> {
    pub route: &'r Arc<Route>,
    pub matched_len: usize,
    pub captures: UriCaptures,
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UriCaptures {
    pub positional: Vec<Option<String>>,
    pub named: Vec<(String, String)>,
}
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PathError {
    #[error("bad path")]
    Bad,
}
impl Router {
    pub fn new(routes: &[Arc<Route>]) -> Result<Self, RouterError> {
        let mut routes = routes.to_vec();
        routes.sort_by_key(|r| {
            std::cmp::Reverse(
                r.paths
                    .as_ref()
                    .and_then(|p| p.first())
                    .map(|p| p.len())
                    .unwrap_or(0),
            )
        });
        Ok(Self { routes })
    }
    pub fn len(&self) -> usize {
        self.routes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
    pub fn find<'r>(&'r self, req: &RequestInfo<'_>) -> Option<RouteMatch<'r>> {
        for r in &self.routes {
            if let Some(m) = &r.methods {
                if !m.iter().any(|m| m == req.method) {
                    continue;
                }
            }
            let paths = r.paths.clone().unwrap_or_else(|| vec!["/".into()]);
            for p in &paths {
                if req.path.starts_with(p.as_str()) {
                    return Some(RouteMatch {
                        route: r,
                        matched_len: p.len(),
                        captures: UriCaptures::default(),
                    });
                }
            }
        }
        None
    }
}
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::Bad);
    }
    Ok(Cow::Borrowed(raw))
}
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    matched_len: usize,
    strip_path: bool,
) -> String {
    let base = service_path.unwrap_or("/");
    let rest = if strip_path {
        &request_path[matched_len.min(request_path.len())..]
    } else {
        request_path
    };
    let mut out = base.trim_end_matches('/').to_owned();
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if out.is_empty() { "/".into() } else { out }
}
