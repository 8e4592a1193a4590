//! Console lines: `TIME LEVEL SERVICE [trace_id=.. span_id=.. request_id=.. user=..] message
//! key=value...`, the ids present only inside a request. Trace and span ids come from the
//! active OpenTelemetry context (the innermost traced span); the request id and user from the
//! nearest span that recorded them ([`RequestFieldsLayer`]).

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::{REQUEST_ID_FIELD, USER_FIELD};

/// The request id and user a span recorded (stored in the span's extensions).
#[derive(Debug, Default, Clone)]
struct RequestFields {
    request_id: Option<String>,
    user: Option<String>,
}

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            REQUEST_ID_FIELD => self.request_id = Some(value.to_owned()),
            USER_FIELD => self.user = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            REQUEST_ID_FIELD | USER_FIELD => self.record_str(field, &format!("{value:?}")),
            _ => {}
        }
    }
}

/// Keeps each span's `request_id` and `user` fields where the console format finds them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFieldsLayer;

impl<S> Layer<S> for RequestFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let fields = attrs.fields();
        if fields.field(REQUEST_ID_FIELD).is_none() && fields.field(USER_FIELD).is_none() {
            return;
        }
        let mut found = RequestFields::default();
        attrs.record(&mut found);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(found);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(found) = ext.get_mut::<RequestFields>() {
            values.record(found);
        } else {
            let mut found = RequestFields::default();
            values.record(&mut found);
            if found.request_id.is_some() || found.user.is_some() {
                ext.insert(found);
            }
        }
    }
}

/// The console event format.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleFormat {
    service: String,
}

impl ConsoleFormat {
    pub(crate) fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for ConsoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} {}", event.metadata().level(), self.service)?;

        let ids = opentelemetry::Context::map_current(|cx| {
            let sc = cx.span().span_context().clone();
            sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
        });
        let mut fields = RequestFields::default();
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if let Some(found) = span.extensions().get::<RequestFields>() {
                    if fields.request_id.is_none() {
                        fields.request_id.clone_from(&found.request_id);
                    }
                    if fields.user.is_none() {
                        fields.user.clone_from(&found.user);
                    }
                }
            }
        }
        if ids.is_some() || fields.request_id.is_some() || fields.user.is_some() {
            writer.write_str(" [")?;
            let mut sep = "";
            if let Some((trace_id, span_id)) = ids {
                write!(writer, "trace_id={trace_id} span_id={span_id}")?;
                sep = " ";
            }
            if let Some(id) = &fields.request_id {
                write!(writer, "{sep}request_id={id}")?;
                sep = " ";
            }
            if let Some(user) = &fields.user {
                write!(writer, "{sep}user={user}")?;
            }
            writer.write_str("]")?;
        }
        writer.write_str(" ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
