//! The original collector's read-back calls, computed from the data the client and the
//! exporter hand over, never from rendered JSON: `get_coordinator_stats` and `get_snapshot`
//! over one coordinator's segment-wide totals (with the percentiles the exporter reports, the
//! same fine-bucket quantile, and the minimum and maximum of this process's own records), and
//! `get_overall_stats` over a report.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use coordmetrics::process::ProcessStat;
use coordmetrics::{histogram, CoordinatorTotals};
use coordmetrics_report::format::json::OverallStats;
use coordmetrics_report::model::Report;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// `numerator / denominator`, 0 when there is nothing to divide, as the original reported it.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn quantile_ms(totals: &CoordinatorTotals, q: f64) -> f64 {
    histogram::quantile(&totals.buckets, q).map_or(0.0, |seconds| seconds * 1e3)
}

/// The dict of `get_coordinator_stats`: zero-filled (the original's integer zeros) for a
/// coordinator without executions; otherwise segment-wide counts and percentiles, `min`/`max`
/// from `own_range` (this process's records; None when it kept none), plus the cache counts.
pub fn stats_dict<'py>(
    py: Python<'py>,
    name: &str,
    totals: Option<&CoordinatorTotals>,
    own_range: Option<(f64, f64)>,
) -> PyResult<Bound<'py, PyDict>> {
    let stats = PyDict::new(py);
    stats.set_item("coordinator_name", name)?;
    let Some(totals) = totals.filter(|t| t.executions > 0) else {
        for key in [
            "execution_count",
            "avg_duration_ms",
            "min_duration_ms",
            "max_duration_ms",
            "p50_duration_ms",
            "p95_duration_ms",
            "p99_duration_ms",
            "error_count",
            "error_rate",
            "cache_hit_rate",
        ] {
            stats.set_item(key, 0)?;
        }
        return Ok(stats);
    };
    let total_ms = totals.duration_sum_ns as f64 / 1e6;
    stats.set_item("execution_count", totals.executions)?;
    stats.set_item("avg_duration_ms", total_ms / totals.executions as f64)?;
    stats.set_item("min_duration_ms", own_range.map(|(low, _)| low))?;
    stats.set_item("max_duration_ms", own_range.map(|(_, high)| high))?;
    stats.set_item("p50_duration_ms", quantile_ms(totals, 0.50))?;
    stats.set_item("p95_duration_ms", quantile_ms(totals, 0.95))?;
    stats.set_item("p99_duration_ms", quantile_ms(totals, 0.99))?;
    stats.set_item("error_count", totals.errors)?;
    stats.set_item("error_rate", ratio(totals.errors, totals.executions))?;
    let lookups = totals.cache_hits.saturating_add(totals.cache_misses);
    stats.set_item("cache_hit_rate", ratio(totals.cache_hits, lookups))?;
    stats.set_item("cache_hits", totals.cache_hits)?;
    stats.set_item("cache_misses", totals.cache_misses)?;
    Ok(stats)
}

/// This process's resident memory and CPU use, for the `memory_bytes` and `cpu_percent` of a
/// `CoordinatorSnapshot`, as the original read them from its own process: CPU is the share of
/// one core since the previous reading (0.0 the first time, as psutil's `cpu_percent()`).
#[derive(Debug, Default)]
pub struct OwnProcess {
    previous: Mutex<Option<(Instant, Duration)>>,
}

impl OwnProcess {
    /// (resident bytes, CPU percent); zeros if `/proc` cannot be read, as the original's fallback.
    pub fn sample(&self) -> (u64, f64) {
        let Some(stat) = ProcessStat::read(std::process::id()) else {
            return (0, 0.0);
        };
        let now = Instant::now();
        let mut previous = self.previous.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cpu_percent = match previous.replace((now, stat.cpu_time)) {
            Some((then, cpu_then)) if now > then => {
                stat.cpu_time.saturating_sub(cpu_then).as_secs_f64() / (now - then).as_secs_f64() * 100.0
            }
            _ => 0.0,
        };
        (stat.rss_bytes, cpu_percent)
    }
}

/// A `CoordinatorSnapshot` of `totals` taken at `timestamp`: the counts are segment-wide; the
/// memory is the coordinator's explicit gauge if a live process set one, else `own_memory`.
pub fn snapshot_object<'py>(
    py: Python<'py>,
    timestamp: &Bound<'py, PyAny>,
    totals: &CoordinatorTotals,
    (own_memory, cpu_percent): (u64, f64),
) -> PyResult<Bound<'py, PyAny>> {
    static SNAPSHOT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let kwargs = PyDict::new(py);
    kwargs.set_item("timestamp", timestamp)?;
    kwargs.set_item("coordinator_name", &totals.name)?;
    kwargs.set_item("memory_bytes", totals.explicit_memory_bytes.unwrap_or(own_memory))?;
    kwargs.set_item("cpu_percent", cpu_percent)?;
    kwargs.set_item("execution_count", totals.executions)?;
    kwargs.set_item("total_duration_ms", totals.duration_sum_ns as f64 / 1e6)?;
    kwargs.set_item("error_count", totals.errors)?;
    kwargs.set_item("cache_hits", totals.cache_hits)?;
    kwargs.set_item("cache_misses", totals.cache_misses)?;
    SNAPSHOT.import(py, "coordmetrics.records", "CoordinatorSnapshot")?.call((), Some(&kwargs))
}

/// `datetime.now(timezone.utc).isoformat()`, the original's snapshot timestamp.
pub fn now_isoformat(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let datetime = py.import("datetime")?;
    let utc = datetime.getattr("timezone")?.getattr("utc")?;
    datetime.getattr("datetime")?.call_method1("now", (utc,))?.call_method0("isoformat")
}

/// The dict of `get_overall_stats`: the `overall_stats` of the metrics.json of `report`, the
/// same keys in the same order, the same figures.
pub fn overall_dict<'py>(py: Python<'py>, report: &Report) -> PyResult<Bound<'py, PyDict>> {
    let stats = OverallStats::of(report);
    let overall = PyDict::new(py);
    overall.set_item("total_executions", stats.total_executions)?;
    overall.set_item("total_coordinators", stats.total_coordinators)?;
    overall.set_item("total_errors", stats.total_errors)?;
    overall.set_item("overall_error_rate", stats.overall_error_rate)?;
    overall.set_item("uptime_seconds", stats.uptime_seconds)?;
    overall.set_item("analytics_events", stats.analytics_events)?;
    overall.set_item("throughput_per_sec", stats.throughput_per_sec)?;
    overall.set_item("cache_hits", stats.cache_hits)?;
    overall.set_item("cache_misses", stats.cache_misses)?;
    overall.set_item("cache_hit_rate", stats.cache_hit_rate)?;
    overall.set_item("memory_bytes", stats.memory_bytes)?;
    Ok(overall)
}
