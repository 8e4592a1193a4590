//! Kong's request-path normalization (kong-compat §2.1).
//!
//! Percent-encoded triplets are upper-cased, percent-encoded unreserved characters
//! (`ALPHA DIGIT - . _ ~`) are decoded, duplicate slashes are merged and dot segments are removed
//! (RFC 3986 §5.2.4), in that order. The result is what the router matches against and what is
//! forwarded upstream.

use std::borrow::Cow;

/// Why a request path cannot be normalized; the proxy answers these with `400 Bad Request`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty.
    #[error("empty request path")]
    Empty,
    /// The path does not start with `/`.
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hexadecimal digits, at the given byte offset.
    #[error("invalid percent-encoding at byte {at}")]
    BadPercentEncoding {
        /// Byte offset of the offending `%`.
        at: usize,
    },
    /// The path contains a raw NUL byte.
    #[error("request path contains a NUL byte")]
    NulByte,
}

/// Kong's normalization of the request path (no query): uppercase percent-encoded triplets, decode
/// percent-encoded unreserved chars (ALPHA DIGIT - . _ ~), merge duplicate slashes, remove dot
/// segments (RFC 3986 5.2.4).
///
/// Returns the input borrowed when it is already normalized (the common case, no allocation).
/// Returns `Err` for input the proxy must answer with 400: an empty path, a path not starting
/// with `/`, a malformed `%` triplet, or a raw NUL byte. `%00` is kept encoded and accepted.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    match bytes.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => {}
        Some(_) => return Err(PathError::NotAbsolute),
    }
    if bytes.contains(&0) {
        return Err(PathError::NulByte);
    }
    let has_pct = bytes.contains(&b'%');
    if !has_pct && !needs_segment_work(raw) {
        return Ok(Cow::Borrowed(raw));
    }

    // 1. Percent-encoding normalization.
    let decoded: Cow<'_, str> = if has_pct {
        Cow::Owned(normalize_percent(raw)?)
    } else {
        Cow::Borrowed(raw)
    };
    // 2. Merge duplicate slashes.
    let merged: Cow<'_, str> = if decoded.contains("//") {
        let mut out = String::with_capacity(decoded.len());
        let mut prev_slash = false;
        for c in decoded.chars() {
            if c == '/' {
                if prev_slash {
                    continue;
                }
                prev_slash = true;
            } else {
                prev_slash = false;
            }
            out.push(c);
        }
        Cow::Owned(out)
    } else {
        decoded
    };
    // 3. Remove dot segments.
    let result = if has_dot_segment(&merged) {
        remove_dot_segments(&merged)
    } else {
        merged.into_owned()
    };
    if result == raw {
        Ok(Cow::Borrowed(raw))
    } else {
        Ok(Cow::Owned(result))
    }
}

/// Whether merging slashes or removing dot segments could change `p`.
fn needs_segment_work(p: &str) -> bool {
    p.contains("//") || has_dot_segment(p)
}

/// Whether `p` (starting with `/`) has a `.` or `..` segment.
fn has_dot_segment(p: &str) -> bool {
    p.contains("/./") || p.contains("/../") || p.ends_with("/.") || p.ends_with("/..")
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Upper-cases every `%xx` triplet and decodes those encoding unreserved characters.
fn normalize_percent(raw: &str) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).copied().and_then(hex_val);
        let lo = bytes.get(i + 2).copied().and_then(hex_val);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::BadPercentEncoding { at: i });
        };
        let v = (hi << 4) | lo;
        if is_unreserved(v) {
            out.push(v);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
        }
        i += 3;
    }
    // Only ASCII bytes were substituted for ASCII bytes, so the UTF-8 structure is unchanged.
    String::from_utf8(out).map_err(|_| PathError::BadPercentEncoding { at: 0 })
}

/// RFC 3986 §5.2.4 on an absolute path (starting with `/`).
fn remove_dot_segments(p: &str) -> String {
    let rest = p.strip_prefix('/').unwrap_or(p);
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let mut out: Vec<&str> = Vec::with_capacity(n);
    for (i, seg) in segs.into_iter().enumerate() {
        let last = i + 1 == n;
        match seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(p.len());
    s.push('/');
    s.push_str(&out.join("/"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_cases() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("//a///b", "/a/b"),
            ("/f%6F%6f", "/foo"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%7e%2D%2e%5F", "/~-._"),
            ("/a/%2E%2E/b", "/b"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/", "/a/b/"),
            ("/a/b/../", "/a/"),
            ("/a//../b", "/b"),
            ("/a/.../b", "/a/.../b"),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/%20x", "/%20x"),
            ("/%c3%a9", "/%C3%A9"),
            ("/é", "/é"),
            ("/%00", "/%00"),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalize_path(input).as_deref(),
                Ok(want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn normalized_input_is_borrowed() {
        assert!(matches!(normalize_path("/a/b/c"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize_path("/a%2Fb"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize_path("/a%2fb"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn normalization_errors() {
        assert_eq!(normalize_path(""), Err(PathError::Empty));
        assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(
            normalize_path("/a%zz"),
            Err(PathError::BadPercentEncoding { at: 2 })
        );
        assert_eq!(
            normalize_path("/a%2"),
            Err(PathError::BadPercentEncoding { at: 2 })
        );
        assert_eq!(
            normalize_path("/a%"),
            Err(PathError::BadPercentEncoding { at: 2 })
        );
        assert_eq!(normalize_path("/a\0b"), Err(PathError::NulByte));
    }
}
