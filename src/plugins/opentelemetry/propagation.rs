//! Trace-context propagation in Kong's formats (`kong/observability/tracing/propagation`):
//! extraction from the client's headers and injection into the upstream request.
//!
//! Formats: `w3c` (`traceparent`), `b3` (`X-B3-*` headers, and the single `b3` header, also
//! inside `tracestate: b3=...`), `b3-single` (inject only; extraction is `b3`'s), `jaeger`
//! (`uber-trace-id`), `ot` (`ot-tracer-*`), `datadog` (`x-datadog-*`, decimal ids), `aws`
//! (`x-amzn-trace-id`), `gcp` (`x-cloud-trace-context`, decimal span id) and `instana`
//! (`x-instana-t/s/l`).
//!
//! Ids are kept as Kong keeps them: a trace id of 16 bytes (a shorter one, e.g. a 64-bit B3 id,
//! is left-padded with zeros, and its original size remembered so that an injector allowing
//! both sizes sends it back as it came), span ids of 8 bytes.
//!
//! Differences from Kong: an extractor counts as matching when it found a trace id or a
//! sampling decision (Kong's b3 extractor matches as soon as any b3 header, or any
//! `tracestate`, is present, even without ids, which hides a valid `traceparent` sent along
//! with a `tracestate`); baggage headers (`uberctx-*`, `ot-baggage-*`) are not translated
//! between formats (they still reach the upstream unchanged unless `clear` removes them).

use std::fmt::Write as _;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// A propagation format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// W3C Trace Context.
    W3c,
    /// Zipkin B3 (multi-header on injection).
    B3,
    /// Zipkin B3, single `b3` header (injection only).
    B3Single,
    /// Jaeger `uber-trace-id`.
    Jaeger,
    /// OpenTracing `ot-tracer-*`.
    Ot,
    /// Datadog `x-datadog-*`.
    Datadog,
    /// AWS X-Ray `x-amzn-trace-id`.
    Aws,
    /// Google Cloud `x-cloud-trace-context`.
    Gcp,
    /// Instana `x-instana-*`.
    Instana,
}

/// Every format name, in Kong's order (`b3-single` is not an extractor).
pub const FORMATS: [&str; 9] = [
    "w3c",
    "b3",
    "b3-single",
    "jaeger",
    "ot",
    "datadog",
    "aws",
    "gcp",
    "instana",
];

/// The extraction order of Kong's legacy `header_type` (everything but instana).
pub const LEGACY_EXTRACT: [Format; 7] = [
    Format::B3,
    Format::W3c,
    Format::Jaeger,
    Format::Ot,
    Format::Datadog,
    Format::Aws,
    Format::Gcp,
];

impl Format {
    /// The format called `name` (Kong's names).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "w3c" => Self::W3c,
            "b3" => Self::B3,
            "b3-single" => Self::B3Single,
            "jaeger" => Self::Jaeger,
            "ot" => Self::Ot,
            "datadog" => Self::Datadog,
            "aws" => Self::Aws,
            "gcp" => Self::Gcp,
            "instana" => Self::Instana,
            _ => return None,
        })
    }

    /// Trace id sizes (bytes) the injector may send; the first is the default.
    fn trace_id_sizes(self) -> &'static [u8] {
        match self {
            Self::B3 | Self::B3Single | Self::Jaeger | Self::Instana => &[16, 8],
            Self::Ot => &[8, 16],
            Self::Datadog => &[8],
            Self::W3c | Self::Aws | Self::Gcp => &[16],
        }
    }
}

/// What one extractor found in the client's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The trace id (16 bytes, left-padded).
    pub trace_id: Option<[u8; 16]>,
    /// The size in bytes the trace id came with (for injectors allowing several sizes).
    pub trace_id_len: u8,
    /// The caller's span (the parent of the gateway's span).
    pub span_id: Option<[u8; 8]>,
    /// The caller's parent span (formats sharing span ids between client and server: b3,
    /// jaeger); used as the parent only when `span_id` is missing.
    pub parent_id: Option<[u8; 8]>,
    /// The caller's sampling decision.
    pub sampled: Option<bool>,
    /// B3's debug flag (`X-B3-Flags: 1`, `d` in the single header).
    pub debug: bool,
    /// B3 context from the single `b3` header (`preserve` then injects `b3-single`).
    pub single_header: bool,
}

impl Extracted {
    fn matched(&self) -> bool {
        self.trace_id.is_some() || self.sampled.is_some()
    }
}

/// The context sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// Trace id (16 bytes).
    pub trace_id: [u8; 16],
    /// The size the trace id came with (0: generated here).
    pub trace_id_len: u8,
    /// The span the upstream's span is a child of.
    pub span_id: [u8; 8],
    /// That span's parent (b3 and jaeger send it).
    pub parent_id: Option<[u8; 8]>,
    /// Sampling decision.
    pub sampled: bool,
    /// B3 debug flag to pass on.
    pub debug: bool,
}

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
static B3: HeaderName = HeaderName::from_static("b3");
static X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
static X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
static X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
static UBER_TRACE_ID: HeaderName = HeaderName::from_static("uber-trace-id");
static OT_TRACEID: HeaderName = HeaderName::from_static("ot-tracer-traceid");
static OT_SPANID: HeaderName = HeaderName::from_static("ot-tracer-spanid");
static OT_SAMPLED: HeaderName = HeaderName::from_static("ot-tracer-sampled");
static DD_TRACE_ID: HeaderName = HeaderName::from_static("x-datadog-trace-id");
static DD_PARENT_ID: HeaderName = HeaderName::from_static("x-datadog-parent-id");
static DD_PRIORITY: HeaderName = HeaderName::from_static("x-datadog-sampling-priority");
static AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
static CLOUD_TRACE: HeaderName = HeaderName::from_static("x-cloud-trace-context");
static INSTANA_T: HeaderName = HeaderName::from_static("x-instana-t");
static INSTANA_S: HeaderName = HeaderName::from_static("x-instana-s");
static INSTANA_L: HeaderName = HeaderName::from_static("x-instana-l");

/// Extract with the first format (in `formats` order) that finds a context.
pub fn extract(formats: &[Format], headers: &HeaderMap) -> Option<(Format, Extracted)> {
    formats.iter().find_map(|&f| {
        let found = match f {
            Format::W3c => w3c(headers),
            Format::B3 | Format::B3Single => b3(headers),
            Format::Jaeger => jaeger(headers),
            Format::Ot => ot(headers),
            Format::Datadog => datadog(headers),
            Format::Aws => aws(headers),
            Format::Gcp => gcp(headers),
            Format::Instana => instana(headers),
        }?;
        found.matched().then_some((f, found))
    })
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Hex (an odd length gets a leading zero, like Kong's `from_hex`) into the last bytes of an
/// `N`-byte id; longer input keeps its last `N` bytes. Returns the id and the decoded size.
fn from_hex<const N: usize>(s: &str) -> Option<([u8; N], u8)> {
    if !is_hex(s) {
        return None;
    }
    let digits = s.as_bytes();
    let bytes = digits.len().div_ceil(2);
    let mut out = [0u8; N];
    // Walk from the end two digits at a time.
    let mut i = digits.len();
    let mut pos = N;
    while i > 0 && pos > 0 {
        let lo = nibble(digits[i - 1]);
        let hi = if i >= 2 { nibble(digits[i - 2]) } else { 0 };
        pos -= 1;
        out[pos] = (hi << 4) | lo;
        i = i.saturating_sub(2);
    }
    Some((out, u8::try_from(bytes).unwrap_or(u8::MAX)))
}

/// A decimal id into the last bytes of an `N`-byte id (big-endian), with its minimal size.
fn from_dec<const N: usize>(s: &str) -> Option<([u8; N], u8)> {
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u128 = s.parse().ok()?;
    let be = n.to_be_bytes();
    let size = 16 - (n.leading_zeros() / 8) as usize;
    let mut out = [0u8; N];
    let take = N.min(16);
    out[N - take..].copy_from_slice(&be[16 - take..]);
    Some((out, size.max(1) as u8))
}

fn nonzero(id: &[u8]) -> bool {
    id.iter().any(|b| *b != 0)
}

fn w3c(headers: &HeaderMap) -> Option<Extracted> {
    let tp = text(headers, &TRACEPARENT)?;
    let mut parts = tp.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" || trace.len() != 32 || parent.len() != 16 {
        return None;
    }
    if flags.len() != 2 || !is_hex(flags) || !is_hex(version) {
        return None;
    }
    let (trace_id, _) = from_hex::<16>(trace)?;
    let (span_id, _) = from_hex::<8>(parent)?;
    if !nonzero(&trace_id) || !nonzero(&span_id) {
        return None;
    }
    let flags = (nibble(flags.as_bytes()[0]) << 4) | nibble(flags.as_bytes()[1]);
    Some(Extracted {
        trace_id: Some(trace_id),
        trace_id_len: 16,
        span_id: Some(span_id),
        sampled: Some(flags & 1 == 1),
        ..Extracted::default()
    })
}

fn b3(headers: &HeaderMap) -> Option<Extracted> {
    let mut out = Extracted::default();
    let single = text(headers, &B3).map(str::to_owned).or_else(|| {
        headers
            .get_all(&TRACESTATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|m| m.trim().strip_prefix("b3=").map(str::to_owned))
    });
    if let Some(single) = single {
        out.single_header = true;
        match single.as_str() {
            "1" => out.sampled = Some(true),
            "d" => {
                out.sampled = Some(true);
                out.debug = true;
            }
            "0" => out.sampled = Some(false),
            s => {
                let parts: Vec<&str> = s.split('-').collect();
                let (trace, span) = (parts[0], parts.get(1).copied().unwrap_or(""));
                let (sampled, parent) = match parts.get(2..).unwrap_or(&[]) {
                    [] => ("", ""),
                    [x] if x.len() == 1 => (*x, ""),
                    [x] => ("", *x),
                    [s, p] => (*s, *p),
                    _ => ("?", ""),
                };
                let ok = (trace.len() == 16 || trace.len() == 32)
                    && span.len() == 16
                    && (parent.is_empty() || parent.len() == 16)
                    && matches!(sampled, "" | "0" | "1" | "d");
                let ids = ok
                    .then(|| {
                        let t = from_hex::<16>(trace)?;
                        let s = from_hex::<8>(span)?;
                        let p = if parent.is_empty() {
                            None
                        } else {
                            Some(from_hex::<8>(parent)?.0)
                        };
                        Some((t, s.0, p))
                    })
                    .flatten();
                if let Some(((t, len), s, p)) = ids {
                    out.trace_id = Some(t);
                    out.trace_id_len = len;
                    out.span_id = Some(s);
                    out.parent_id = p;
                    match sampled {
                        "1" => out.sampled = Some(true),
                        "d" => {
                            out.sampled = Some(true);
                            out.debug = true;
                        }
                        "0" => out.sampled = Some(false),
                        _ => {}
                    }
                }
            }
        }
    }
    // The multi-header form fills what the single header did not give.
    let sampled = match text(headers, &X_B3_SAMPLED) {
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        _ => None,
    };
    let debug = text(headers, &X_B3_FLAGS) == Some("1");
    let sampled = if debug { Some(true) } else { sampled };
    if out.sampled.is_none() {
        out.sampled = sampled;
    }
    out.debug |= debug;
    if out.trace_id.is_none() {
        let trace = text(headers, &X_B3_TRACEID);
        let span = text(headers, &X_B3_SPANID);
        let parent = text(headers, &X_B3_PARENTSPANID);
        let valid_trace = trace.is_none_or(|t| (t.len() == 16 || t.len() == 32) && is_hex(t));
        let valid_span = span.is_none_or(|s| s.len() == 16 && is_hex(s));
        let valid_parent = parent.is_none_or(|p| p.len() == 16 && is_hex(p));
        if valid_trace
            && valid_span
            && valid_parent
            && let Some((t, len)) = trace.and_then(from_hex::<16>)
        {
            out.trace_id = Some(t);
            out.trace_id_len = len;
            out.span_id = span.and_then(from_hex::<8>).map(|s| s.0);
            out.parent_id = parent.and_then(from_hex::<8>).map(|p| p.0);
        }
    }
    Some(out)
}

fn jaeger(headers: &HeaderMap) -> Option<Extracted> {
    let h = text(headers, &UBER_TRACE_ID)?;
    let mut parts = h.split(':');
    let (trace, span, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_hex(parent) || trace.len() > 32 || span.len() > 16 {
        return None;
    }
    if !(1..=2).contains(&flags.len()) || !is_hex(flags) {
        return None;
    }
    let (trace_id, len) = from_hex::<16>(trace)?;
    let (span_id, _) = from_hex::<8>(span)?;
    if !nonzero(&trace_id) || !nonzero(&span_id) {
        return None;
    }
    let parent_id = from_hex::<8>(parent).map(|p| p.0).filter(|p| nonzero(p));
    let flags = flags.bytes().fold(0u8, |acc, b| (acc << 4) | nibble(b));
    Some(Extracted {
        trace_id: Some(trace_id),
        trace_id_len: len,
        span_id: Some(span_id),
        parent_id,
        sampled: Some(flags & 1 == 1),
        ..Extracted::default()
    })
}

fn ot(headers: &HeaderMap) -> Option<Extracted> {
    let trace = text(headers, &OT_TRACEID);
    let span = text(headers, &OT_SPANID);
    let sampled_h = text(headers, &OT_SAMPLED);
    if trace.is_none() && span.is_none() && sampled_h.is_none() {
        return None;
    }
    let sampled = match sampled_h {
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        _ => None,
    };
    let valid_trace = trace.is_none_or(|t| (t.len() == 16 || t.len() == 32) && is_hex(t));
    let valid_span = span.is_none_or(|s| s.len() == 16 && is_hex(s));
    let mut out = Extracted {
        sampled,
        ..Extracted::default()
    };
    if valid_trace
        && valid_span
        && let Some((t, len)) = trace.and_then(from_hex::<16>)
    {
        out.trace_id = Some(t);
        out.trace_id_len = len;
        out.span_id = span.and_then(from_hex::<8>).map(|s| s.0);
    }
    Some(out)
}

fn datadog(headers: &HeaderMap) -> Option<Extracted> {
    let trace = text(headers, &DD_TRACE_ID);
    let parent = text(headers, &DD_PARENT_ID);
    let priority = text(headers, &DD_PRIORITY);
    if trace.is_none() && parent.is_none() && priority.is_none() {
        return None;
    }
    let sampled = match priority {
        Some("1" | "2") => Some(true),
        Some("0" | "-1") => Some(false),
        Some(_) => return None,
        None => None,
    };
    let trace = trace.and_then(|t| from_dec::<16>(t.trim()));
    let parent = trace
        .and(parent)
        .and_then(|p| from_dec::<8>(p.trim()))
        .map(|p| p.0);
    Some(Extracted {
        trace_id: trace.map(|t| t.0),
        trace_id_len: trace.map_or(0, |t| t.1),
        span_id: parent,
        sampled,
        ..Extracted::default()
    })
}

fn aws(headers: &HeaderMap) -> Option<Extracted> {
    let h = text(headers, &AMZN_TRACE_ID)?;
    let mut out = Extracted::default();
    for pair in h.split(';') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Root" => {
                let mut parts = value.split('-');
                let (version, ts, unique) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some()
                    || value.len() != 35
                    || version != "1"
                    || ts.len() != 8
                    || unique.len() != 24
                {
                    return None;
                }
                let mut hex = String::with_capacity(32);
                hex.push_str(ts);
                hex.push_str(unique);
                out.trace_id = Some(from_hex::<16>(&hex)?.0);
                out.trace_id_len = 16;
            }
            "Parent" => {
                if value.len() != 16 {
                    return None;
                }
                out.span_id = Some(from_hex::<8>(value)?.0);
            }
            "Sampled" => match value {
                "0" => out.sampled = Some(false),
                "1" => out.sampled = Some(true),
                _ => return None,
            },
            _ => {}
        }
    }
    Some(out)
}

fn gcp(headers: &HeaderMap) -> Option<Extracted> {
    let h = text(headers, &CLOUD_TRACE)?;
    let (trace, rest) = h.split_once('/')?;
    let (span, options) = match rest.split_once(';') {
        Some((s, o)) => (s, Some(o)),
        None => (rest, None),
    };
    if trace.len() != 32
        || !trace
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    if span.is_empty() || span.len() > 20 {
        return None;
    }
    let sampled = match options {
        None => false,
        Some(o) => {
            let flag = o.strip_prefix("o=")?;
            if flag.len() != 1 || !flag.as_bytes()[0].is_ascii_digit() {
                return None;
            }
            flag == "1"
        }
    };
    let (trace_id, _) = from_hex::<16>(trace)?;
    let (span_id, _) = from_dec::<8>(span)?;
    Some(Extracted {
        trace_id: Some(trace_id),
        trace_id_len: 16,
        span_id: Some(span_id),
        sampled: Some(sampled),
        ..Extracted::default()
    })
}

fn instana(headers: &HeaderMap) -> Option<Extracted> {
    let trace = text(headers, &INSTANA_T);
    let span = text(headers, &INSTANA_S);
    let level = text(headers, &INSTANA_L);
    if trace.is_none() && span.is_none() && level.is_none() {
        return None;
    }
    let sampled = level.and_then(|l| match l.split(',').next().map(str::trim) {
        Some("0") => Some(false),
        Some("1") => Some(true),
        _ => None,
    });
    let mut out = Extracted {
        sampled,
        ..Extracted::default()
    };
    let valid_trace = trace.is_some_and(|t| (t.len() == 16 || t.len() == 32) && is_hex(t));
    let valid_span = span.is_some_and(|s| s.len() == 16 && is_hex(s));
    if valid_trace
        && valid_span
        && let (Some((t, len)), Some((s, _))) =
            (trace.and_then(from_hex::<16>), span.and_then(from_hex::<8>))
    {
        out.trace_id = Some(t);
        out.trace_id_len = len;
        out.span_id = Some(s);
    }
    Some(out)
}

/// Lower-case hex of `id`, appended to `out`.
pub fn push_hex(out: &mut String, id: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in id {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// Lower-case hex of `id`.
pub fn hex(id: &[u8]) -> String {
    let mut s = String::with_capacity(id.len() * 2);
    push_hex(&mut s, id);
    s
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name.clone(), v);
    }
}

fn sized_trace(ctx: &Outgoing, format: Format) -> &[u8] {
    let sizes = format.trace_id_sizes();
    let size = if sizes.contains(&ctx.trace_id_len) {
        ctx.trace_id_len
    } else {
        sizes[0]
    };
    &ctx.trace_id[16 - usize::from(size)..]
}

fn u64_of(id: &[u8]) -> u64 {
    id.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Set the headers of `format` for `ctx` on the upstream request.
pub fn inject(format: Format, ctx: &Outgoing, headers: &mut HeaderMap) {
    let trace = sized_trace(ctx, format);
    let sampled = if ctx.sampled { "1" } else { "0" };
    match format {
        Format::W3c => {
            let mut v = String::with_capacity(55);
            v.push_str("00-");
            push_hex(&mut v, trace);
            v.push('-');
            push_hex(&mut v, &ctx.span_id);
            v.push_str(if ctx.sampled { "-01" } else { "-00" });
            set(headers, &TRACEPARENT, v);
        }
        Format::B3 => {
            set(headers, &X_B3_TRACEID, hex(trace));
            set(headers, &X_B3_SPANID, hex(&ctx.span_id));
            match ctx.parent_id {
                Some(p) => set(headers, &X_B3_PARENTSPANID, hex(&p)),
                None => drop(headers.remove(&X_B3_PARENTSPANID)),
            }
            if ctx.debug {
                set(headers, &X_B3_FLAGS, "1".to_owned());
            } else {
                set(headers, &X_B3_SAMPLED, sampled.to_owned());
            }
        }
        Format::B3Single => {
            let mut v = hex(trace);
            v.push('-');
            push_hex(&mut v, &ctx.span_id);
            v.push('-');
            v.push_str(if ctx.debug { "d" } else { sampled });
            if let Some(p) = ctx.parent_id {
                v.push('-');
                push_hex(&mut v, &p);
            }
            set(headers, &B3, v);
        }
        Format::Jaeger => {
            let mut v = hex(trace);
            v.push(':');
            push_hex(&mut v, &ctx.span_id);
            v.push(':');
            match ctx.parent_id {
                Some(p) => push_hex(&mut v, &p),
                None => v.push('0'),
            }
            v.push_str(if ctx.sampled { ":01" } else { ":00" });
            set(headers, &UBER_TRACE_ID, v);
        }
        Format::Ot => {
            set(headers, &OT_TRACEID, hex(trace));
            set(headers, &OT_SPANID, hex(&ctx.span_id));
            set(headers, &OT_SAMPLED, sampled.to_owned());
        }
        Format::Datadog => {
            set(headers, &DD_TRACE_ID, u64_of(trace).to_string());
            set(headers, &DD_PARENT_ID, u64_of(&ctx.span_id).to_string());
            set(headers, &DD_PRIORITY, sampled.to_owned());
        }
        Format::Aws => {
            let t = hex(trace);
            let mut v = String::with_capacity(80);
            let _ = write!(
                v,
                "Root=1-{}-{};Parent={};Sampled={sampled}",
                &t[..8],
                &t[8..],
                hex(&ctx.span_id)
            );
            set(headers, &AMZN_TRACE_ID, v);
        }
        Format::Gcp => {
            let v = format!("{}/{};o={sampled}", hex(trace), u64_of(&ctx.span_id));
            set(headers, &CLOUD_TRACE, v);
        }
        Format::Instana => {
            set(headers, &INSTANA_T, hex(trace));
            set(headers, &INSTANA_S, hex(&ctx.span_id));
            set(headers, &INSTANA_L, sampled.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn all() -> Vec<Format> {
        let mut v = LEGACY_EXTRACT.to_vec();
        v.push(Format::Instana);
        v
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SPAN: &str = "b7ad6b7169203331";

    fn out() -> Outgoing {
        Outgoing {
            trace_id: from_hex::<16>(TRACE).unwrap().0,
            trace_id_len: 16,
            span_id: from_hex::<8>("00f067aa0ba902b7").unwrap().0,
            parent_id: Some(from_hex::<8>(SPAN).unwrap().0),
            sampled: true,
            debug: false,
        }
    }

    #[test]
    fn w3c_round_trip_and_validation() {
        let h = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-01"))]);
        let (f, e) = extract(&all(), &h).unwrap();
        assert_eq!(f, Format::W3c);
        assert_eq!(hex(&e.trace_id.unwrap()), TRACE);
        assert_eq!(hex(&e.span_id.unwrap()), SPAN);
        assert_eq!(e.sampled, Some(true));
        for bad in [
            format!("01-{TRACE}-{SPAN}-01"),
            format!("00-{}-{SPAN}-01", "0".repeat(32)),
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            format!("00-{TRACE}-{SPAN}-1"),
            format!("00-{TRACE}-{SPAN}"),
            format!("00-{TRACE}x-{SPAN}-01"),
        ] {
            let h = headers(&[("traceparent", &bad)]);
            assert_eq!(extract(&[Format::W3c], &h), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        inject(Format::W3c, &out(), &mut h);
        assert_eq!(h["traceparent"], format!("00-{TRACE}-00f067aa0ba902b7-01"));
    }

    #[test]
    fn b3_single_and_multi() {
        let h = headers(&[("b3", &format!("{TRACE}-{SPAN}-1-00f067aa0ba902b7"))]);
        let (f, e) = extract(&all(), &h).unwrap();
        assert_eq!(f, Format::B3);
        assert!(e.single_header);
        assert_eq!(hex(&e.parent_id.unwrap()), "00f067aa0ba902b7");
        assert_eq!(e.sampled, Some(true));

        // 64-bit trace id: kept at 8 bytes for b3, widened for w3c.
        let h = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "0"),
        ]);
        let (_, e) = extract(&all(), &h).unwrap();
        assert_eq!(e.trace_id_len, 8);
        assert_eq!(
            hex(&e.trace_id.unwrap()),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert_eq!(e.sampled, Some(false));
        let o = Outgoing {
            trace_id: e.trace_id.unwrap(),
            trace_id_len: e.trace_id_len,
            ..out()
        };
        let mut h = HeaderMap::new();
        inject(Format::B3, &o, &mut h);
        assert_eq!(h["x-b3-traceid"], "a3ce929d0e0e4736");
        assert_eq!(h["x-b3-spanid"], "00f067aa0ba902b7");
        assert_eq!(h["x-b3-parentspanid"], SPAN);
        assert_eq!(h["x-b3-sampled"], "1");
        inject(Format::B3Single, &o, &mut h);
        assert_eq!(
            h["b3"],
            format!("a3ce929d0e0e4736-00f067aa0ba902b7-1-{SPAN}")
        );

        // Sampling-only single header; debug flag.
        let (_, e) = extract(&all(), &headers(&[("b3", "0")])).unwrap();
        assert_eq!((e.trace_id, e.sampled), (None, Some(false)));
        let (_, e) = extract(&all(), &headers(&[("x-b3-flags", "1")])).unwrap();
        assert!(e.debug && e.sampled == Some(true));
        // b3 inside tracestate.
        let ts = format!("b3={TRACE}-{SPAN}");
        let (f, e) = extract(&all(), &headers(&[("tracestate", &ts)])).unwrap();
        assert_eq!((f, hex(&e.span_id.unwrap())), (Format::B3, SPAN.to_owned()));
        // A plain tracestate does not hide a traceparent.
        let tp = format!("00-{TRACE}-{SPAN}-01");
        let h = headers(&[("traceparent", &tp), ("tracestate", "vendor=x")]);
        assert_eq!(extract(&all(), &h).unwrap().0, Format::W3c);
    }

    #[test]
    fn jaeger_ot_datadog() {
        let h = headers(&[("uber-trace-id", &format!("{TRACE}:{SPAN}:0:1"))]);
        let (f, e) = extract(&all(), &h).unwrap();
        assert_eq!(
            (f, e.sampled, e.parent_id),
            (Format::Jaeger, Some(true), None)
        );
        let mut h = HeaderMap::new();
        inject(Format::Jaeger, &out(), &mut h);
        assert_eq!(
            h["uber-trace-id"],
            format!("{TRACE}:00f067aa0ba902b7:{SPAN}:01")
        );

        let h = headers(&[
            ("ot-tracer-traceid", "a3ce929d0e0e4736"),
            ("ot-tracer-spanid", SPAN),
            ("ot-tracer-sampled", "true"),
        ]);
        let (f, e) = extract(&all(), &h).unwrap();
        assert_eq!((f, e.trace_id_len), (Format::Ot, 8));
        // ot defaults to 64-bit trace ids for a 128-bit one generated here.
        let mut h = HeaderMap::new();
        inject(
            Format::Ot,
            &Outgoing {
                trace_id_len: 0,
                ..out()
            },
            &mut h,
        );
        assert_eq!(h["ot-tracer-traceid"], &TRACE[16..]);
        assert_eq!(h["ot-tracer-sampled"], "1");

        let h = headers(&[
            ("x-datadog-trace-id", "12345678901234567890"),
            ("x-datadog-parent-id", "42"),
            ("x-datadog-sampling-priority", "2"),
        ]);
        let (f, e) = extract(&all(), &h).unwrap();
        assert_eq!(f, Format::Datadog);
        assert_eq!(
            u64_of(&e.trace_id.unwrap()[8..]),
            12_345_678_901_234_567_890
        );
        assert_eq!(u64_of(&e.span_id.unwrap()), 42);
        let mut h = HeaderMap::new();
        inject(Format::Datadog, &out(), &mut h);
        assert_eq!(
            h["x-datadog-trace-id"],
            u64_of(&out().trace_id[8..]).to_string()
        );
        assert_eq!(h["x-datadog-parent-id"], u64_of(&out().span_id).to_string());
        assert_eq!(h["x-datadog-sampling-priority"], "1");
        let bad = headers(&[("x-datadog-sampling-priority", "7")]);
        assert_eq!(extract(&[Format::Datadog], &bad), None);
    }

    #[test]
    fn aws_gcp_instana() {
        let v = format!(
            "Root=1-{}-{};Parent={SPAN};Sampled=1",
            &TRACE[..8],
            &TRACE[8..]
        );
        let (f, e) = extract(&all(), &headers(&[("x-amzn-trace-id", &v)])).unwrap();
        assert_eq!(
            (f, hex(&e.trace_id.unwrap())),
            (Format::Aws, TRACE.to_owned())
        );
        assert_eq!(hex(&e.span_id.unwrap()), SPAN);
        let mut h = HeaderMap::new();
        inject(Format::Aws, &out(), &mut h);
        assert_eq!(
            h["x-amzn-trace-id"],
            format!(
                "Root=1-{}-{};Parent=00f067aa0ba902b7;Sampled=1",
                &TRACE[..8],
                &TRACE[8..]
            )
        );
        let bad = headers(&[("x-amzn-trace-id", "Root=2-1-2;Sampled=1")]);
        assert_eq!(extract(&[Format::Aws], &bad), None);

        let v = format!("{TRACE}/13218169227513496375;o=1");
        let (f, e) = extract(&all(), &headers(&[("x-cloud-trace-context", &v)])).unwrap();
        assert_eq!(f, Format::Gcp);
        assert_eq!(u64_of(&e.span_id.unwrap()), 13_218_169_227_513_496_375);
        assert_eq!(e.sampled, Some(true));
        let mut h = HeaderMap::new();
        inject(Format::Gcp, &out(), &mut h);
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{TRACE}/{};o=1", u64_of(&out().span_id))
        );

        let h = headers(&[
            ("x-instana-t", &TRACE[16..]),
            ("x-instana-s", SPAN),
            ("x-instana-l", "1,correlationType=web"),
        ]);
        let (f, e) = extract(&[Format::Instana], &h).unwrap();
        assert_eq!(
            (f, e.sampled, e.trace_id_len),
            (Format::Instana, Some(true), 8)
        );
        let mut h = HeaderMap::new();
        inject(Format::Instana, &out(), &mut h);
        assert_eq!(h["x-instana-t"], TRACE);
        assert_eq!(h["x-instana-l"], "1");
    }

    #[test]
    fn extraction_order_is_the_configured_one() {
        let tp = format!("00-{TRACE}-{SPAN}-01");
        let h = headers(&[("traceparent", &tp), ("x-b3-traceid", &TRACE[16..])]);
        assert_eq!(extract(&all(), &h).unwrap().0, Format::B3);
        assert_eq!(
            extract(&[Format::W3c, Format::B3], &h).unwrap().0,
            Format::W3c
        );
        assert_eq!(extract(&[], &h), None);
    }
}
