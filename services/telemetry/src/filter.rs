//! A per-layer filter that lets spans through by their level alone and events by another
//! filter. Console lines and exported logs have their own event levels, but both need to see
//! the request's span (at `info`) to know its ids, even when they print only warnings.

use tracing::subscriber::Interest;
use tracing::{Event, Metadata, span};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};

/// Spans at `spans` or above; events as `events` decides.
#[derive(Debug)]
pub(crate) struct SpansAndEvents<F> {
    spans: LevelFilter,
    events: F,
}

impl<F> SpansAndEvents<F> {
    pub(crate) fn new(spans: LevelFilter, events: F) -> Self {
        Self { spans, events }
    }
}

impl<S, F: Filter<S>> Filter<S> for SpansAndEvents<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if meta.is_span() {
            self.spans >= *meta.level()
        } else {
            self.events.enabled(meta, cx)
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            if self.spans >= *meta.level() {
                Interest::always()
            } else {
                Interest::never()
            }
        } else {
            self.events.callsite_enabled(meta)
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.events.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.events.max_level_hint().map(|e| e.max(self.spans))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.events.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.events.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.events.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.events.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.events.on_close(id, ctx);
    }
}
