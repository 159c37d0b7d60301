//! What `/metrics` and the `.prom` file expose, independent of the encoding: metric families
//! and their samples, built once from a [`Report`] and rendered by each exposition format
//! (Prometheus text, OpenMetrics text, protobuf). One list, so the formats cannot drift apart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{CoordinatorReport, Health, Report};

use super::prometheus::PrometheusOptions;

/// The type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever increases (until the segment is recreated).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A latency distribution.
    Histogram,
}

impl Kind {
    /// What the type adds to the family name to make its samples' names: `_total` for a
    /// counter (a histogram's `_bucket`, `_sum` and `_count` are written by the histogram
    /// encoders).
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Counter => "_total",
            Kind::Gauge | Kind::Histogram => "",
        }
    }

    /// The type's name in the text formats.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One sample's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// A count.
    Unsigned(u64),
    /// A level that may be negative (in-flight executions from a torn read).
    Signed(i64),
    /// A measurement.
    Float(f64),
    /// The segment's fine buckets (see `coordmetrics::histogram`) and the sum of the
    /// observations, bounds and sum in `unit`.
    Histogram {
        /// Fine bucket counts.
        buckets: &'a [u64],
        /// Sum of the observations, in `unit`.
        sum: f64,
        /// Unit of the bounds and the sum.
        unit: HistogramUnit,
    },
}

/// The unit of a latency histogram's bounds and sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramUnit {
    /// The base unit, and the only one a native histogram can have (see `protobuf`).
    Seconds,
    /// The original collector's `duration_ms` histogram (`--compat-names`).
    Milliseconds,
}

impl HistogramUnit {
    /// Nanoseconds in one unit.
    fn nanos(self) -> f64 {
        match self {
            HistogramUnit::Seconds => 1e9,
            HistogramUnit::Milliseconds => 1e6,
        }
    }

    /// Units in one second.
    pub fn per_second(self) -> f64 {
        1e9 / self.nanos()
    }

    /// The histogram of a coordinator's totals in this unit.
    fn of(self, coordinator: &CoordinatorReport) -> Value<'_> {
        Value::Histogram {
            buckets: &coordinator.totals.buckets,
            sum: coordinator.totals.duration_sum_ns as f64 / self.nanos(),
            unit: self,
        }
    }
}

impl Value<'_> {
    /// The value as a float, for encodings that carry only floats (histograms: their count).
    pub fn as_f64(&self) -> f64 {
        match *self {
            Value::Unsigned(value) => value as f64,
            Value::Signed(value) => value as f64,
            Value::Float(value) => value,
            // Saturating: counts read from a corrupt segment may be anything.
            Value::Histogram { buckets, .. } => buckets.iter().fold(0u64, |sum, &b| sum.saturating_add(b)) as f64,
        }
    }
}

/// One series of a family: at most one label, as everything exposed is per coordinator, per
/// event or per table.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The label's name and value, if any.
    pub label: Option<(&'static str, &'a str)>,
    /// The value.
    pub value: Value<'a>,
}

/// A metric family: name, help, type and its samples (never empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Family<'a> {
    /// Family name; a counter's samples, and its family in the Prometheus text and protobuf
    /// formats, add [`Kind::suffix`].
    pub name: String,
    /// HELP text.
    pub help: &'static str,
    /// TYPE.
    pub kind: Kind,
    /// Samples in exposition order.
    pub samples: Vec<Sample<'a>>,
}

/// Collects families, dropping those without samples (a coordinator family with no
/// coordinators, memory nobody knows, no analytics events).
#[derive(Default)]
struct Families<'a>(Vec<Family<'a>>);

impl<'a> Families<'a> {
    fn push(&mut self, name: String, help: &'static str, kind: Kind, samples: Vec<Sample<'a>>) {
        if !samples.is_empty() {
            self.0.push(Family { name, help, kind, samples });
        }
    }

    fn single(&mut self, name: &str, help: &'static str, kind: Kind, value: Value<'a>) {
        self.push(name.into(), help, kind, vec![Sample { label: None, value }]);
    }

    /// A family with one sample per coordinator that has a value.
    fn per_coordinator(
        &mut self,
        name: String,
        help: &'static str,
        kind: Kind,
        coordinators: &'a [CoordinatorReport],
        value: impl Fn(&'a CoordinatorReport) -> Option<Value<'a>>,
    ) {
        let samples = coordinators
            .iter()
            .filter_map(|c| Some(Sample { label: Some(("coordinator", c.totals.name.as_str())), value: value(c)? }))
            .collect();
        self.push(name, help, kind, samples);
    }
}

/// Picks one counter of a coordinator.
type Pick = fn(&CoordinatorReport) -> u64;

/// Every family of `report`, in exposition order.
pub fn families<'a>(report: &'a Report, options: &PrometheusOptions) -> Vec<Family<'a>> {
    let ns = &options.namespace;
    let coordinators = report.coordinators.as_slice();
    let mut out = Families::default();
    let counters: [(&str, &'static str, Pick); 4] = [
        ("executions", "Coordinator executions recorded, successful and failed.", |c| c.totals.executions),
        ("errors", "Coordinator executions that failed.", |c| c.totals.errors),
        ("cache_hits", "Cache hits reported by the coordinator.", |c| c.totals.cache_hits),
        ("cache_misses", "Cache misses reported by the coordinator.", |c| c.totals.cache_misses),
    ];
    for (suffix, help, value) in counters {
        out.per_coordinator(format!("{ns}_{suffix}"), help, Kind::Counter, coordinators, |c| {
            Some(Value::Unsigned(value(c)))
        });
    }
    out.per_coordinator(
        format!("{ns}_duration_seconds"),
        "Coordinator execution latency.",
        Kind::Histogram,
        coordinators,
        |c| Some(HistogramUnit::Seconds.of(c)),
    );
    out.per_coordinator(
        format!("{ns}_in_flight"),
        "Executions started and not yet finished, in live processes.",
        Kind::Gauge,
        coordinators,
        |c| Some(Value::Signed(c.totals.in_flight)),
    );
    out.per_coordinator(
        format!("{ns}_memory_bytes"),
        "Memory of the coordinator: set by the client, else its share of its host processes' resident memory.",
        Kind::Gauge,
        coordinators,
        |c| c.memory_bytes.map(Value::Unsigned),
    );
    out.push(format!("{ns}_analytics_events"), "Analytics events recorded.", Kind::Counter, event_samples(report));
    out.single(
        &format!("{ns}_uptime_seconds"),
        "Seconds since the metrics segment was created.",
        Kind::Gauge,
        Value::Float(report.timestamp.duration_since(report.segment.created).map_or(0.0, |d| d.as_secs_f64())),
    );
    if options.compat_names {
        compat_families(&mut out, report, options);
    }
    out.0.extend(health_families(&report.health, report.interval));
    exporter_families(&mut out, report);
    out.0
}

/// The series the original Python collector documented (its README's names and its PromQL),
/// with the configured namespace in place of `victor_coordinator`: the seed's
/// `histogram_quantile(0.95, sum(rate(victor_coordinator_duration_ms_bucket[5m])) by
/// (coordinator, le))` works on them verbatim.
fn compat_families<'a>(out: &mut Families<'a>, report: &'a Report, options: &PrometheusOptions) {
    let ns = &options.namespace;
    let coordinators = report.coordinators.as_slice();
    out.per_coordinator(
        format!("{ns}_duration_ms"),
        "Coordinator execution latency in milliseconds (original collector's name; prefer duration_seconds).",
        Kind::Histogram,
        coordinators,
        |c| Some(HistogramUnit::Milliseconds.of(c)),
    );
    out.per_coordinator(
        format!("{ns}_duration_ms"),
        "Total execution time in milliseconds (original collector's name; prefer duration_seconds).",
        Kind::Counter,
        coordinators,
        |c| Some(Value::Float(c.totals.duration_sum_ns as f64 / 1e6)),
    );
    out.per_coordinator(
        format!("{ns}_cache_hit_rate"),
        "Cache hits / (hits + misses) since the segment was created, 0 without cache traffic (original collector's name).",
        Kind::Gauge,
        coordinators,
        |c| Some(Value::Float(c.cache_hit_rate.unwrap_or(0.0))),
    );
    out.single(
        &format!("{ns}_total_executions"),
        "Executions of all coordinators (original collector's name; prefer executions_total).",
        Kind::Gauge,
        Value::Unsigned(report.overall.executions),
    );
    // The original's events family has no `_coordinator` in its name; under a namespace
    // without that suffix it would be the default family itself, already there.
    if let Some(prefix) = ns.strip_suffix("_coordinator") {
        out.push(
            format!("{prefix}_analytics_events"),
            "Analytics events recorded (original collector's name).",
            Kind::Counter,
            event_samples(report),
        );
    }
}

/// The exporter's own families beyond [`health_families`]: snapshot cost, writers, drops and
/// how full the segment is.
fn exporter_families<'a>(out: &mut Families<'a>, report: &'a Report) {
    out.single(
        "coordmetrics_snapshot_duration_seconds",
        "Time the last snapshot of the segment took.",
        Kind::Gauge,
        Value::Float(report.health.snapshot_duration.as_secs_f64()),
    );
    out.single(
        "coordmetrics_live_writers",
        "Writer slots owned by live processes.",
        Kind::Gauge,
        Value::Unsigned(report.live_writers as u64),
    );
    out.single(
        "coordmetrics_segment_created_timestamp_seconds",
        "Unix time the segment was created; a change means its counters restarted.",
        Kind::Gauge,
        Value::Float(unix_seconds(report.segment.created)),
    );
    let dropped = &report.dropped;
    let reasons = [("name", dropped.name), ("no_block", dropped.no_block), ("no_writer", dropped.no_writer)];
    out.push(
        "coordmetrics_dropped_updates".into(),
        "Updates the clients could not record, by reason: no_writer (every writer slot taken by a live \
         process), no_block (block pool exhausted or file system full), name (name refused: empty or a full \
         table).",
        Kind::Counter,
        reasons
            .iter()
            .map(|&(reason, count)| Sample { label: Some(("reason", reason)), value: Value::Unsigned(count) })
            .collect(),
    );
    let capacities = report.capacities();
    let (used_blocks, blocks) = report.used_blocks;
    let tables = [
        ("blocks", blocks as usize, used_blocks as usize),
        ("coordinators", capacities.coordinators as usize, report.coordinators.len()),
        ("errors", capacities.errors as usize, report.used_errors),
        ("events", capacities.events as usize, report.events.len()),
        ("writers", capacities.writers as usize, report.used_writers),
    ];
    let per_table = |pick: fn((usize, usize)) -> usize| {
        tables
            .iter()
            .map(|&(kind, capacity, used)| Sample {
                label: Some(("kind", kind)),
                value: Value::Unsigned(pick((capacity, used)) as u64),
            })
            .collect()
    };
    out.push(
        "coordmetrics_segment_capacity".into(),
        "Capacity of each table of the segment.",
        Kind::Gauge,
        per_table(|(capacity, _)| capacity),
    );
    out.push(
        "coordmetrics_segment_used".into(),
        "Entries in use in each table of the segment.",
        Kind::Gauge,
        per_table(|(_, used)| used),
    );
}

/// The health families that exist even when no segment could be read: whether the last
/// snapshot worked, when one last did, and the error counters.
pub fn health_families(health: &Health, interval: Duration) -> Vec<Family<'static>> {
    let mut out = Families::default();
    out.single(
        "coordmetrics_up",
        "1 if the last snapshot of the segment succeeded.",
        Kind::Gauge,
        Value::Unsigned(u64::from(health.up)),
    );
    out.single(
        "coordmetrics_last_snapshot_timestamp_seconds",
        "Unix time of the last successful snapshot.",
        Kind::Gauge,
        Value::Float(health.last_success.map_or(0.0, unix_seconds)),
    );
    out.single(
        "coordmetrics_snapshot_interval_seconds",
        "Configured snapshot interval.",
        Kind::Gauge,
        Value::Float(interval.as_secs_f64()),
    );
    out.single(
        "coordmetrics_snapshot_errors",
        "Snapshots that failed (segment missing, corrupt, ...).",
        Kind::Counter,
        Value::Unsigned(health.snapshot_errors),
    );
    out.single(
        "coordmetrics_write_errors",
        "Output files that could not be written.",
        Kind::Counter,
        Value::Unsigned(health.write_errors),
    );
    out.0
}

/// One sample per analytics event.
fn event_samples(report: &Report) -> Vec<Sample<'_>> {
    report
        .events
        .iter()
        .map(|(event, count)| Sample { label: Some(("event", event.as_str())), value: Value::Unsigned(*count) })
        .collect()
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
