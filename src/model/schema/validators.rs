//! Custom validators with Kong's messages: names, hosts, paths, targets.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::Rng;
use serde_json::Value;

/// `n` random ASCII alphanumerics.
pub fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Kong's name charset (services, routes, plugin instance names): ASCII alphanumerics, `.`, `-`,
/// `_`, `~`, and any non-ASCII UTF-8.
pub fn name(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if s.chars()
        .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'))
    {
        Ok(())
    } else {
        Err(format!(
            "invalid value '{s}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
        ))
    }
}

/// What kind of host a string names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A DNS name.
    Name,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
}

/// A parsed `host[:port]` (Kong's `utils.normalize_ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host, IPv6 without brackets.
    pub host: String,
    /// Its kind.
    pub kind: HostKind,
    /// The port, when given.
    pub port: Option<u16>,
}

/// Why a `host[:port]` did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// Not a hostname or IP.
    Invalid,
    /// The port is not 0-65535.
    InvalidPort,
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !s.starts_with('.')
        && !s.contains("..")
}

fn parse_port(p: &str) -> Result<u16, HostError> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
        return Err(HostError::InvalidPort);
    }
    p.parse::<u16>().map_err(|_| HostError::InvalidPort)
}

/// Parse `host`, `host:port`, `ipv4[:port]`, `ipv6` or `[ipv6][:port]`.
pub fn parse_host_port(s: &str) -> Result<HostPort, HostError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(HostError::Invalid)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| HostError::Invalid)?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or(HostError::Invalid)?)?),
        };
        return Ok(HostPort {
            host: ip.to_string(),
            kind: HostKind::Ipv6,
            port,
        });
    }
    if s.matches(':').count() > 1 {
        let ip: Ipv6Addr = s.parse().map_err(|_| HostError::Invalid)?;
        return Ok(HostPort {
            host: ip.to_string(),
            kind: HostKind::Ipv6,
            port: None,
        });
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(HostPort {
            host: host.to_owned(),
            kind: HostKind::Ipv4,
            port,
        });
    }
    if is_hostname(host) {
        Ok(HostPort {
            host: host.to_ascii_lowercase(),
            kind: HostKind::Name,
            port,
        })
    } else {
        Err(HostError::Invalid)
    }
}

/// Kong's `typedefs.host`: a hostname or IP without port.
pub fn host(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    match parse_host_port(s) {
        Err(HostError::Invalid) => Err(format!("invalid value: {s}")),
        Err(HostError::InvalidPort) | Ok(HostPort { port: Some(_), .. }) => {
            Err("must not have a port".to_owned())
        }
        Ok(_) => Ok(()),
    }
}

/// Kong's `typedefs.host_with_optional_port`.
pub fn host_with_optional_port(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    match parse_host_port(s) {
        Err(HostError::Invalid) => Err(format!("invalid value: {s}")),
        Err(HostError::InvalidPort) => Err("invalid port number".to_owned()),
        Ok(_) => Ok(()),
    }
}

/// Route hosts: one `*` as the leftmost or rightmost character of the host, optional `:port`.
pub fn wildcard_host(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    let stars = s.matches('*').count();
    if stars == 0 {
        return host_with_optional_port(v);
    }
    if stars > 1 {
        return Err("only one wildcard must be specified".to_owned());
    }
    // Split an optional port off before locating the wildcard.
    let (h, port) = match s.rsplit_once(':') {
        Some((h, p)) if !p.contains('*') => (h, Some(p)),
        _ => (s, None),
    };
    let ok_pos = h.starts_with("*.") || h.ends_with(".*");
    if !ok_pos {
        return Err("wildcard must be leftmost or rightmost character".to_owned());
    }
    let mock = h.replace('*', "wildcard");
    let mock = match port {
        Some(p) => format!("{mock}:{p}"),
        None => mock,
    };
    host_with_optional_port(&Value::String(mock)).map_err(|e| {
        if e.starts_with("invalid value") {
            format!("invalid value: {s}")
        } else {
            e
        }
    })
}

/// Upstream names: a hostname, no IP, no port.
pub fn upstream_name(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    match parse_host_port(s) {
        Err(_) => Err(format!("Invalid name ('{s}'); must be a valid hostname")),
        Ok(p) if p.kind != HostKind::Name => {
            Err(format!("Invalid name ('{s}'); no ip addresses allowed"))
        }
        Ok(p) if p.port.is_some() => Err(format!("Invalid name ('{s}'); no port allowed")),
        Ok(_) => Ok(()),
    }
}

/// Target addresses: `host[:port]`.
pub fn target(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    match parse_host_port(s) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "Invalid target ('{s}'); not a valid hostname or ip address"
        )),
    }
}

/// A target normalized as stored: `host:port`, port 8000 by default, IPv6 in brackets.
pub fn normalize_target(s: &str) -> Option<String> {
    let p = parse_host_port(s).ok()?;
    let port = p.port.unwrap_or(8000);
    Some(match p.kind {
        HostKind::Ipv6 => format!("[{}]:{port}", p.host),
        _ => format!("{}:{port}", p.host),
    })
}

/// HTTP header names.
pub fn header_name(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

/// HTTP method tokens (upper-case letters).
pub fn http_method(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Kong's path normalization for routes: decode percent-encoded unreserved characters,
/// upper-case the remaining escapes, remove dot segments.
pub fn normalize_path(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut decoded = String::with_capacity(p.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = &p[i + 1..i + 3];
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                if is_unreserved(b) {
                    decoded.push(char::from(b));
                } else {
                    decoded.push('%');
                    decoded.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        let ch = p[i..].chars().next().unwrap_or('\u{fffd}');
        decoded.push(ch);
        i += ch.len_utf8();
    }
    remove_dot_segments(&decoded)
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').collect();
    let last = segs.len().saturating_sub(1);
    let mut trailing = false;
    for (i, seg) in segs.iter().enumerate() {
        match *seg {
            "." => trailing = i == last,
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                trailing = i == last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut r = out.join("/");
    if trailing && !r.ends_with('/') {
        r.push('/');
    }
    if r.is_empty() && path.starts_with('/') {
        r.push('/');
    }
    r
}

/// Route paths: `/prefix` (normalized) or `~/regex` (must compile).
pub fn router_path(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if !s.starts_with('/') && !s.starts_with("~/") {
        return Err("should start with: / (fixed path) or ~/ (regex path)".to_owned());
    }
    if let Some(re) = s.strip_prefix('~') {
        return match regex::Regex::new(re) {
            Ok(_) => Ok(()),
            Err(e) => {
                let detail = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                Err(format!("invalid regex: '{re}' ({detail})"))
            }
        };
    }
    if s.contains("//") {
        return Err("must not have empty segments".to_owned());
    }
    let n = normalize_path(s);
    if n != s {
        return Err(format!("non-normalized path, consider use '{n}' instead"));
    }
    Ok(())
}

/// Service paths and other plain paths: no empty segments.
pub fn plain_path(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if s.contains("//") {
        Err("must not have empty segments".to_owned())
    } else {
        Ok(())
    }
}

/// PEM public keys (jwt `rsa_public_key`; Kong: `openssl_pkey.new(key)` or "invalid key"): a
/// `PUBLIC KEY` block holding a DER SubjectPublicKeyInfo whose key parses (RSA, EC, Ed25519,
/// ...), or an `RSA PUBLIC KEY` block holding a PKCS#1 `RSAPublicKey`.
pub fn pem_public_key(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    let label_is_rsa = s
        .find("-----BEGIN ")
        .is_some_and(|i| s[i + 11..].starts_with("RSA PUBLIC KEY-----"));
    let ok = pem_body(s, "PUBLIC KEY").is_some_and(|der| {
        if label_is_rsa {
            pkcs1_rsa_public_key(&der)
        } else {
            use x509_parser::prelude::FromDer as _;
            x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).is_ok_and(|(rest, spki)| {
                rest.is_empty() && !spki.subject_public_key.data.is_empty() && spki.parsed().is_ok()
            })
        }
    });
    if ok {
        Ok(())
    } else {
        Err("invalid key".to_owned())
    }
}

/// Whether `der` is a PKCS#1 `RSAPublicKey`: a SEQUENCE of two positive INTEGERs.
fn pkcs1_rsa_public_key(der: &[u8]) -> bool {
    use x509_parser::der_parser::ber::BerObjectContent;
    let Ok((rest, obj)) = x509_parser::der_parser::parse_der(der) else {
        return false;
    };
    let BerObjectContent::Sequence(items) = &obj.content else {
        return false;
    };
    rest.is_empty()
        && items.len() == 2
        && items
            .iter()
            .all(|i| matches!(&i.content, BerObjectContent::Integer(b) if !b.is_empty()))
}

/// What gwctl reads from a PEM certificate (the first one in the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DER bytes.
    pub der: Vec<u8>,
    /// `Not After`, Unix seconds.
    pub not_after: i64,
    /// Whether the basic constraints extension says `CA:TRUE`.
    pub ca: bool,
}

/// Parse the first PEM certificate of `s` as X.509 (`None` when it is not one).
pub fn parse_certificate(s: &str) -> Option<CertInfo> {
    let der = pem_body(s, "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    Some(CertInfo { der, not_after, ca })
}

/// Kong's `cert_digest`: the hex SHA-256 of the certificate's DER.
pub fn cert_digest(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// PEM certificates: the first block must parse as X.509.
pub fn pem_certificate(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    if parse_certificate(s).is_some() {
        Ok(())
    } else {
        Err(
            "invalid certificate: x509.new: error:0680007B:asn1 encoding routines::header too long"
                .to_owned(),
        )
    }
}

fn pem_body(s: &str, label_suffix: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = s.find("-----BEGIN ")?;
    let rest = &s[start + 11..];
    let (label, rest) = rest.split_once("-----")?;
    if !label.ends_with(label_suffix) {
        return None;
    }
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let body: String = rest[..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    (!der.is_empty()).then_some(der)
}
