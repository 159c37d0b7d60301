//! `metrics.json`: a superset of the original collector's schema (see docs/FORMATS.md).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::report::{
    rfc3339, saturating_sum, CoordinatorReport, HistoryPoint, MemorySource, Report, Status, Thresholds,
};

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
    history: Vec<HistoryJson<'a>>,
    recent_errors: Vec<RecentError<'a>>,
}

/// A history point as JSON: the text rendered when it was recorded.
#[derive(Serialize)]
#[serde(untagged)]
enum HistoryJson<'a> {
    Rendered(&'a serde_json::value::RawValue),
    Point(&'a HistoryPoint),
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
        Self {
            p95_ms: Pair { warning: t.p95_warning_ms, critical: t.p95_critical_ms },
            error_rate: Pair { warning: t.error_rate_warning, critical: t.error_rate_critical },
            cache_hit_rate: Pair { warning: t.cache_hit_rate_warning, critical: t.cache_hit_rate_critical },
            memory_growth_mb_per_hour: Pair {
                warning: t.memory_growth_warning_mb_per_hour,
                critical: t.memory_growth_critical_mb_per_hour,
            },
        }
    }
}

#[derive(Serialize)]
struct OverallStats<'a> {
    total_executions: u64,
    total_coordinators: usize,
    total_errors: u64,
    overall_error_rate: f64,
    uptime_seconds: f64,
    analytics_events: BTreeMap<&'a str, u64>,
    throughput_per_sec: f64,
    cache_hits: u64,
    cache_misses: u64,
    cache_hit_rate: Option<f64>,
    memory_bytes: u64,
}

#[derive(Serialize)]
struct Coordinator<'a> {
    coordinator_name: &'a str,
    /// 0 when no live process hosts the coordinator (`memory_source` "none").
    memory_bytes: u64,
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
    error_rate: f64,
    throughput_per_sec: f64,
    in_flight: i64,
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

/// Writes `report` as metrics.json.
///
/// # Errors
/// Only those of `out`.
pub fn write_report(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let total_executions = report.total_executions();
    let total_errors = report.total_errors();
    let cache_hits = saturating_sum(report.coordinators.iter().map(|c| c.totals.cache_hits));
    let cache_misses = saturating_sum(report.coordinators.iter().map(|c| c.totals.cache_misses));
    let cache_lookups = cache_hits.saturating_add(cache_misses);
    let uptime = report.timestamp.duration_since(report.segment.created).unwrap_or_default().as_secs_f64();
    let (with_executions, without_executions): (Vec<_>, Vec<_>) =
        report.coordinators.iter().partition(|c| c.totals.executions > 0);
    let document = Document {
        schema_version: SCHEMA_VERSION,
        timestamp: rfc3339::format(report.timestamp),
        demo: report.demo,
        source: Source {
            segment: report.segment.path.display().to_string(),
            segment_id: format!("{:016x}", report.segment.segment_id),
            segment_created: rfc3339::format(report.segment.created),
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
        overall_stats: OverallStats {
            total_executions,
            total_coordinators: with_executions.len(),
            total_errors,
            overall_error_rate: if total_executions > 0 {
                round6(total_errors as f64 / total_executions as f64)
            } else {
                0.0
            },
            uptime_seconds: round3(uptime),
            analytics_events: report.events.iter().map(|(name, count)| (name.as_str(), *count)).collect(),
            throughput_per_sec: round3(report.total_throughput()),
            cache_hits,
            cache_misses,
            cache_hit_rate: (cache_lookups > 0).then(|| round6(cache_hits as f64 / cache_lookups as f64)),
            memory_bytes: saturating_sum(report.coordinators.iter().filter_map(|c| c.memory_bytes)),
        },
        coordinators: with_executions.into_iter().map(coordinator_entry).collect(),
        coordinators_without_executions: without_executions.into_iter().map(coordinator_entry).collect(),
        history: report
            .history
            .iter()
            .map(|recorded| match &recorded.json {
                Some(json) => HistoryJson::Rendered(json),
                None => HistoryJson::Point(&recorded.point),
            })
            .collect(),
        recent_errors: report
            .recent_errors
            .iter()
            .map(|e| RecentError {
                timestamp: rfc3339::format(e.time),
                coordinator: &e.coordinator,
                pid: e.pid,
                message: &e.message,
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &document)?;
    out.write_all(b"\n")
}

fn coordinator_entry(c: &CoordinatorReport) -> Coordinator<'_> {
    let memory_bytes = c.memory_bytes.unwrap_or(0);
    Coordinator {
        coordinator_name: &c.totals.name,
        memory_bytes,
        memory_mb: round3(memory_bytes as f64 / (1024.0 * 1024.0)),
        memory_source: c.memory_source,
        cpu_percent: c.cpu_percent.map(round3),
        execution_count: c.totals.executions,
        total_duration_ms: round3(c.totals.duration_sum_ns as f64 / 1e6),
        error_count: c.totals.errors,
        cache_hits: c.totals.cache_hits,
        cache_misses: c.totals.cache_misses,
        cache_hit_rate: c.cache_hit_rate.map(round6),
        avg_duration_ms: c.avg_ms.map(round3),
        p50_duration_ms: c.p50_ms.map(round3),
        p95_duration_ms: c.p95_ms.map(round3),
        p99_duration_ms: c.p99_ms.map(round3),
        error_rate: round6(c.error_rate),
        throughput_per_sec: round3(c.throughput_per_sec),
        in_flight: c.totals.in_flight,
        memory_growth_mb_per_hour: c.memory_growth_mb_per_hour.map(round3),
        status: c.status,
        status_reasons: &c.status_reasons,
    }
}

/// The parts of a previous metrics.json needed to carry on after a restart.
#[derive(Debug, Deserialize)]
pub struct Previous {
    /// The segment it described.
    pub source: PreviousSource,
    /// Its history.
    #[serde(default)]
    pub history: Vec<HistoryPoint>,
}

/// See [`Previous`].
#[derive(Debug, Deserialize)]
pub struct PreviousSource {
    /// Segment id, hexadecimal.
    pub segment_id: String,
}

impl Previous {
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
