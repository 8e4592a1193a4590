//! Parsing helpers for route fields: host patterns, regex paths and their literal prefixes.

/// A host (or SNI) pattern, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Exact name.
    Exact(String),
    /// `*.a.com`, stored as `.a.com`: any host ending with it (any depth).
    Suffix(String),
    /// `ex.*`, stored as `ex.`: any host starting with it (any depth).
    Prefix(String),
}

impl HostPattern {
    /// Parses a lower-cased host name without port.
    pub(crate) fn parse(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        if let Some(rest) = name.strip_prefix('*')
            && rest.starts_with('.')
        {
            return Self::Suffix(rest.to_owned());
        }
        if let Some(rest) = name.strip_suffix('*')
            && rest.ends_with('.')
        {
            return Self::Prefix(rest.to_owned());
        }
        Self::Exact(name)
    }

    /// Case-insensitive match of a host name (without port).
    pub(crate) fn matches(&self, host: &str) -> bool {
        let h = host.as_bytes();
        match self {
            Self::Exact(e) => e.as_bytes().eq_ignore_ascii_case(h),
            Self::Suffix(s) => {
                h.len() >= s.len() && h[h.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            Self::Prefix(p) => {
                h.len() >= p.len() && h[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
        }
    }
}

/// Splits `host[:port]` (IPv6 literals in brackets) into the name and the port, if any.
/// A suffix after `:` that is not a valid port is left in the name.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if s.starts_with('[') {
        if let Some(end) = s.find(']') {
            let name = &s[..=end];
            let port = s[end + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
            return (name, port);
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address, no port.
        Some((name, _)) if name.contains(':') => (s, None),
        Some((name, port)) => match port.parse::<u16>() {
            Ok(p) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (name, Some(p))
            }
            _ => (s, None),
        },
        None => (s, None),
    }
}

/// Whether the byte at `i` is escaped by an odd number of preceding backslashes.
fn is_escaped(bytes: &[u8], i: usize) -> bool {
    let mut n = 0;
    let mut j = i;
    while j > 0 && bytes[j - 1] == b'\\' {
        n += 1;
        j -= 1;
    }
    n % 2 == 1
}

/// Turns a route regex path (without the `~`) into the pattern compiled by the router:
/// `(?<name>` becomes `(?P<name>` and `^` is prepended (anchored at the start only).
pub(crate) fn regex_source(pat: &str) -> String {
    let bytes = pat.as_bytes();
    let mut out = String::with_capacity(pat.len() + 8);
    out.push('^');
    let mut last = 0;
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if &bytes[i..i + 3] == b"(?<"
            && !matches!(bytes.get(i + 3), Some(b'=' | b'!'))
            && !is_escaped(bytes, i)
        {
            out.push_str(&pat[last..i]);
            out.push_str("(?P<");
            i += 3;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&pat[last..]);
    out
}

/// The literal text every match of the regex path (without `~`, before `^` is prepended) must
/// start with. Conservative: stops at the first metacharacter, drops a literal made optional by
/// a following quantifier, and gives up (empty) on any alternation.
pub(crate) fn literal_prefix(pat: &str) -> String {
    let mut lits = String::new();
    if pat.contains('|') {
        return lits;
    }
    let mut chars = pat.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = match c {
            '\\' => match chars.next() {
                Some(n) if n.is_ascii_punctuation() => n,
                _ => break,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' | '|' => break,
            c => c,
        };
        if matches!(chars.peek(), Some('*' | '?' | '{')) {
            break;
        }
        lits.push(lit);
    }
    lits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("a.com:8080"), ("a.com", Some(8080)));
        assert_eq!(split_host_port("a.com:"), ("a.com:", None));
        assert_eq!(split_host_port("a.com:99999"), ("a.com:99999", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            HostPattern::parse("*.A.com"),
            HostPattern::Suffix(".a.com".into())
        );
        assert_eq!(
            HostPattern::parse("ex.*"),
            HostPattern::Prefix("ex.".into())
        );
        assert_eq!(
            HostPattern::parse("Ex.com"),
            HostPattern::Exact("ex.com".into())
        );
        assert!(HostPattern::parse("*.a.com").matches("X.y.A.com"));
        assert!(!HostPattern::parse("*.a.com").matches("a.com"));
        assert!(HostPattern::parse("ex.*").matches("EX.org.uk"));
        assert!(!HostPattern::parse("ex.*").matches("exa.org"));
    }

    #[test]
    fn regex_conversion() {
        assert_eq!(regex_source("/u/(?<id>\\d+)"), "^/u/(?P<id>\\d+)");
        assert_eq!(regex_source("/(?<=x)"), "^/(?<=x)");
        assert_eq!(regex_source("/\\(?<x"), "^/\\(?<x");
        assert_eq!(regex_source("/a"), "^/a");
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("/v1/.*"), "/v1/");
        assert_eq!(literal_prefix("/users/\\d+"), "/users/");
        assert_eq!(literal_prefix("/ab?c"), "/a");
        assert_eq!(literal_prefix("/ab*c"), "/a");
        assert_eq!(literal_prefix("/ab{2}"), "/a");
        assert_eq!(literal_prefix("/ab+"), "/ab");
        assert_eq!(literal_prefix("/a\\.b(x)"), "/a.b");
        assert_eq!(literal_prefix("/a\\.?b"), "/a");
        assert_eq!(literal_prefix("/a|/b"), "");
        assert_eq!(literal_prefix("(?i)/a"), "");
        assert_eq!(literal_prefix("/é/x"), "/é/x");
    }
}
