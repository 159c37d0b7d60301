//! `CoordinatorMetricsCollector`, the original collector's API: opening the segment (or a
//! disabled collector), resolving names to cached handles and recording through them, the
//! read-back calls and exports over a snapshot of the segment (computed by `stats` and `export`),
//! and the resets.

use std::path::PathBuf;
use std::sync::Mutex;

use coordmetrics::{
    Capacities, Collector, CoordinatorTotals, SegmentOptions, Snapshot, DEFAULT_SEGMENT_PATH, SEGMENT_ENV,
};
use coordmetrics_report::model::{Health, Report};
use coordmetrics_report::reporter::{ReportOptions, Reporter};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::{metrics_disabled, segment_error};
use crate::export::{self, DEFAULT_NAMESPACE};
use crate::handles::{CoordinatorHandle, EventHandle, Handles};
use crate::stats::{self, OwnProcess};
use crate::tracker::Tracking;

/// The original collector's default bound of the per-coordinator history.
const DEFAULT_MAX_HISTORY: usize = 10_000;

/// How many of its last executions `export_json(include_history=True)` lists per coordinator,
/// as the original did.
const RECENT_EXECUTIONS: usize = 100;

/// Records coordinator metrics into a shared-memory segment that every process on the host
/// can write and that the `coordmetrics` exporter reads.
///
/// `max_history` bounds the executions this process keeps per coordinator (for min/max,
/// metadata and `recent_executions`), as the original collector's did. `segment` is the path
/// of the segment (default: `$COORDMETRICS_SEGMENT`, else `/dev/shm/coordmetrics`); it is
/// created if it does not exist, with `capacities` (a dict of `coordinators`, `events`,
/// `writers`, `errors`; ignored for an existing segment). Raises `SegmentError` (an
/// `OSError`) if the segment cannot be opened or created.
#[pyclass(frozen, subclass, module = "coordmetrics", name = "CoordinatorMetricsCollector")]
#[derive(Debug)]
pub(crate) struct MetricsCollector {
    pub(crate) collector: Collector,
    /// The segment path (None for a disabled collector).
    #[pyo3(get)]
    segment: Option<PathBuf>,
    /// Why this collector is disabled, if it is.
    #[pyo3(get)]
    disabled_reason: Option<String>,
    coordinators: Handles<CoordinatorHandle>,
    events: Handles<EventHandle>,
    /// Remembers the previous export of `export_json`, for rates and the history.
    reporter: Mutex<Reporter>,
    /// Executions kept per coordinator in this process.
    #[pyo3(get)]
    max_history: usize,
    /// For the memory and CPU of `get_snapshot`.
    own_process: OwnProcess,
}

impl MetricsCollector {
    fn with(
        py: Python<'_>,
        collector: Collector,
        max_history: usize,
        segment: Option<PathBuf>,
        disabled_reason: Option<String>,
    ) -> Self {
        Self {
            collector,
            segment,
            disabled_reason,
            coordinators: Handles::new(py),
            events: Handles::new(py),
            reporter: Mutex::new(Reporter::new(ReportOptions::default())),
            max_history,
            own_process: OwnProcess::default(),
        }
    }

    fn coordinator_handle<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, CoordinatorHandle>> {
        self.coordinators.get(name, |text| CoordinatorHandle::resolve(&self.collector, text, self.max_history))
    }

    fn event_handle<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, EventHandle>> {
        self.events.get(name, |text| EventHandle::resolve(&self.collector, text))
    }

    /// The shortest and longest duration this process kept for `name`, in ms.
    fn own_range(&self, name: &Bound<'_, PyString>) -> PyResult<Option<(f64, f64)>> {
        Ok(self.coordinators.cached(name)?.and_then(|handle| handle.get().history.min_max_ms()))
    }

    /// A snapshot of the segment taken now, with the GIL released.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Snapshot> {
        let snapshot = if self.collector.is_enabled() { py.detach(|| self.collector.snapshot()) } else { None };
        snapshot.ok_or_else(|| metrics_disabled(self.disabled_reason.as_deref()))
    }

    /// The totals of coordinator `name` now, gauges included, if the segment has the name.
    fn totals_of(&self, py: Python<'_>, name: &Bound<'_, PyString>) -> PyResult<Option<CoordinatorTotals>> {
        let name = name.to_cow()?;
        Ok(self.snapshot(py)?.coordinators.into_iter().find(|totals| totals.name == name))
    }

    /// A report of a snapshot taken now, built as `coordmetrics snapshot` builds it (a fresh
    /// reporter) or, with `remember`, by this collector's reporter (rates since the previous
    /// export, history), with the GIL released.
    fn report(&self, py: Python<'_>, remember: bool) -> PyResult<Report> {
        let snapshot = self.snapshot(py)?;
        Ok(py.detach(|| {
            if remember {
                let mut reporter = self.reporter.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at))
            } else {
                Reporter::single(&snapshot)
            }
        }))
    }

    /// The `get_coordinator_stats` dict of each coordinator with executions, with its last
    /// `RECENT_EXECUTIONS` executions in this process: `export_json`'s `coordinator_stats`.
    fn coordinator_stats<'py>(&self, py: Python<'py>, report: &Report) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for totals in report.coordinators.iter().map(|c| &c.totals).filter(|t| t.executions > 0) {
            let name = PyString::new(py, &totals.name);
            let handle = self.coordinators.cached(&name)?;
            let own_range = handle.as_ref().and_then(|handle| handle.get().history.min_max_ms());
            let stats = stats::stats_dict(py, &totals.name, Some(totals), own_range)?;
            let recent = match &handle {
                Some(handle) => handle.get().history.recent(py, &totals.name, RECENT_EXECUTIONS)?,
                None => Vec::new(),
            };
            let recent: Vec<Bound<'_, PyAny>> =
                recent.iter().map(|execution| execution.call_method0("to_dict")).collect::<PyResult<_>>()?;
            stats.set_item("recent_executions", recent)?;
            all.set_item(name, stats)?;
        }
        Ok(all)
    }
}

fn capacities_from(dict: &Bound<'_, PyDict>) -> PyResult<Capacities> {
    let mut capacities = Capacities::default();
    for (key, value) in dict.iter() {
        let key: String = key.extract()?;
        let value: u32 = value.extract()?;
        match key.as_str() {
            "coordinators" => capacities.coordinators = value,
            "events" => capacities.events = value,
            "writers" => capacities.writers = value,
            "errors" => capacities.errors = value,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown capacity {other:?}: expected coordinators, events, writers or errors"
                )))
            }
        }
    }
    Ok(capacities)
}

#[pymethods]
impl MetricsCollector {
    #[new]
    #[pyo3(signature = (max_history = DEFAULT_MAX_HISTORY, *, segment = None, capacities = None))]
    fn new(
        py: Python<'_>,
        max_history: usize,
        segment: Option<PathBuf>,
        capacities: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let path = segment
            .or_else(|| std::env::var_os(SEGMENT_ENV).map(PathBuf::from))
            .unwrap_or_else(|| DEFAULT_SEGMENT_PATH.into());
        let mut options = SegmentOptions::default();
        if let Some(capacities) = capacities {
            options.capacities = capacities_from(capacities)?;
        }
        // Opening may wait for another process that is still creating the segment.
        let collector = py.detach(|| Collector::open_with(&path, &options)).map_err(|e| segment_error(&e))?;
        Ok(Self::with(py, collector, max_history, Some(path), None))
    }

    /// A collector that records nothing (every update is counted as dropped) and whose exports
    /// raise `RuntimeError` with `reason`: what `get_coordinator_metrics_collector()` returns
    /// when the segment cannot be opened, so that metrics never break the host program.
    #[staticmethod]
    #[pyo3(signature = (reason = None))]
    fn disabled(py: Python<'_>, reason: Option<String>) -> Self {
        Self::with(py, Collector::disabled(), DEFAULT_MAX_HISTORY, None, reason)
    }

    /// Executions kept per coordinator in this process.
    /// Whether this collector records into a segment.
    #[getter]
    fn enabled(&self) -> bool {
        self.collector.is_enabled()
    }

    /// Updates that could not be recorded (full tables, no writer slot, no segment).
    #[getter]
    fn dropped_updates(&self) -> u64 {
        self.collector.dropped_updates()
    }

    /// The resolved handle of coordinator `name` (the fast path: keep it and call
    /// `track()`, `record()`, `cache_hit()`, ... on it).
    fn coordinator<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, CoordinatorHandle>> {
        self.coordinator_handle(name)
    }

    /// The resolved handle of analytics event `name`.
    fn event<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, EventHandle>> {
        self.event_handle(name)
    }

    /// A context manager, sync (`with`) and async (`async with`), that records one execution
    /// of `coordinator_name` and its duration. An exception inside the block is recorded as a
    /// failure with its message and re-raised; a cancellation is recorded as failed with the
    /// message "cancelled". `metadata` is kept with the execution in this process's history
    /// (the segment holds numbers only).
    #[pyo3(signature = (coordinator_name, metadata = None))]
    fn track_coordinator(
        &self,
        coordinator_name: &Bound<'_, PyString>,
        metadata: Option<Py<PyAny>>,
    ) -> PyResult<Tracking> {
        Ok(CoordinatorHandle::track(&self.coordinator_handle(coordinator_name)?, metadata))
    }

    /// Records one execution of `coordinator_name` that took `duration_ms` milliseconds; a
    /// failed one with `error_message` goes into the ring of recent errors. `metadata` is kept
    /// with the execution in this process's history.
    #[pyo3(signature = (coordinator_name, duration_ms, success = true, error_message = None, metadata = None))]
    fn track_execution(
        &self,
        coordinator_name: &Bound<'_, PyString>,
        duration_ms: f64,
        success: bool,
        error_message: Option<String>,
        metadata: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().record(duration_ms, success, error_message, metadata)
    }

    /// Records a cache hit of `coordinator_name`.
    fn record_cache_hit(&self, coordinator_name: &Bound<'_, PyString>) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().cache_hit();
        Ok(())
    }

    /// Records a cache miss of `coordinator_name`.
    fn record_cache_miss(&self, coordinator_name: &Bound<'_, PyString>) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().cache_miss();
        Ok(())
    }

    /// Adds `count` occurrences of analytics event `event_name`.
    #[pyo3(signature = (event_name, count = 1))]
    fn record_analytics_event(&self, event_name: &Bound<'_, PyString>, count: u64) -> PyResult<()> {
        self.event_handle(event_name)?.get().record(count);
        Ok(())
    }

    /// Sets this process's memory gauge of `coordinator_name`, in bytes.
    fn set_memory_bytes(&self, coordinator_name: &Bound<'_, PyString>, n: u64) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().set_memory_bytes(n);
        Ok(())
    }

    /// The segment as metrics.json text (the exporter's formatter). This collector's reporter
    /// remembers its previous export: rates (`throughput_per_sec`, `cpu_percent`) are over the
    /// time since then. With `include_history`, `history` holds one point per export (at most
    /// 120; otherwise it is the empty list) and, as in the original, `coordinator_stats` maps
    /// each coordinator with executions to its `get_coordinator_stats` plus
    /// `recent_executions`, the last 100 executions this process recorded.
    #[pyo3(signature = (include_history = false))]
    fn export_json(&self, py: Python<'_>, include_history: bool) -> PyResult<String> {
        let mut report = self.report(py, true)?;
        if !include_history {
            report.history.clear();
            return export::json_text(py, &report);
        }
        export::json_with_coordinator_stats(py, &report, &self.coordinator_stats(py, &report)?)
    }

    /// The segment as Prometheus text: the same bytes as `coordmetrics snapshot --segment
    /// PATH --format prometheus` with the same options, for the same segment state. The
    /// namespace is `DEFAULT_NAMESPACE` unless given.
    #[pyo3(signature = (*, namespace = DEFAULT_NAMESPACE.to_owned(), compat_names = true, bucket_resolution = 4))]
    fn export_prometheus(
        &self,
        py: Python<'_>,
        namespace: String,
        compat_names: bool,
        bucket_resolution: u32,
    ) -> PyResult<String> {
        let options = export::prometheus_options(namespace, compat_names, bucket_resolution)?;
        export::prometheus_text(py, &self.report(py, false)?, &options)
    }

    /// Statistics of `coordinator_name`, as the original's dict: `execution_count`,
    /// `avg/p50/p95/p99_duration_ms`, `error_count`, `error_rate`, `cache_hit_rate` (and, once
    /// it has executions, `cache_hits` and `cache_misses`) from the segment, every process's
    /// executions; `min/max_duration_ms` from this process's history (None if it has none).
    /// Zero-filled for a coordinator without executions.
    fn get_coordinator_stats<'py>(
        &self,
        py: Python<'py>,
        coordinator_name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // Counters only: one coordinator's blocks, not a snapshot of the segment.
        let name = coordinator_name.to_cow()?;
        if !self.collector.is_enabled() {
            return Err(metrics_disabled(self.disabled_reason.as_deref()));
        }
        let totals = py.detach(|| self.collector.coordinator_totals(&name));
        stats::stats_dict(py, &name, totals.as_ref(), self.own_range(coordinator_name)?)
    }

    /// A `CoordinatorSnapshot` of `coordinator_name` now, or None if it has no executions.
    fn get_snapshot<'py>(
        &self,
        py: Python<'py>,
        coordinator_name: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(totals) = self.totals_of(py, coordinator_name)?.filter(|t| t.executions > 0) else {
            return Ok(None);
        };
        let timestamp = stats::now_isoformat(py)?;
        stats::snapshot_object(py, &timestamp, &totals, self.own_process.sample()).map(Some)
    }

    /// A `CoordinatorSnapshot` of every coordinator with executions, taken together.
    fn get_all_snapshots<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let snapshot = self.snapshot(py)?;
        let timestamp = stats::now_isoformat(py)?;
        let own = self.own_process.sample();
        let with_executions = snapshot.coordinators.iter().filter(|t| t.executions > 0);
        with_executions.map(|totals| stats::snapshot_object(py, &timestamp, totals, own)).collect()
    }

    /// The metrics.json `overall_stats` as a dict (`total_executions`, `total_errors`,
    /// `overall_error_rate`, `analytics_events`, ...).
    fn get_overall_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats::overall_dict(py, &self.report(py, false)?)
    }

    /// Restarts `coordinator_name` at zero for every reader of the segment, in every process
    /// (a baseline the readers subtract), and forgets this process's history of it. Other
    /// coordinators and their counts are untouched.
    fn reset_coordinator(&self, py: Python<'_>, coordinator_name: &Bound<'_, PyString>) -> PyResult<()> {
        if let Some(handle) = self.coordinators.cached(coordinator_name)? {
            handle.get().history.clear();
        }
        let name = coordinator_name.to_cow()?.into_owned();
        py.detach(|| self.collector.reset_coordinator(&name));
        Ok(())
    }

    /// Restarts every coordinator and analytics event at zero for every reader of the
    /// segment, and forgets this process's history.
    fn reset_all(&self, py: Python<'_>) -> PyResult<()> {
        for handle in self.coordinators.all(py)? {
            handle.get().history.clear();
        }
        py.detach(|| self.collector.reset_all());
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match (&self.segment, &self.disabled_reason) {
            (Some(path), _) => {
                let path = PyString::new(py, &path.display().to_string()).repr()?;
                format!("CoordinatorMetricsCollector(segment={})", path.to_string_lossy())
            }
            (None, Some(reason)) => format!("<CoordinatorMetricsCollector disabled: {reason}>"),
            (None, None) => "<CoordinatorMetricsCollector disabled>".to_owned(),
        })
    }
}
