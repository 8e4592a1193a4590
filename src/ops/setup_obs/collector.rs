//! `--collector-config`: set the `Authorization` header of every OpenTelemetry Collector
//! exporter that points at OpenObserve, and change nothing else in the file.
//!
//! The file is parsed (serde_yaml) to learn which exporters qualify, but it is never written back
//! from the parse tree: that would drop its comments and reorder its keys (the original Python
//! glue did exactly that to a tracked file). Instead the value on the `Authorization:` line is
//! replaced in the text, in the quoting style it had; a missing header or `headers:` block is
//! inserted as new lines. The edited text is parsed again and must equal the original tree with
//! only those values changed, else nothing is written.
//!
//! An exporter points at OpenObserve when one of its endpoints (`endpoint`, `traces_endpoint`,
//! `logs_endpoint`, `metrics_endpoint`) has the host of `--url` and either its port (OTLP/HTTP)
//! or 5081, OpenObserve's OTLP/gRPC port.

use std::ops::Range;

use reqwest::Url;
use serde_yaml::{Mapping, Value};

/// OpenObserve's default OTLP/gRPC port (`ZO_GRPC_PORT`).
const GRPC_PORT: u16 = 5081;

/// The endpoint keys of an OTLP exporter.
const ENDPOINT_KEYS: [&str; 4] = [
    "endpoint",
    "traces_endpoint",
    "logs_endpoint",
    "metrics_endpoint",
];

/// Why the collector config cannot be edited. Messages never contain a header value.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The file is not YAML.
    #[error("not valid YAML: {0}")]
    Parse(String),
    /// No exporter's endpoint is on the OpenObserve host.
    #[error("no exporter points at {url} (exporters and endpoints seen: {seen})")]
    NoExporter {
        /// The OpenObserve URL.
        url: String,
        /// `name -> endpoint` of every exporter, or `none`.
        seen: String,
    },
    /// The exporter is laid out in a way this editor does not change surgically.
    #[error("cannot edit exporter {exporter}: {reason}")]
    Layout {
        /// The exporter's name.
        exporter: String,
        /// What is in the way.
        reason: String,
    },
    /// The edit would have changed more than the header values (a bug or an odd layout).
    #[error(
        "editing the Authorization headers would change other parts of the file; nothing was written"
    )]
    Verify,
}

/// The exporters of `text` that point at the OpenObserve at `url`, in file order.
pub fn qualifying_exporters(text: &str, url: &Url) -> Result<Vec<String>, CollectorError> {
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| CollectorError::Parse(e.to_string()))?;
    let mut found = Vec::new();
    let mut seen = Vec::new();
    if let Some(exporters) = doc.get("exporters").and_then(Value::as_mapping) {
        for (name, config) in exporters {
            let Some(name) = name.as_str() else { continue };
            let endpoints: Vec<&str> = ENDPOINT_KEYS
                .iter()
                .filter_map(|k| config.get(*k).and_then(Value::as_str))
                .collect();
            if endpoints.iter().any(|e| points_at(e, url)) {
                found.push(name.to_owned());
            }
            seen.push(format!(
                "{name} -> {}",
                endpoints.first().copied().unwrap_or("(no endpoint)")
            ));
        }
    }
    if found.is_empty() {
        return Err(CollectorError::NoExporter {
            url: url.to_string(),
            seen: if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.join(", ")
            },
        });
    }
    Ok(found)
}

/// Whether an exporter endpoint (`http://host:5080/api/org`, or `host:5081` for gRPC) is on the
/// OpenObserve at `url`.
fn points_at(endpoint: &str, url: &Url) -> bool {
    let endpoint = endpoint.trim();
    let parsed = if endpoint.contains("://") {
        Url::parse(endpoint)
    } else {
        Url::parse(&format!("http://{endpoint}"))
    };
    let Ok(ep) = parsed else { return false };
    let (Some(host), Some(want)) = (ep.host_str(), url.host_str()) else {
        return false;
    };
    if !host.eq_ignore_ascii_case(want) {
        return false;
    }
    let port = ep.port_or_known_default();
    port == url.port_or_known_default() || port == Some(GRPC_PORT)
}

/// `text` with the `Authorization` header of each of `exporters` set to `value`.
pub fn rewrite(text: &str, exporters: &[String], value: &str) -> Result<String, CollectorError> {
    let lines = scan(text);
    let top = children(text, &lines, None);
    let exporters_line = top
        .iter()
        .copied()
        .find(|&i| key_at(text, &lines[i]).is_some_and(|k| k.name == "exporters"))
        .ok_or_else(|| CollectorError::Layout {
            exporter: exporters.first().cloned().unwrap_or_default(),
            reason: "no top-level `exporters:` block mapping".to_owned(),
        })?;
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for name in exporters {
        let layout = |reason: &str| CollectorError::Layout {
            exporter: name.clone(),
            reason: reason.to_owned(),
        };
        let ex = find_child(text, &lines, exporters_line, |k| k == name)
            .ok_or_else(|| layout("its key is not on a line of its own under `exporters:`"))?;
        let ex_key = key_at(text, &lines[ex]).ok_or_else(|| layout("unreadable key line"))?;
        if !value_is_empty(&text[ex_key.after..lines[ex].end]) {
            return Err(layout(
                "it is written inline (flow style); use a block mapping",
            ));
        }
        let step = child_indent(text, &lines, ex).unwrap_or(lines[ex].indent + 2);
        match find_child(text, &lines, ex, |k| k == "headers") {
            None => {
                let at = line_end_with_newline(text, &lines[block_end(text, &lines, ex)]);
                let mut insert = String::new();
                if !text[..at].ends_with('\n') {
                    insert.push('\n');
                }
                let inner = step + (step - lines[ex].indent);
                insert.push_str(&format!(
                    "{:step$}headers:\n{:inner$}Authorization: {}\n",
                    "",
                    "",
                    quoted(value, Style::Double)
                ));
                edits.push((at..at, insert));
            }
            Some(h) => {
                let h_key = key_at(text, &lines[h]).ok_or_else(|| layout("unreadable headers"))?;
                let rest = &text[h_key.after..lines[h].end];
                if value_is_empty(rest) {
                    let auth: Vec<usize> = children(text, &lines, Some(h))
                        .into_iter()
                        .filter(|&i| {
                            key_at(text, &lines[i])
                                .is_some_and(|k| k.name.eq_ignore_ascii_case("authorization"))
                        })
                        .collect();
                    if auth.is_empty() {
                        let ind = child_indent(text, &lines, h)
                            .unwrap_or(lines[h].indent + (step - lines[ex].indent));
                        let at = line_end_with_newline(text, &lines[block_end(text, &lines, h)]);
                        let lead = if text[..at].ends_with('\n') { "" } else { "\n" };
                        edits.push((
                            at..at,
                            format!(
                                "{lead}{:ind$}Authorization: {}\n",
                                "",
                                quoted(value, Style::Double)
                            ),
                        ));
                    }
                    for a in auth {
                        let k = key_at(text, &lines[a]).ok_or_else(|| layout("unreadable key"))?;
                        let scalar =
                            scalar_at(text, k.after, lines[a].end, false).ok_or_else(|| {
                                layout("its Authorization value is not a one-line scalar")
                            })?;
                        edits.push((scalar.span, quoted(value, scalar.style)));
                    }
                } else {
                    edits.push(flow_edit(text, h_key.after, lines[h].end, value).map_err(
                        |reason| CollectorError::Layout {
                            exporter: name.clone(),
                            reason,
                        },
                    )?);
                }
            }
        }
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = text.to_owned();
    for (range, with) in edits {
        out.replace_range(range, &with);
    }
    verify(text, &out, exporters, value)?;
    Ok(out)
}

/// The edit of a one-line flow mapping `headers: {a: b, Authorization: "..."}`, from `from`
/// (just after `headers:`) to `end` (the end of the line).
fn flow_edit(
    text: &str,
    from: usize,
    end: usize,
    value: &str,
) -> Result<(Range<usize>, String), String> {
    let bytes = text.as_bytes();
    let mut i = skip_spaces(text, from, end);
    if bytes.get(i) != Some(&b'{') {
        return Err("its headers are neither a block mapping nor a one-line flow mapping".into());
    }
    i += 1;
    let mut entries = 0;
    let mut found = Vec::new();
    loop {
        i = skip_spaces(text, i, end);
        match bytes.get(i) {
            Some(b'}') if i < end => break,
            None => return Err("its flow mapping of headers does not end on its line".into()),
            _ if i >= end => {
                return Err("its flow mapping of headers does not end on its line".into());
            }
            _ => {}
        }
        let key = scalar_at(text, i, end, true).ok_or("unreadable header name")?;
        i = skip_spaces(text, key.span.end, end);
        if bytes.get(i) != Some(&b':') {
            return Err("unreadable flow mapping of headers".into());
        }
        let v = scalar_at(text, i + 1, end, true).ok_or("a header value is not a scalar")?;
        if key.text.eq_ignore_ascii_case("authorization") {
            found.push(v.span.clone());
        }
        entries += 1;
        i = skip_spaces(text, v.span.end, end);
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return Err("unreadable flow mapping of headers".into()),
        }
    }
    match found.as_slice() {
        [] => {
            let sep = if entries == 0 { "" } else { ", " };
            Ok((
                i..i,
                format!("{sep}Authorization: {}", quoted(value, Style::Double)),
            ))
        }
        [span] => {
            let style = match bytes.get(span.start) {
                Some(b'"') => Style::Double,
                Some(b'\'') => Style::Single,
                _ => Style::Plain,
            };
            Ok((span.clone(), quoted(value, style)))
        }
        _ => Err("several Authorization headers in one flow mapping".into()),
    }
}

/// The edited text must parse to the original tree with only the header values changed.
fn verify(old: &str, new: &str, exporters: &[String], value: &str) -> Result<(), CollectorError> {
    let mut want: Value =
        serde_yaml::from_str(old).map_err(|e| CollectorError::Parse(e.to_string()))?;
    let got: Value = serde_yaml::from_str(new).map_err(|_| CollectorError::Verify)?;
    for name in exporters {
        let Some(ex) = want
            .get_mut("exporters")
            .and_then(|e| e.get_mut(name.as_str()))
            .and_then(Value::as_mapping_mut)
        else {
            return Err(CollectorError::Verify);
        };
        let headers = ex
            .entry(Value::from("headers"))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if headers.is_null() {
            *headers = Value::Mapping(Mapping::new());
        }
        let Some(headers) = headers.as_mapping_mut() else {
            return Err(CollectorError::Verify);
        };
        let mut set = false;
        for (k, v) in headers.iter_mut() {
            if k.as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("authorization"))
            {
                *v = Value::from(value);
                set = true;
            }
        }
        if !set {
            headers.insert(Value::from("Authorization"), Value::from(value));
        }
    }
    if want == got {
        Ok(())
    } else {
        Err(CollectorError::Verify)
    }
}

/// One line of the file: byte range without its newline, and its indentation.
#[derive(Debug)]
struct Line {
    start: usize,
    end: usize,
    indent: usize,
}

fn scan(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let body = raw.strip_suffix('\n').unwrap_or(raw);
        let body = body.strip_suffix('\r').unwrap_or(body);
        let indent = body.len() - body.trim_start_matches(' ').len();
        out.push(Line {
            start,
            end: start + body.len(),
            indent,
        });
        start += raw.len();
    }
    out
}

/// Whether the line holds YAML content (not blank, not only a comment).
fn is_content(text: &str, line: &Line) -> bool {
    let t = text[line.start..line.end].trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The indentation of the first content line inside `parent`'s block, if it has one.
fn child_indent(text: &str, lines: &[Line], parent: usize) -> Option<usize> {
    lines[parent + 1..]
        .iter()
        .find(|l| is_content(text, l))
        .filter(|l| l.indent > lines[parent].indent)
        .map(|l| l.indent)
}

/// The key lines directly inside `parent`'s block (the top level for `None`).
fn children(text: &str, lines: &[Line], parent: Option<usize>) -> Vec<usize> {
    let (from, min) = match parent {
        Some(p) => (p + 1, Some(lines[p].indent)),
        None => (0, None),
    };
    let mut want = None;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(from) {
        if !is_content(text, line) {
            continue;
        }
        if min.is_some_and(|m| line.indent <= m) {
            break;
        }
        let w = *want.get_or_insert(line.indent);
        if line.indent == w && key_at(text, line).is_some() {
            out.push(i);
        }
    }
    out
}

fn find_child(
    text: &str,
    lines: &[Line],
    parent: usize,
    matches: impl Fn(&str) -> bool,
) -> Option<usize> {
    children(text, lines, Some(parent))
        .into_iter()
        .find(|&i| key_at(text, &lines[i]).is_some_and(|k| matches(&k.name)))
}

/// The last content line of `parent`'s block (`parent` itself when the block is empty).
fn block_end(text: &str, lines: &[Line], parent: usize) -> usize {
    let mut last = parent;
    for (i, line) in lines.iter().enumerate().skip(parent + 1) {
        if !is_content(text, line) {
            continue;
        }
        if line.indent <= lines[parent].indent {
            break;
        }
        last = i;
    }
    last
}

/// The end of `line` including its newline (where a following line would be inserted).
fn line_end_with_newline(text: &str, line: &Line) -> usize {
    let rest = &text[line.end..];
    if rest.starts_with("\r\n") {
        line.end + 2
    } else if rest.starts_with('\n') {
        line.end + 1
    } else {
        line.end
    }
}

/// A mapping key at the start of a line: its unquoted name and the byte just after its `:`.
struct Key {
    name: String,
    after: usize,
}

fn key_at(text: &str, line: &Line) -> Option<Key> {
    let start = line.start + line.indent;
    let t = &text[start..line.end];
    if t.starts_with('-') || t.starts_with('?') || t.starts_with('#') {
        return None;
    }
    let key = if t.starts_with('"') || t.starts_with('\'') {
        scalar_at(text, start, line.end, true)?
    } else {
        // A plain key ends at the first `: ` (or `:` at the end of the line).
        let b = t.as_bytes();
        let colon = (0..b.len()).find(|&i| {
            b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ' || b[i + 1] == b'\t')
        })?;
        Scalar {
            span: start..start + colon,
            text: t[..colon].trim_end().to_owned(),
            style: Style::Plain,
        }
    };
    let colon = skip_spaces(text, key.span.end, line.end);
    if text.as_bytes().get(colon) != Some(&b':') || colon >= line.end {
        return None;
    }
    Some(Key {
        name: key.text,
        after: colon + 1,
    })
}

/// Whether what follows a key's `:` on its line is nothing (or only a comment).
fn value_is_empty(rest: &str) -> bool {
    let t = rest.trim();
    t.is_empty() || t.starts_with('#')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Double,
    Single,
    Plain,
}

/// A one-line scalar: its byte span in the text, its (unescaped enough) text and its style.
struct Scalar {
    span: Range<usize>,
    text: String,
    style: Style,
}

/// The scalar starting at or after `from` (spaces skipped), ending before `end`. `flow` stops a
/// plain scalar at `,` `}` `]` and `:` too. Block scalars (`|`, `>`) and empty values are `None`.
fn scalar_at(text: &str, from: usize, end: usize, flow: bool) -> Option<Scalar> {
    let b = text.as_bytes();
    let start = skip_spaces(text, from, end);
    match b.get(start)? {
        _ if start >= end => None,
        b'"' => {
            let mut i = start + 1;
            while i < end {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        return Some(Scalar {
                            span: start..i + 1,
                            text: text[start + 1..i].to_owned(),
                            style: Style::Double,
                        });
                    }
                    _ => i += 1,
                }
            }
            None
        }
        b'\'' => {
            let mut i = start + 1;
            while i < end {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') && i + 1 < end {
                        i += 2;
                        continue;
                    }
                    return Some(Scalar {
                        span: start..i + 1,
                        text: text[start + 1..i].replace("''", "'"),
                        style: Style::Single,
                    });
                }
                i += 1;
            }
            None
        }
        b'|' | b'>' | b'{' | b'[' | b'&' | b'*' | b'!' | b'#' => None,
        _ => {
            let mut stop = end;
            for i in start..end {
                let c = b[i];
                let space_before = i > start && (b[i - 1] == b' ' || b[i - 1] == b'\t');
                if (c == b'#' && space_before)
                    || (flow && matches!(c, b',' | b'}' | b']'))
                    || (flow && c == b':' && b.get(i + 1).is_none_or(|n| *n == b' '))
                {
                    stop = i;
                    break;
                }
            }
            let t = text[start..stop].trim_end();
            if t.is_empty() {
                return None;
            }
            Some(Scalar {
                span: start..start + t.len(),
                text: t.to_owned(),
                style: Style::Plain,
            })
        }
    }
}

fn skip_spaces(text: &str, mut i: usize, end: usize) -> usize {
    let b = text.as_bytes();
    while i < end && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// `value` as a YAML scalar in `style` (the header value is `Basic ` + base64: no character in it
/// needs escaping in any style).
fn quoted(value: &str, style: Style) -> String {
    match style {
        Style::Double => format!("\"{value}\""),
        Style::Single => format!("'{value}'"),
        Style::Plain => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://openobserve:5080").unwrap()
    }

    const CONFIG: &str = "\
# Collector for the stack. Keep this comment.
receivers:
  otlp:
    protocols:
      http:
        endpoint: 0.0.0.0:4318   # in-container
exporters:
  debug:
    verbosity: detailed
  # the OpenObserve exporter
  otlphttp/openobserve:
    endpoint: http://openobserve:5080/api/default
    headers:
      stream-name: default
      Authorization: \"Basic b2xk\"   # rewritten by gwctl
  otlp/openobserve:
    endpoint: openobserve:5081
    tls: {insecure: true}
    headers: {organization: default, authorization: 'Basic b2xk'}
  otlphttp/elsewhere:
    endpoint: http://other:5080/api/default
    headers:
      Authorization: keep-me
  otlphttp/noheaders:
    endpoint: \"http://OpenObserve:5080/api/x\"
    compression: gzip
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [otlphttp/openobserve, debug]}
";

    #[test]
    fn finds_the_exporters_on_the_openobserve_host() {
        assert_eq!(
            qualifying_exporters(CONFIG, &url()).unwrap(),
            [
                "otlphttp/openobserve",
                "otlp/openobserve",
                "otlphttp/noheaders"
            ]
        );
        let err = qualifying_exporters(CONFIG, &Url::parse("http://nothere:5080").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("otlphttp/elsewhere -> http://other:5080/api/default"),
            "{err}"
        );
    }

    #[test]
    fn rewrites_only_the_header_values() {
        let names = qualifying_exporters(CONFIG, &url()).unwrap();
        let out = rewrite(CONFIG, &names, "Basic bmV3").unwrap();
        let want = CONFIG
            .replace(
                "Authorization: \"Basic b2xk\"   # rewritten",
                "Authorization: \"Basic bmV3\"   # rewritten",
            )
            .replace(
                "authorization: 'Basic b2xk'}",
                "authorization: 'Basic bmV3'}",
            )
            .replace(
                "    compression: gzip\n",
                "    compression: gzip\n    headers:\n      Authorization: \"Basic bmV3\"\n",
            );
        assert_eq!(out, want);
        // Idempotent: a second rewrite with the same value is the same text.
        assert_eq!(rewrite(&out, &names, "Basic bmV3").unwrap(), out);
    }

    #[test]
    fn inserts_into_empty_blocks_and_flow_maps() {
        let text = "exporters:\n    otlphttp:\n        endpoint: http://openobserve:5080/api/o\n        headers:\n    otlp:\n        endpoint: openobserve:5081\n        headers: {}\n";
        let names = qualifying_exporters(text, &url()).unwrap();
        let out = rewrite(text, &names, "Basic eA==").unwrap();
        assert_eq!(
            out,
            "exporters:\n    otlphttp:\n        endpoint: http://openobserve:5080/api/o\n        headers:\n            Authorization: \"Basic eA==\"\n    otlp:\n        endpoint: openobserve:5081\n        headers: {Authorization: \"Basic eA==\"}\n"
        );
    }

    #[test]
    fn refuses_inline_exporters_and_block_scalars() {
        let text = "exporters:\n  otlphttp: {endpoint: \"http://openobserve:5080/api/o\"}\n";
        let names = qualifying_exporters(text, &url()).unwrap();
        assert!(matches!(
            rewrite(text, &names, "Basic eA=="),
            Err(CollectorError::Layout { .. })
        ));
        let text = "exporters:\n  otlphttp:\n    endpoint: http://openobserve:5080/api/o\n    headers:\n      Authorization: |\n        Basic b2xk\n";
        let names = qualifying_exporters(text, &url()).unwrap();
        assert!(matches!(
            rewrite(text, &names, "Basic eA=="),
            Err(CollectorError::Layout { .. })
        ));
    }

    #[test]
    fn env_references_in_the_path_still_match_and_crlf_is_kept() {
        let text = "exporters:\r\n  otlphttp/openobserve:\r\n    endpoint: http://openobserve:5080/api/${env:OPENOBSERVE_ORG}\r\n    headers:\r\n      Authorization: \"${env:OPENOBSERVE_AUTH}\"\r\n";
        let names = qualifying_exporters(text, &url()).unwrap();
        let out = rewrite(text, &names, "Basic eA==").unwrap();
        assert_eq!(out, text.replace("${env:OPENOBSERVE_AUTH}", "Basic eA=="));
    }
}
