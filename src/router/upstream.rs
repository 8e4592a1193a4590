//! Upstream path joining, `path_handling` v0 (kong-compat §2.4, §2.5).
//!
//! This is the only joining behaviour of Kong's `traditional_compatible` router: the route's
//! `path_handling` field is ignored.

/// Kong's `sanitize_uri_postfix`: a remainder of `.`/`..` becomes empty, and a leading `./` or
/// `../` is dropped.
fn sanitize_postfix(postfix: &str) -> &str {
    match postfix {
        "." | ".." => "",
        p => p
            .strip_prefix("./")
            .or_else(|| p.strip_prefix("../"))
            .unwrap_or(p),
    }
}

/// The upstream path per kong-compat §2.5 (path_handling v0, the only behaviour in
/// traditional_compatible).
///
/// `service_path` is `service.path` (`None` -> `/`), `request_path` the normalized request path
/// (no query; the caller re-appends the query string), `matched_len` comes from
/// [`RouteMatch::matched_len`](super::RouteMatch::matched_len) and `strip_path` from the route.
/// With `strip_path` the first `matched_len` bytes of the request path are removed (an
/// out-of-range `matched_len` strips everything); otherwise the whole request path is appended.
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    matched_len: usize,
    strip_path: bool,
) -> String {
    let base = match service_path {
        Some(p) if !p.is_empty() => p,
        _ => "/",
    };
    let req = request_path;
    let req_ends_with_slash = req.ends_with('/');

    if let Some(base_trimmed) = base.strip_suffix('/') {
        if strip_path {
            let postfix = sanitize_postfix(req.get(matched_len..).unwrap_or(""));
            if postfix.is_empty() {
                if base == "/" {
                    "/".to_owned()
                } else if req_ends_with_slash {
                    base.to_owned()
                } else {
                    base_trimmed.to_owned()
                }
            } else if postfix.starts_with('/') {
                // Avoid a double slash.
                [base_trimmed, postfix].concat()
            } else {
                [base, postfix].concat()
            }
        } else {
            // Keep the incoming path, minus its leading slash.
            [base, req.strip_prefix('/').unwrap_or(req)].concat()
        }
    } else if strip_path {
        let postfix = sanitize_postfix(req.get(matched_len..).unwrap_or(""));
        if postfix.is_empty() {
            if req.len() > 1 && req_ends_with_slash {
                [base, "/"].concat()
            } else {
                base.to_owned()
            }
        } else if postfix.starts_with('/') {
            [base, postfix].concat()
        } else {
            [base, "/", postfix].concat()
        }
    } else if req == "/" {
        base.to_owned()
    } else {
        [base, req].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of kong-compat §2.5: (route path, strip_path, service.path, request, upstream).
    #[test]
    fn kong_compat_2_5_table() {
        let table: &[(&str, bool, Option<&str>, &str, &str)] = &[
            ("/api", true, None, "/api/users", "/users"),
            ("/api", true, None, "/api", "/"),
            ("/api", true, None, "/apiusers", "/users"),
            ("/api", true, Some("/v1"), "/api/users", "/v1/users"),
            ("/api", true, Some("/v1"), "/api", "/v1"),
            ("/api", true, Some("/v1"), "/api/", "/v1/"),
            ("/api", true, Some("/v1"), "/apiusers", "/v1/users"),
            ("/api", true, Some("/v1/"), "/api/users", "/v1/users"),
            ("/api", true, Some("/v1/"), "/api", "/v1"),
            ("/api", false, None, "/api/users", "/api/users"),
            ("/api", false, Some("/v1"), "/api/users", "/v1/api/users"),
            ("/api", false, Some("/v1/"), "/api/users", "/v1/api/users"),
            ("/", false, Some("/v1"), "/", "/v1"),
        ];
        for &(route_path, strip, service_path, request, want) in table {
            assert!(request.starts_with(route_path));
            let got = upstream_path(service_path, request, route_path.len(), strip);
            assert_eq!(
                got, want,
                "route {route_path} strip {strip} service {service_path:?} request {request}"
            );
        }
    }

    #[test]
    fn trailing_slash_and_sanitizing_rules() {
        // Empty remainder keeps a trailing slash only if the client sent one.
        assert_eq!(upstream_path(Some("/v1"), "/api/", 5, true), "/v1/");
        assert_eq!(upstream_path(Some("/v1/"), "/api/", 5, true), "/v1/");
        assert_eq!(upstream_path(Some("/v1/"), "/api", 4, true), "/v1");
        assert_eq!(upstream_path(None, "/api/", 5, true), "/");
        // Postfix sanitizing.
        assert_eq!(upstream_path(Some("/v1"), "/api.", 4, true), "/v1");
        assert_eq!(upstream_path(Some("/v1"), "/api..", 4, true), "/v1");
        assert_eq!(upstream_path(Some("/v1"), "/api./x", 4, true), "/v1/x");
        assert_eq!(upstream_path(Some("/v1"), "/api../x", 4, true), "/v1/x");
        // No paths on the route: nothing stripped.
        assert_eq!(upstream_path(Some("/v1"), "/x/y", 0, true), "/v1/x/y");
        assert_eq!(upstream_path(None, "/", 0, true), "/");
        assert_eq!(upstream_path(None, "/", 0, false), "/");
        // Out-of-range matched_len strips everything rather than panicking.
        assert_eq!(upstream_path(Some("/v1"), "/a", 99, true), "/v1");
    }
}
