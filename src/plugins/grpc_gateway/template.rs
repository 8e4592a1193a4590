//! `google.api.http` path templates (`/v1/{name=users/*}/books/{book_id}:publish`): parsing,
//! matching a request path (capturing the variables as field paths), and rendering a template
//! as a Kong regex route path for discovered routes.
//!
//! Grammar (google/api/http.proto):
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `**` matches zero or more segments and may only come last. A variable without `=` matches
//! one segment. Single-segment values are percent-decoded; multi-segment values keep their `/`.

use std::fmt::Write as _;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Must equal this text.
    Literal(String),
    /// `*`: one segment.
    One,
    /// `**`: the rest (zero or more segments).
    Rest,
}

/// A variable: the field path it binds and the range of segments it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Var {
    field: String,
    start: usize,
    end: usize,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segs: Vec<Seg>,
    vars: Vec<Var>,
    verb: Option<String>,
}

/// Why a template is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template '{template}': {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.~%!$&'()+,;=@".contains(c)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PathTemplate {
    /// Parse `src`.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let err = |reason| TemplateError {
            template: src.to_owned(),
            reason,
        };
        let body = src
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        // The verb is a `:` after the last `/` outside braces.
        let mut depth = 0i32;
        let mut verb_at = None;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                '/' if depth == 0 => verb_at = None,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (path, verb) = match verb_at {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        if let Some(v) = verb
            && (v.is_empty() || !v.chars().all(is_literal_char))
        {
            return Err(err("invalid verb"));
        }
        let mut t = Self {
            source: src.to_owned(),
            segs: Vec::new(),
            vars: Vec::new(),
            verb: verb.map(str::to_owned),
        };
        let mut rest = path;
        loop {
            if let Some(inner) = rest.strip_prefix('{') {
                let close = inner.find('}').ok_or_else(|| err("unclosed '{'"))?;
                let spec = &inner[..close];
                let (field, pattern) = match spec.split_once('=') {
                    Some((f, p)) => (f, Some(p)),
                    None => (spec, None),
                };
                if field.is_empty() || !field.split('.').all(is_ident) {
                    return Err(err("invalid field path in a variable"));
                }
                if t.vars.iter().any(|v| v.field == field) {
                    return Err(err("a field is bound twice"));
                }
                let start = t.segs.len();
                match pattern {
                    None => t.segs.push(Seg::One),
                    Some(p) => {
                        if p.is_empty() {
                            return Err(err("empty variable pattern"));
                        }
                        for s in p.split('/') {
                            t.segs
                                .push(parse_plain(s).ok_or_else(|| err("invalid segment"))?);
                        }
                    }
                }
                t.vars.push(Var {
                    field: field.to_owned(),
                    start,
                    end: t.segs.len(),
                });
                rest = &inner[close + 1..];
            } else {
                let end = rest.find('/').unwrap_or(rest.len());
                let s = &rest[..end];
                t.segs
                    .push(parse_plain(s).ok_or_else(|| err("invalid segment"))?);
                rest = &rest[end..];
            }
            match rest.strip_prefix('/') {
                Some(r) => rest = r,
                None if rest.is_empty() => break,
                None => return Err(err("a variable must be a whole segment")),
            }
        }
        if let Some(i) = t.segs.iter().position(|s| *s == Seg::Rest)
            && i + 1 != t.segs.len()
        {
            return Err(err("'**' must be the last segment"));
        }
        Ok(t)
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The field paths bound by variables.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|v| v.field.as_str())
    }

    /// Match a request path (no query string). `Some(bindings)` of field path -> value.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let body = path.strip_prefix('/')?;
        let body = match &self.verb {
            Some(v) => body.strip_suffix(v.as_str())?.strip_suffix(':')?,
            None => body,
        };
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let rest = matches!(self.segs.last(), Some(Seg::Rest));
        let fixed = self.segs.len() - usize::from(rest);
        if parts.len() < fixed || (!rest && parts.len() != fixed) {
            return None;
        }
        for (seg, part) in self.segs.iter().zip(&parts) {
            match seg {
                Seg::Literal(l) if l != part => return None,
                Seg::One if part.is_empty() => return None,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(self.vars.len());
        for v in &self.vars {
            let end = if rest && v.end == self.segs.len() {
                parts.len()
            } else {
                v.end
            };
            let value = if end - v.start == 1 && self.segs[v.start] == Seg::One {
                decode(parts[v.start])
            } else {
                parts[v.start..end]
                    .iter()
                    .map(|p| decode(p))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            out.push((v.field.clone(), value));
        }
        Some(out)
    }

    /// The template as a Kong regex path (`~/v1/users/(?<id>[^/]+)$`), prefixed with `prefix`.
    /// Capture names are the field paths with `.` written as `__` (PCRE and Kong allow only
    /// word characters): see [`capture_field`].
    pub fn to_route_regex(&self, prefix: &str) -> String {
        let mut out = String::from("~");
        out.push_str(&escape(prefix.trim_end_matches('/')));
        let mut i = 0;
        while i < self.segs.len() {
            let var = self.vars.iter().find(|v| v.start == i);
            let end = var.map_or(i + 1, |v| v.end);
            let inner = pattern(&self.segs[i..end]);
            // A lone `**` may match nothing: `/files/{path=**}` matches `/files` too.
            let optional = end - i == 1 && self.segs[i] == Seg::Rest;
            let group = match var {
                Some(v) => format!("(?<{}>{inner})", v.field.replace('.', "__")),
                None => inner,
            };
            if optional {
                let _ = write!(out, "(?:/{group})?");
            } else {
                let _ = write!(out, "/{group}");
            }
            i = end;
        }
        if self.segs.is_empty() {
            out.push('/');
        }
        if let Some(v) = &self.verb {
            out.push(':');
            out.push_str(&escape(v));
        }
        out.push('$');
        out
    }
}

/// The field path of a route regex capture name (`user__id` -> `user.id`).
pub fn capture_field(name: &str) -> String {
    name.replace("__", ".")
}

fn parse_plain(s: &str) -> Option<Seg> {
    match s {
        "*" => Some(Seg::One),
        "**" => Some(Seg::Rest),
        "" => None,
        l if l.chars().all(is_literal_char) => Some(Seg::Literal(l.to_owned())),
        _ => None,
    }
}

fn pattern(segs: &[Seg]) -> String {
    segs.iter()
        .map(|s| match s {
            Seg::Literal(l) => escape(l),
            Seg::One => "[^/]+".to_owned(),
            Seg::Rest => ".*".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn escape(s: &str) -> String {
    regex::escape(s)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn literal_and_single_variables() {
        let t = PathTemplate::parse("/v1/users/{id}").unwrap();
        assert_eq!(t.matches("/v1/users/42"), b(&[("id", "42")]));
        assert_eq!(t.matches("/v1/users/a%20b"), b(&[("id", "a b")]));
        assert_eq!(t.matches("/v1/users"), None);
        assert_eq!(t.matches("/v1/users/"), None);
        assert_eq!(t.matches("/v1/users/1/x"), None);
        assert_eq!(t.matches("/v2/users/1"), None);
    }

    #[test]
    fn variables_with_patterns_and_nested_fields() {
        let t = PathTemplate::parse("/v1/{name=shelves/*/books/*}").unwrap();
        assert_eq!(
            t.matches("/v1/shelves/s1/books/b2"),
            b(&[("name", "shelves/s1/books/b2")])
        );
        assert_eq!(t.matches("/v1/shelves/s1/other/b2"), None);
        let t = PathTemplate::parse("/v1/users/{user.id}/{kind}").unwrap();
        assert_eq!(
            t.matches("/v1/users/7/admin"),
            b(&[("user.id", "7"), ("kind", "admin")])
        );
        assert_eq!(t.fields().collect::<Vec<_>>(), ["user.id", "kind"]);
    }

    #[test]
    fn double_star_and_verbs() {
        let t = PathTemplate::parse("/v1/files/{path=**}").unwrap();
        assert_eq!(t.matches("/v1/files/a/b/c"), b(&[("path", "a/b/c")]));
        assert_eq!(t.matches("/v1/files"), b(&[("path", "")]));
        let t = PathTemplate::parse("/v1/users/{id}:activate").unwrap();
        assert_eq!(t.matches("/v1/users/3:activate"), b(&[("id", "3")]));
        assert_eq!(t.matches("/v1/users/3"), None);
        let t = PathTemplate::parse("/v1/*/x").unwrap();
        assert_eq!(t.matches("/v1/anything/x"), b(&[]));
    }

    #[test]
    fn invalid_templates_are_rejected() {
        for bad in [
            "v1/x",
            "/v1/{id",
            "/v1/{}",
            "/v1/{1x}",
            "/v1/**/x",
            "/v1/a{id}",
            "/v1/{id}/{id}",
            "/v1/x:",
            "/v1//x",
            "/v1/{id=}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn route_regexes_match_what_the_template_matches() {
        let cases = [
            ("/v1/users/{id}", "/v1/users/42", "/v1/users/4/2"),
            ("/v1/{name=shelves/*}", "/v1/shelves/9", "/v1/shelves"),
            (
                "/v1/users/{user.id}:undo",
                "/v1/users/5:undo",
                "/v1/users/5",
            ),
            ("/v1/files/{path=**}", "/v1/files/a/b", "/v2/files/a"),
            ("/users", "/users", "/users/1"),
        ];
        for (tpl, yes, no) in cases {
            let t = PathTemplate::parse(tpl).unwrap();
            let re = t.to_route_regex("");
            let r = regex::Regex::new(&format!("^{}", &re[1..])).unwrap();
            assert!(r.is_match(yes), "{re} should match {yes}");
            assert!(!r.is_match(no), "{re} should not match {no}");
        }
        let t = PathTemplate::parse("/v1/users/{user.id}").unwrap();
        assert_eq!(
            t.to_route_regex("/api/"),
            "~/api/v1/users/(?<user__id>[^/]+)$"
        );
        assert_eq!(capture_field("user__id"), "user.id");
        let t = PathTemplate::parse("/v1/files/{path=**}").unwrap();
        let r = regex::Regex::new(&format!("^{}", &t.to_route_regex("")[1..])).unwrap();
        assert!(r.is_match("/v1/files"));
    }
}
