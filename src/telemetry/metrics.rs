//! `GET /metrics` (status and admin listeners): the Prometheus text exposition (format 0.0.4) of
//! the node metrics, the prometheus plugin's families ([`crate::plugins::prometheus`]) and
//! gwctl's own gauges and counters.
//!
//! The text is rendered here rather than with the `prometheus` crate because the crate sorts
//! label names alphabetically, and Kong's dashboards and tests expect Kong's exact output: its
//! label order (`service,route,code,source,workspace,consumer`), families in name order, series
//! in label order, histogram buckets of every series, then the counts, then the sums (the order
//! Kong's sorted shared-dict keys give), `le` values as plain numbers (`1`, `2.5`, `+Inf`). The
//! counters themselves are plain atomics kept by their owners; a scrape only reads them.
//!
//! Node metrics (always present):
//!
//! - `kong_datastore_reachable`: 1 without a database (DB-less), else the Postgres store's last
//!   contact (the value `/status` reports as `database.reachable`).
//! - `kong_nginx_connections_total{node_id,subsystem,state}` and `kong_nginx_requests_total`:
//!   the proxy listeners' counters (the same numbers as `/status`; `state="total"` is the
//!   request count, as in Kong).
//! - `kong_node_info{node_id,version}` = 1, `version` the Kong version gwctl matches.
//! - `kong_memory_workers_lua_vms_bytes{node_id,pid,kong_subsystem}`: gwctl has no Lua VMs; the
//!   series carries the process's resident set size (`VmRSS` of `/proc/self/status`) so Kong's
//!   memory panel shows the gateway's memory; the same value is
//!   `gwctl_process_resident_memory_bytes`.
//! - `kong_upstream_target_health{upstream,target,address,state,subsystem}`: when an enabled
//!   prometheus instance has `upstream_health_metrics`; per address, one series per state, 1 for
//!   the current one (`address` empty and `dns_error` for a target that resolved to nothing).
//! - `gwctl_config_revision` (gauge) and `gwctl_config_reload_failures_total` (counter): the
//!   snapshot being served and the publishes that did not compile.
//! - `gwctl_circuit_breaker_state{service,state}` (1 for the current one of `closed`, `open`,
//!   `half_open`) and `gwctl_circuit_breaker_opened_total{service}`, per service whose breaker
//!   has seen a request (`service` = name, else id).
//! - `gwctl_telemetry_dropped_total{signal}`: spans, logs and access-log lines the exporters had
//!   to drop ([`crate::telemetry::DROPS`]).
//!
//! Not exported: `kong_nginx_timers` and the `kong_memory_lua_shared_dict_*` gauges (gwctl has
//! neither nginx timers nor shared dicts), Kong's hybrid-mode and enterprise families.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::balancer::HealthState;
use crate::plugins::circuit_breaker::State as BreakerState;
use crate::status::StatusState;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, count and sum.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

struct HistSeries {
    labels: String,
    /// `(le, cumulative count)`, `+Inf` last.
    buckets: Vec<(String, u64)>,
    sum: String,
}

struct Family {
    help: &'static str,
    ty: MetricType,
    /// `(label text, value)` of counters and gauges.
    samples: Vec<(String, String)>,
    hists: Vec<HistSeries>,
}

/// A text exposition being assembled: families in name order, series in label order.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.families.keys()).finish()
    }
}

impl Exposition {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &'static str, help: &'static str, ty: MetricType) -> &mut Family {
        self.families.entry(name).or_insert_with(|| Family {
            help,
            ty,
            samples: Vec::new(),
            hists: Vec::new(),
        })
    }

    /// One counter or gauge sample. `labels` in the order they are shown.
    pub fn sample(
        &mut self,
        name: &'static str,
        help: &'static str,
        ty: MetricType,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        let text = label_text(labels);
        self.family(name, help, ty)
            .samples
            .push((text, value.to_string()));
    }

    /// One histogram series: `counts` has a (non-cumulative) count per bound of `bounds_ms`,
    /// then the count above the last bound; `sum_us` is the sum of the observations in
    /// microseconds (shown in milliseconds).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        bounds_ms: &[u64],
        counts: &[u64],
        sum_us: u64,
    ) {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(bounds_ms.len() + 1);
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let le = bounds_ms
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            buckets.push((le, cumulative));
        }
        let series = HistSeries {
            labels: labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect::<Vec<_>>()
                .join(","),
            buckets,
            sum: millis(sum_us),
        };
        self.family(name, help, MetricType::Histogram)
            .hists
            .push(series);
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, mut fam) in self.families {
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", fam.ty.as_str());
            fam.samples.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, value) in &fam.samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
            fam.hists.sort_by(|a, b| a.labels.cmp(&b.labels));
            let sep = |labels: &str| if labels.is_empty() { "" } else { "," };
            for h in &fam.hists {
                for (le, count) in &h.buckets {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{}{}le=\"{le}\"}} {count}",
                        h.labels,
                        sep(&h.labels)
                    );
                }
            }
            let braces = |labels: &str| {
                if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{labels}}}")
                }
            };
            for h in &fam.hists {
                let total = h.buckets.last().map_or(0, |b| b.1);
                let _ = writeln!(out, "{name}_count{} {total}", braces(&h.labels));
            }
            for h in &fam.hists {
                let _ = writeln!(out, "{name}_sum{} {}", braces(&h.labels), h.sum);
            }
        }
        out
    }
}

/// `{k1="v1",k2="v2"}`, or nothing without labels.
fn label_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    s.push('}');
    s
}

/// A label value escaped for the text format (backslash, double quote, line feed).
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

/// Microseconds as milliseconds, exactly (`1500` -> `1.5`, `2000` -> `2`).
fn millis(us: u64) -> String {
    let (whole, frac) = (us / 1000, us % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        let f = format!("{frac:03}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}

/// The process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Render everything `/metrics` shows.
pub fn render(s: &StatusState) -> String {
    let mut out = Exposition::new();
    let node_id = s.node_id.to_string();
    let node = node_id.as_str();
    let g = MetricType::Gauge;

    let reachable = s.config.database().is_none_or(|d| d.reachable);
    out.sample(
        "kong_datastore_reachable",
        "Datastore reachable from Kong, 0 is unreachable",
        g,
        &[],
        u8::from(reachable),
    );

    let st = &s.stats;
    let active = st.connections_active.load(Ordering::Relaxed).max(0);
    let writing = st
        .requests_in_flight
        .load(Ordering::Relaxed)
        .clamp(0, active);
    let total = st.total_requests.load(Ordering::Relaxed);
    let states: [(&str, i64); 7] = [
        (
            "accepted",
            i64::try_from(st.connections_accepted.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        ),
        ("active", active),
        (
            "handled",
            i64::try_from(st.connections_handled.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        ),
        ("reading", 0),
        ("total", i64::try_from(total).unwrap_or(i64::MAX)),
        ("waiting", active - writing),
        ("writing", writing),
    ];
    for (state, v) in states {
        out.sample(
            "kong_nginx_connections_total",
            "Number of connections by subsystem",
            g,
            &[("node_id", node), ("subsystem", "http"), ("state", state)],
            v,
        );
    }
    out.sample(
        "kong_nginx_requests_total",
        "Number of requests total",
        g,
        &[("node_id", node), ("subsystem", "http")],
        total,
    );
    out.sample(
        "kong_node_info",
        "Kong Node metadata information",
        g,
        &[("node_id", node), ("version", crate::KONG_VERSION)],
        1,
    );
    if let Some(rss) = resident_memory_bytes() {
        let pid = std::process::id().to_string();
        out.sample(
            "kong_memory_workers_lua_vms_bytes",
            "Allocated bytes in worker Lua VM",
            g,
            &[("node_id", node), ("pid", &pid), ("kong_subsystem", "http")],
            rss,
        );
        out.sample(
            "gwctl_process_resident_memory_bytes",
            "Resident set size of the gwctl process in bytes",
            g,
            &[],
            rss,
        );
    }

    let snapshot = s.store.load();
    out.sample(
        "gwctl_config_revision",
        "Revision of the configuration snapshot being served (increases with every publish)",
        g,
        &[],
        snapshot.revision,
    );
    out.sample(
        "gwctl_config_reload_failures_total",
        "Configuration publishes that did not compile (the previous snapshot kept serving)",
        MetricType::Counter,
        &[],
        s.store.publish_failures(),
    );

    if crate::plugins::prometheus::upstream_health_enabled(&snapshot.config.plugins) {
        let mut upstreams: Vec<(&String, &std::sync::Arc<crate::balancer::Balancer>)> =
            snapshot.balancers.iter().collect();
        upstreams.sort_by(|a, b| a.0.cmp(b.0));
        for (name, balancer) in upstreams {
            for t in balancer.health().targets {
                let addresses: Vec<(String, HealthState)> = if t.addresses.is_empty() {
                    vec![(String::new(), HealthState::DnsError)]
                } else {
                    t.addresses
                        .iter()
                        .map(|a| (format!("{}:{}", a.ip, a.port), a.health))
                        .collect()
                };
                for (address, current) in addresses {
                    for state in [
                        HealthState::HealthchecksOff,
                        HealthState::Healthy,
                        HealthState::Unhealthy,
                        HealthState::DnsError,
                    ] {
                        let label = state.as_kong_str().to_ascii_lowercase();
                        out.sample(
                            "kong_upstream_target_health",
                            "Health status of targets of upstream. States = \
                             healthchecks_off|healthy|unhealthy|dns_error, value is 1 when \
                             state is populated.",
                            g,
                            &[
                                ("upstream", name),
                                ("target", &t.target),
                                ("address", &address),
                                ("state", &label),
                                ("subsystem", "http"),
                            ],
                            u8::from(state == current),
                        );
                    }
                }
            }
        }
    }

    for b in s.breakers.list() {
        let service = b
            .service_name
            .clone()
            .unwrap_or_else(|| b.service_id.to_string());
        for (state, label) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
        ] {
            out.sample(
                "gwctl_circuit_breaker_state",
                "Circuit-breaker state per service: 1 for the current state",
                g,
                &[("service", &service), ("state", label)],
                u8::from(b.state == state),
            );
        }
        out.sample(
            "gwctl_circuit_breaker_opened_total",
            "Times the circuit breaker of a service opened",
            MetricType::Counter,
            &[("service", &service)],
            b.times_opened,
        );
    }

    let drops = &crate::telemetry::DROPS;
    for (signal, n) in [
        ("access_log", &drops.access_log),
        ("logs", &drops.logs),
        ("spans", &drops.spans),
    ] {
        out.sample(
            "gwctl_telemetry_dropped_total",
            "Telemetry dropped because a bounded queue was full or an export failed for good",
            MetricType::Counter,
            &[("signal", signal)],
            n.load(Ordering::Relaxed),
        );
    }

    s.prometheus.render(&mut out);
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_sorted_series_sorted_histograms_in_kongs_order() {
        let mut e = Exposition::new();
        let c = MetricType::Counter;
        e.sample("b_total", "B.", c, &[("k", "z")], 2);
        e.sample("b_total", "B.", c, &[("k", "a")], 1);
        e.sample("a_gauge_x", "A.", MetricType::Gauge, &[], 7);
        e.histogram("h_ms", "H.", &[("s", "y")], &[1, 5], &[1, 0, 2], 9_500);
        e.histogram("h_ms", "H.", &[("s", "x")], &[1, 5], &[0, 1, 0], 3_000);
        let text = e.finish();
        let want = "\
# HELP a_gauge_x A.
# TYPE a_gauge_x gauge
a_gauge_x 7
# HELP b_total B.
# TYPE b_total counter
b_total{k=\"a\"} 1
b_total{k=\"z\"} 2
# HELP h_ms H.
# TYPE h_ms histogram
h_ms_bucket{s=\"x\",le=\"1\"} 0
h_ms_bucket{s=\"x\",le=\"5\"} 1
h_ms_bucket{s=\"x\",le=\"+Inf\"} 1
h_ms_bucket{s=\"y\",le=\"1\"} 1
h_ms_bucket{s=\"y\",le=\"5\"} 1
h_ms_bucket{s=\"y\",le=\"+Inf\"} 3
h_ms_count{s=\"x\"} 1
h_ms_count{s=\"y\"} 3
h_ms_sum{s=\"x\"} 3
h_ms_sum{s=\"y\"} 9.5
";
        assert_eq!(text, want);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_text(&[("a", "x\"y\\z\nw"), ("b", "plain")]),
            "{a=\"x\\\"y\\\\z\\nw\",b=\"plain\"}"
        );
    }

    #[test]
    fn millis_are_exact() {
        assert_eq!(millis(0), "0");
        assert_eq!(millis(1), "0.001");
        assert_eq!(millis(1500), "1.5");
        assert_eq!(millis(2000), "2");
        assert_eq!(millis(123_456), "123.456");
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_memory_bytes().is_some_and(|b| b > 0));
        }
    }
}
