//! `metrics.json`: a superset of the original collector's schema (see docs/FORMATS.md). Owns
//! every byte of it, the history's included (rendered once per point and cached by
//! [`JsonWriter`]), and reading a previous one back ([`SavedDocument`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::history::HistoryPoint;
use crate::memory::{MemorySource, MIB};
use crate::model::{CoordinatorReport, Report};
use crate::thresholds::{Measure, Status, Thresholds};
use crate::time;

/// Version of the metrics.json schema.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    timestamp: String,
    demo: bool,
    source: Source,
    exporter: Exporter<'a>,
    thresholds: ThresholdPairs,
    overall_stats: OverallStats<'a>,
    /// Coordinators with executions, as the original listed them (its dashboard divides by
    /// `execution_count`).
    coordinators: Vec<Coordinator<'a>>,
    /// The others: cache traffic only so far.
    coordinators_without_executions: Vec<Coordinator<'a>>,
    /// Each point as compact JSON, rendered once (see [`JsonWriter`]).
    history: Vec<&'a RawValue>,
    recent_errors: Vec<RecentError<'a>>,
}

#[derive(Serialize)]
struct Source {
    segment: String,
    segment_id: String,
    segment_created: String,
    exporter_version: &'static str,
    interval_seconds: f64,
}

#[derive(Serialize)]
struct Exporter<'a> {
    uptime_seconds: f64,
    snapshot_duration_ms: f64,
    live_writers: usize,
    dropped_updates: u64,
    last_error: Option<&'a str>,
}

#[derive(Serialize)]
struct Pair {
    warning: f64,
    critical: f64,
}

#[derive(Serialize)]
struct ThresholdPairs {
    p95_ms: Pair,
    error_rate: Pair,
    cache_hit_rate: Pair,
    memory_growth_mb_per_hour: Pair,
}

impl From<&Thresholds> for ThresholdPairs {
    fn from(t: &Thresholds) -> Self {
        let pair = |measure| {
            let [warning, critical] = t.levels(measure);
            Pair { warning, critical }
        };
        Self {
            p95_ms: pair(Measure::P95),
            error_rate: pair(Measure::ErrorRate),
            cache_hit_rate: pair(Measure::CacheHitRate),
            memory_growth_mb_per_hour: pair(Measure::MemoryGrowth),
        }
    }
}

/// `overall_stats` of metrics.json: the report's sums as the original collector's
/// `get_overall_stats()` gave them (rounded, rates as fractions). The Python binding's
/// `get_overall_stats()` is this too.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverallStats<'a> {
    pub total_executions: u64,
    /// Coordinators with at least one execution.
    pub total_coordinators: usize,
    pub total_errors: u64,
    /// 0..1, 0 without executions.
    pub overall_error_rate: f64,
    /// Age of the segment.
    pub uptime_seconds: f64,
    pub analytics_events: BTreeMap<&'a str, u64>,
    pub throughput_per_sec: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// 0..1; `None` without lookups.
    pub cache_hit_rate: Option<f64>,
    pub memory_bytes: u64,
}

impl<'a> OverallStats<'a> {
    /// The overall figures of `report`.
    pub fn of(report: &'a Report) -> Self {
        let overall = &report.overall;
        let cache_lookups = overall.cache_hits.saturating_add(overall.cache_misses);
        let uptime = report.timestamp.duration_since(report.segment.created).unwrap_or_default().as_secs_f64();
        Self {
            total_executions: overall.executions,
            total_coordinators: overall.coordinators_with_executions,
            total_errors: overall.errors,
            overall_error_rate: if overall.executions > 0 {
                round6(overall.errors as f64 / overall.executions as f64)
            } else {
                0.0
            },
            uptime_seconds: round3(uptime),
            analytics_events: report.events.iter().map(|(name, count)| (name.as_str(), *count)).collect(),
            throughput_per_sec: round3(overall.throughput_per_sec),
            cache_hits: overall.cache_hits,
            cache_misses: overall.cache_misses,
            cache_hit_rate: (cache_lookups > 0).then(|| round6(overall.cache_hits as f64 / cache_lookups as f64)),
            memory_bytes: overall.memory_bytes,
        }
    }
}

#[derive(Serialize)]
struct Coordinator<'a> {
    coordinator_name: &'a str,
    /// 0 when no live process hosts the coordinator (`memory_source` "none").
    memory_bytes: u64,
    /// In MiB, as the original collector wrote it.
    memory_mb: f64,
    memory_source: MemorySource,
    cpu_percent: Option<f64>,
    execution_count: u64,
    total_duration_ms: f64,
    error_count: u64,
    cache_hits: u64,
    cache_misses: u64,
    cache_hit_rate: Option<f64>,
    avg_duration_ms: Option<f64>,
    p50_duration_ms: Option<f64>,
    p95_duration_ms: Option<f64>,
    p99_duration_ms: Option<f64>,
    /// The p95 the status compares with the thresholds: since the previous snapshot.
    window_p95_duration_ms: Option<f64>,
    error_rate: f64,
    throughput_per_sec: f64,
    in_flight: i64,
    /// MiB per hour, the unit of `memory_mb`.
    memory_growth_mb_per_hour: Option<f64>,
    status: Status,
    status_reasons: &'a [String],
}

#[derive(Serialize)]
struct RecentError<'a> {
    timestamp: String,
    coordinator: &'a str,
    pid: u32,
    message: &'a str,
}

/// Rounds to 3 decimals: sub-microsecond digits of a millisecond figure are noise.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Rounds to 6 decimals, for rates in 0..1.
fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// Writes `report` as metrics.json, rendering every history point; [`JsonWriter`] renders each
/// point once instead.
///
/// # Examples
/// ```
/// let report = coordmetrics_report::sample::sample_report();
/// let mut out = Vec::new();
/// coordmetrics_report::format::json::write_report(&mut out, &report)?;
/// let document: serde_json::Value = serde_json::from_slice(&out)?;
/// assert_eq!(document["overall_stats"]["total_executions"], report.overall.executions);
/// assert_eq!(document["coordinators"][0]["coordinator_name"], "ConfigCoordinator");
/// assert_eq!(document["demo"], true);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Only those of `out`.
pub fn write_report(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    JsonWriter::default().write(out, report)
}

/// Writes successive reports as metrics.json, keeping the JSON of the history points already
/// rendered: metrics.json carries up to `--history` points, and rendering them all again at
/// every snapshot would be most of the exporter's work.
#[derive(Debug, Default)]
pub struct JsonWriter {
    /// The points of the last report written, by address: held here, so that no address is
    /// reused by another point while it is a key.
    rendered: HashMap<usize, (Arc<HistoryPoint>, Box<RawValue>)>,
}

impl JsonWriter {
    /// Writes `report` as metrics.json.
    ///
    /// # Errors
    /// Only those of `out`.
    pub fn write(&mut self, out: &mut dyn Write, report: &Report) -> io::Result<()> {
        let mut previous = std::mem::take(&mut self.rendered);
        for point in &report.history {
            let key = Arc::as_ptr(point) as usize;
            let entry = match previous.remove(&key) {
                Some(entry) => entry,
                None => (Arc::clone(point), serde_json::value::to_raw_value(&**point)?),
            };
            self.rendered.insert(key, entry);
        }
        let history = report.history.iter().map(|point| &*self.rendered[&(Arc::as_ptr(point) as usize)].1).collect();
        serde_json::to_writer_pretty(&mut *out, &document(report, history))?;
        out.write_all(b"\n")
    }
}

fn document<'a>(report: &'a Report, history: Vec<&'a RawValue>) -> Document<'a> {
    let (with_executions, without_executions): (Vec<_>, Vec<_>) =
        report.coordinators.iter().partition(|c| c.totals.executions > 0);
    Document {
        schema_version: SCHEMA_VERSION,
        timestamp: time::format(report.timestamp),
        demo: report.demo,
        source: Source {
            segment: report.segment.path.display().to_string(),
            segment_id: format!("{:016x}", report.segment.segment_id),
            segment_created: time::format(report.segment.created),
            exporter_version: env!("CARGO_PKG_VERSION"),
            interval_seconds: report.interval.as_secs_f64(),
        },
        exporter: Exporter {
            uptime_seconds: round3(report.exporter_uptime.as_secs_f64()),
            snapshot_duration_ms: round3(report.health.snapshot_duration.as_secs_f64() * 1e3),
            live_writers: report.live_writers,
            dropped_updates: report.dropped.updates,
            last_error: report.health.last_error.as_deref(),
        },
        thresholds: (&report.thresholds).into(),
        overall_stats: OverallStats::of(report),
        coordinators: with_executions.into_iter().map(coordinator_entry).collect(),
        coordinators_without_executions: without_executions.into_iter().map(coordinator_entry).collect(),
        history,
        recent_errors: report
            .recent_errors
            .iter()
            .map(|e| RecentError {
                timestamp: time::format(e.time),
                coordinator: e.coordinator_name.as_deref().unwrap_or_default(),
                pid: e.pid,
                message: &e.message,
            })
            .collect(),
    }
}

fn coordinator_entry(c: &CoordinatorReport) -> Coordinator<'_> {
    let memory_bytes = c.memory_bytes.unwrap_or(0);
    Coordinator {
        coordinator_name: &c.totals.name,
        memory_bytes,
        memory_mb: round3(memory_bytes as f64 / MIB),
        memory_source: c.memory_source,
        cpu_percent: c.cpu_percent.map(round3),
        execution_count: c.totals.executions,
        total_duration_ms: round3(c.totals.duration_sum_ns as f64 / 1e6),
        error_count: c.totals.errors,
        cache_hits: c.totals.cache_hits,
        cache_misses: c.totals.cache_misses,
        cache_hit_rate: c.cache_hit_rate.map(round6),
        avg_duration_ms: c.lifetime_avg_ms.map(round3),
        p50_duration_ms: c.lifetime_p50_ms.map(round3),
        p95_duration_ms: c.lifetime_p95_ms.map(round3),
        p99_duration_ms: c.lifetime_p99_ms.map(round3),
        window_p95_duration_ms: c.window_p95_ms.map(round3),
        error_rate: round6(c.error_rate),
        throughput_per_sec: round3(c.throughput_per_sec),
        in_flight: c.totals.in_flight,
        memory_growth_mb_per_hour: c.memory_growth_mib_per_hour.map(round3),
        status: c.status,
        status_reasons: &c.status_reasons,
    }
}

/// The parts of a previous metrics.json needed to carry on after a restart.
#[derive(Debug, Deserialize)]
pub struct SavedDocument {
    /// The segment it described.
    pub source: SavedSource,
    /// Its history.
    #[serde(default)]
    pub history: Vec<HistoryPoint>,
}

/// See [`SavedDocument`].
#[derive(Debug, Deserialize)]
pub struct SavedSource {
    /// Segment id, hexadecimal.
    pub segment_id: String,
}

impl SavedDocument {
    /// Parses a previous metrics.json.
    ///
    /// # Errors
    /// Not JSON of this schema.
    pub fn parse(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// Its history, if it describes segment `segment_id` (else the counters restarted and the
    /// history would mislead).
    pub fn history_for(self, segment_id: u64) -> Option<Vec<HistoryPoint>> {
        (u64::from_str_radix(&self.source.segment_id, 16).ok() == Some(segment_id)).then_some(self.history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Health;
    use crate::reporter::{ReportOptions, Reporter};

    /// A writer that keeps rendered points writes what rendering them all again writes, as
    /// points enter and leave a bounded history.
    #[test]
    fn cached_history_is_what_a_fresh_rendering_writes() {
        let sample = crate::sample::sample_report();
        let mut reporter =
            Reporter::starting_at(ReportOptions { history: 3, ..ReportOptions::default() }, sample.timestamp);
        let mut writer = JsonWriter::default();
        for step in 0..6u64 {
            let mut snapshot = sample_snapshot(&sample);
            snapshot.taken_at += std::time::Duration::from_secs(10 * step);
            let report = reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at));
            let (mut cached, mut fresh) = (Vec::new(), Vec::new());
            writer.write(&mut cached, &report).unwrap();
            write_report(&mut fresh, &report).unwrap();
            assert_eq!(String::from_utf8(cached).unwrap(), String::from_utf8(fresh).unwrap(), "step {step}");
            assert_eq!(writer.rendered.len(), report.history.len());
        }
    }

    fn sample_snapshot(report: &Report) -> coordmetrics::Snapshot {
        coordmetrics::Snapshot {
            taken_at: report.timestamp,
            info: report.segment.clone(),
            coordinators: report.coordinators.iter().map(|c| c.totals.clone()).collect(),
            events: report.events.clone(),
            writers: Vec::new(),
            processes: Vec::new(),
            blocks_in_use: report.used_blocks,
            dropped: report.dropped,
            errors: report.recent_errors.clone(),
        }
    }

    /// The history of a previous metrics.json comes back as data, that of an exporter before
    /// `window_p95_ms` was named so included, and only for the segment it described.
    #[test]
    fn saved_history_is_read_back_once_as_data() {
        let report = crate::sample::sample_report();
        let mut out = Vec::new();
        write_report(&mut out, &report).unwrap();
        let saved = SavedDocument::parse(&out).unwrap();
        let history = saved.history_for(report.segment.segment_id).unwrap();
        assert_eq!(history.len(), report.history.len());
        // serde_json may read a float back one unit in the last place off: counts and times
        // are compared exactly.
        for (read, written) in history.iter().zip(&report.history) {
            assert_eq!(read.timestamp, written.timestamp);
            let counts = |p: &HistoryPoint| {
                p.coordinators
                    .iter()
                    .map(|(n, e)| (n.clone(), e.executions, e.errors, e.memory_bytes))
                    .collect::<Vec<_>>()
            };
            assert_eq!(counts(read), counts(written));
        }

        let old = br#"{"source":{"segment_id":"00000000000000ff"},"history":[{"timestamp":"2026-01-01T00:00:10Z",
            "interval_seconds":10.0,"coordinators":{"a":{"executions":3,"errors":0,"throughput_per_sec":0.3,
            "p95_ms":12.5,"memory_bytes":null}}}]}"#;
        let history = SavedDocument::parse(old).unwrap().history_for(0xff).unwrap();
        assert_eq!(history[0].coordinators["a"].window_p95_ms, Some(12.5));
        assert!(SavedDocument::parse(old).unwrap().history_for(0xfe).is_none());
    }
}
