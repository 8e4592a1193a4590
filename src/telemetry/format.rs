//! gwctl's log line formats: tracing-subscriber's text and JSON formats, plus the ids of the
//! request a line was logged in. Inside a request ([`super::scope::RequestScope`]) a line gets
//! `request_id` and, once a tracing plugin set them, `trace_id` and `span_id` (lower-case hex):
//! as `key=value` fields at the end of a text line, as flat top-level fields of a JSON line.
//!
//! Lines outside a request (start-up, the control plane, the `listening ...` line) are the inner
//! format's output untouched. Inside a request the inner format writes into a buffer first and
//! the ids are added to it; no per-request tracing span is involved.

use std::fmt::{self, Write as _};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::scope::{self, TraceIds};

/// How the ids are added to the inner format's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// ` request_id=.. trace_id=.. span_id=..` before the newline.
    Text,
    /// `,"request_id":"..",...` before the closing brace.
    Json,
}

/// An event format that adds the current request's ids to `inner`'s lines.
#[derive(Debug, Clone)]
pub(crate) struct Scoped<F> {
    inner: F,
    style: Style,
}

impl<F> Scoped<F> {
    /// Around a text format (`key=value` fields).
    pub(crate) fn text(inner: F) -> Self {
        Self {
            inner,
            style: Style::Text,
        }
    }

    /// Around a JSON format writing one object per line.
    pub(crate) fn json(inner: F) -> Self {
        Self {
            inner,
            style: Style::Json,
        }
    }
}

/// The ids of the request an event was logged in.
struct Ids {
    request_id: String,
    trace: Option<TraceIds>,
}

impl<S, N, F> FormatEvent<S, N> for Scoped<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = scope::with_current(|s| Ids {
            request_id: s.request_id().to_owned(),
            trace: s.trace(),
        });
        let Some(ids) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        add_ids(&mut line, &ids, self.style);
        writer.write_str(&line)
    }
}

/// Add `ids` to one formatted line (which ends with a newline, after the JSON object's `}`).
fn add_ids(line: &mut String, ids: &Ids, style: Style) {
    let had_newline = line.ends_with('\n');
    if had_newline {
        line.pop();
    }
    let mut fields: Vec<(&str, String)> = Vec::with_capacity(3);
    fields.push(("request_id", ids.request_id.clone()));
    if let Some(t) = &ids.trace {
        fields.push(("trace_id", hex(&t.trace_id)));
        fields.push(("span_id", hex(&t.span_id)));
    }
    match style {
        Style::Text => {
            for (k, v) in &fields {
                let _ = write!(line, " {k}={v}");
            }
        }
        Style::Json => {
            if line.ends_with('}') {
                line.pop();
                let empty = line.ends_with('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 || !empty {
                        line.push(',');
                    }
                    let value = serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_owned());
                    let _ = write!(line, "\"{k}\":{value}");
                }
                line.push('}');
            }
        }
    }
    if had_newline {
        line.push('\n');
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(trace: bool) -> Ids {
        Ids {
            request_id: "0123456789abcdef0123456789abcdef".into(),
            trace: trace.then_some(TraceIds {
                trace_id: [0xab; 16],
                span_id: [0x01; 8],
                sampled: true,
            }),
        }
    }

    #[test]
    fn text_lines_get_key_value_fields_before_the_newline() {
        let mut line =
            "2025-01-01T00:00:00Z  WARN upstream request failed addr=1.2.3.4:80\n".to_owned();
        add_ids(&mut line, &ids(true), Style::Text);
        assert_eq!(
            line,
            "2025-01-01T00:00:00Z  WARN upstream request failed addr=1.2.3.4:80 \
             request_id=0123456789abcdef0123456789abcdef \
             trace_id=abababababababababababababababab span_id=0101010101010101\n"
        );
    }

    #[test]
    fn json_lines_get_flat_top_level_fields() {
        let mut line = r#"{"timestamp":"t","level":"WARN","message":"m"}"#.to_owned() + "\n";
        add_ids(&mut line, &ids(false), Style::Json);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert!(line.ends_with("}\n"));
        assert_eq!(v["request_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(v["message"], "m");
        assert!(v.get("trace_id").is_none());

        let mut line = r#"{"message":"m"}"#.to_owned();
        add_ids(&mut line, &ids(true), Style::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["trace_id"], "abababababababababababababababab");
        assert_eq!(v["span_id"], "0101010101010101");

        let mut line = "{}".to_owned();
        add_ids(&mut line, &ids(false), Style::Json);
        assert_eq!(line, r#"{"request_id":"0123456789abcdef0123456789abcdef"}"#);
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn take(&self) -> Vec<String> {
            let text = String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap();
            text.lines().map(str::to_owned).collect()
        }
    }

    /// Log outside a request, inside one, then inside one with trace ids.
    async fn log_three_lines() {
        tracing::info!(proxy = "127.0.0.1:1", "listening");
        let id = "0123456789abcdef0123456789abcdef";
        super::scope::RequestScope::new(id)
            .run(async {
                tracing::warn!(addr = "127.0.0.1:9", "upstream request failed");
                super::scope::with_current(|s| {
                    s.set_trace(TraceIds {
                        trace_id: [0xab; 16],
                        span_id: [0x01; 8],
                        sampled: true,
                    })
                });
                tracing::warn!("traced");
            })
            .await;
    }

    #[tokio::test]
    async fn text_subscriber_adds_the_scope_ids() {
        use tracing_subscriber::layer::SubscriberExt;
        let out = Lines::default();
        let sink = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .event_format(Scoped::text(
                tracing_subscriber::fmt::format()
                    .with_target(false)
                    .with_ansi(false),
            ));
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        log_three_lines().await;
        let lines = out.take();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].ends_with("INFO listening proxy=\"127.0.0.1:1\""),
            "{}",
            lines[0]
        );
        assert!(!lines[0].contains("request_id"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(
                "upstream request failed addr=\"127.0.0.1:9\" \
                 request_id=0123456789abcdef0123456789abcdef"
            ),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with(
                "traced request_id=0123456789abcdef0123456789abcdef \
                 trace_id=abababababababababababababababab span_id=0101010101010101"
            ),
            "{}",
            lines[2]
        );
    }

    #[tokio::test]
    async fn json_subscriber_adds_the_scope_ids_as_top_level_fields() {
        use tracing_subscriber::layer::SubscriberExt;
        let out = Lines::default();
        let sink = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(move || sink.clone())
            .event_format(Scoped::json(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_target(false),
            ));
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        log_three_lines().await;
        let lines: Vec<serde_json::Value> = out
            .take()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["message"], "listening");
        assert_eq!(lines[0]["proxy"], "127.0.0.1:1");
        assert!(lines[0].get("request_id").is_none());
        assert_eq!(lines[1]["addr"], "127.0.0.1:9");
        assert_eq!(lines[1]["request_id"], "0123456789abcdef0123456789abcdef");
        assert!(lines[1].get("trace_id").is_none());
        assert_eq!(lines[2]["level"], "WARN");
        assert_eq!(lines[2]["trace_id"], "abababababababababababababababab");
        assert_eq!(lines[2]["span_id"], "0101010101010101");
    }
}
