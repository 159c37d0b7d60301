//! `coordmetrics._native`: the native half of the `coordmetrics` Python package.
//!
//! It exposes the original Python collector's API over the shared-memory segment of the Rust
//! client, and the exporter's own formatters, so Python and Rust processes record into one
//! segment and one exporter. Modules: `history` (the executions each process keeps, bounded by
//! `max_history`), `stats` (the original's read-back calls over the segment's totals),
//! `generate` (the generator's benchmark and sample data). The pure-Python half
//! (`coordmetrics/`) adds the process-wide singleton, the `track_coordinator_metrics` decorator,
//! the record dataclasses, the `coordmetrics.victor` drop-in and the generator's CLI.
//!
//! The hot path (`with collector.track_coordinator(name):`, `record_cache_hit(name)`, ...) keeps
//! the GIL and allocates nothing in Rust: a dictionary lookup of the name resolves the cached
//! `Coordinator` handle (a Python `str` caches its hash, so nothing is encoded or hashed again),
//! the `Tracking` object comes from a free list, `__enter__` starts an owned tracker and
//! `__exit__` makes a few relaxed atomic stores into this thread's writer slot and appends the
//! execution to the coordinator's records (a clock reading and an uncontended lock): tens of
//! nanoseconds of Rust in a `with` statement whose interpreter overhead is larger. Releasing
//! and re-taking the GIL would cost more than the work, so only the calls that can take long
//! release it: opening a segment (it may wait for another process to finish creating it) and
//! the exports (a snapshot of every writer slot, the report and the formatting).

#![forbid(unsafe_code)]

mod generate;
mod history;
mod stats;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use coordmetrics::{
    histogram, Capacities, Collector, CoordinatorTotals, OpenError, SegmentOptions, Snapshot, DEFAULT_SEGMENT_PATH,
    SEGMENT_ENV,
};
use coordmetrics_report::format::{json, prometheus};
use coordmetrics_report::model::{Health, Report};
use coordmetrics_report::reporter::{ReportOptions, Reporter};
use pyo3::create_exception;
use pyo3::exceptions::{PyGeneratorExit, PyOSError, PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use crate::history::History;
use crate::stats::OwnProcess;

create_exception!(
    coordmetrics,
    SegmentError,
    PyOSError,
    "The segment could not be created or opened (missing directory, permissions, another layout version, corruption)."
);

/// The original collector's default bound of the per-coordinator history.
const DEFAULT_MAX_HISTORY: usize = 10_000;

/// How many of its last executions `export_json(include_history=True)` lists per coordinator,
/// as the original did.
const RECENT_EXECUTIONS: usize = 100;

/// Beyond this many distinct names a collector resolves names without caching their handles,
/// so that a program generating unique names cannot grow the cache without bound.
const MAX_CACHED_NAMES: usize = 4096;

/// The failure message of an exception, as the original collector recorded it:
/// `f"{type(e).__name__}: {e}"`; a cancellation is recorded as "cancelled".
fn failure_message(error: &Bound<'_, PyAny>) -> String {
    if is_cancellation(error) {
        return "cancelled".to_owned();
    }
    let kind = error.get_type().name().map_or_else(|_| "Exception".to_owned(), |name| name.to_string());
    match error.str() {
        Ok(text) => format!("{kind}: {}", text.to_string_lossy()),
        Err(_) => format!("{kind}: <unprintable>"),
    }
}

/// Whether `error` ends a task rather than reports a failure of its work: `asyncio`'s
/// `CancelledError`, or `GeneratorExit` (a coroutine closed while it was suspended).
fn is_cancellation(error: &Bound<'_, PyAny>) -> bool {
    static CANCELLED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let py = error.py();
    error.is_instance_of::<PyGeneratorExit>()
        || CANCELLED
            .import(py, "asyncio", "CancelledError")
            .is_ok_and(|cancelled| error.is_instance(cancelled).unwrap_or(false))
}

/// A duration given in milliseconds, as the original API takes it.
fn duration_from_ms(duration_ms: f64) -> PyResult<Duration> {
    if duration_ms.is_nan() || duration_ms < 0.0 {
        return Err(PyValueError::new_err(format!("duration_ms must be >= 0, not {duration_ms}")));
    }
    // Rounded to whole nanoseconds, so that 12.5 ms is 12 500 000 ns and not one less; `as`
    // saturates, so an infinite duration lands in the overflow bucket.
    Ok(Duration::from_nanos((duration_ms * 1e6).round() as u64))
}

/// `repr(text)`, as Python writes it.
fn python_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_string_lossy().into_owned())
}

/// A resolved coordinator: resolve it once with `collector.coordinator(name)` and keep it, it
/// is the fast path (no name lookup per call).
#[pyclass(frozen, module = "coordmetrics", name = "Coordinator")]
#[derive(Debug)]
struct CoordinatorHandle {
    inner: coordmetrics::Coordinator,
    name: String,
    /// This process's recent executions of the coordinator through this collector.
    history: History,
}

impl CoordinatorHandle {
    /// Records one execution measured elsewhere, in the segment and in the history.
    fn record_execution(
        &self,
        duration: Duration,
        success: bool,
        error_message: Option<String>,
        metadata: Option<Py<PyAny>>,
    ) {
        match (success, error_message.as_deref()) {
            (true, _) => self.inner.record(duration, true),
            (false, Some(message)) => self.inner.record_failure(duration, message),
            (false, None) => self.inner.record(duration, false),
        }
        self.history.push(duration, success, error_message, metadata);
    }
}

#[pymethods]
impl CoordinatorHandle {
    /// The name, as given.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether updates through this handle reach a segment (False for a disabled collector,
    /// an empty name or a name that no longer fits in a full table).
    #[getter]
    fn recording(&self) -> bool {
        self.inner.is_recording()
    }

    /// A context manager (sync and async) that records one execution of this coordinator.
    #[pyo3(signature = (metadata = None))]
    fn track(slf: &Bound<'_, Self>, metadata: Option<Py<PyAny>>) -> Tracking {
        Tracking { coordinator: slf.clone().unbind(), tracker: None, metadata }
    }

    /// Records one execution that took `duration_ms` milliseconds; a failed one with
    /// `error_message` goes into the segment's ring of recent errors. `metadata` is kept with
    /// the execution in this process's history.
    #[pyo3(signature = (duration_ms, success = true, error_message = None, metadata = None))]
    fn record(
        &self,
        duration_ms: f64,
        success: bool,
        error_message: Option<String>,
        metadata: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.record_execution(duration_from_ms(duration_ms)?, success, error_message, metadata);
        Ok(())
    }

    /// Records a cache hit.
    fn cache_hit(&self) {
        self.inner.cache_hit();
    }

    /// Records a cache miss.
    fn cache_miss(&self) {
        self.inner.cache_miss();
    }

    /// Sets this process's memory gauge for the coordinator, in bytes (replacing the
    /// exporter's estimate from the resident memory of the processes that host it).
    fn set_memory_bytes(&self, n: u64) {
        self.inner.set_memory_bytes(n);
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Coordinator({})", python_repr(py, &self.name)?))
    }
}

/// A resolved analytics event.
#[pyclass(frozen, module = "coordmetrics", name = "AnalyticsEvent")]
#[derive(Debug)]
struct EventHandle {
    inner: coordmetrics::AnalyticsEvent,
    name: String,
}

#[pymethods]
impl EventHandle {
    /// The name, as given.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Adds `count` occurrences.
    #[pyo3(signature = (count = 1))]
    fn record(&self, count: u64) {
        self.inner.record(count);
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("AnalyticsEvent({})", python_repr(py, &self.name)?))
    }
}

/// One execution of a coordinator, timed from entering to leaving a `with` or `async with`
/// block. An exception inside the block records a failed execution with the message
/// `f"{type(e).__name__}: {e}"` (a cancellation: "cancelled") and propagates.
// A free list: one is created and dropped per execution, the memory is reused.
#[pyclass(freelist = 64, module = "coordmetrics", name = "Tracking")]
#[derive(Debug)]
struct Tracking {
    coordinator: Py<CoordinatorHandle>,
    /// Counts the execution in the in-flight gauge while it runs.
    tracker: Option<coordmetrics::OwnedTracker>,
    /// Kept with the execution in the history.
    metadata: Option<Py<PyAny>>,
}

impl Tracking {
    fn begin(&mut self) -> PyResult<()> {
        if self.tracker.is_some() {
            return Err(PyRuntimeError::new_err("this execution is already being tracked"));
        }
        self.tracker = Some(self.coordinator.get().inner.track_owned());
        Ok(())
    }

    fn end(&mut self, success: bool, message: Option<String>) {
        let Some(tracker) = self.tracker.take() else { return };
        let history = &self.coordinator.get().history;
        // The record keeps the duration the segment recorded: no clock read of its own.
        let duration = match (success, message.as_deref()) {
            (false, Some(message)) => tracker.fail(message),
            _ => tracker.finish(success),
        };
        history.push(duration, success, message, self.metadata.take());
    }

    fn end_with(&mut self, error: &Bound<'_, PyAny>) {
        if error.is_none() {
            self.end(true, None);
        } else if self.tracker.is_some() {
            self.end(false, Some(failure_message(error)));
        }
    }
}

#[pymethods]
impl Tracking {
    fn __enter__(mut slf: PyRefMut<'_, Self>) -> PyResult<PyRefMut<'_, Self>> {
        slf.begin()?;
        Ok(slf)
    }

    fn __exit__(
        &mut self,
        _exc_type: &Bound<'_, PyAny>,
        exc_value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.end_with(exc_value);
        false
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        slf.try_borrow_mut()?.begin()?;
        Ok(Ready { value: Some(slf.into_any().unbind()) })
    }

    fn __aexit__(
        &mut self,
        _exc_type: &Bound<'_, PyAny>,
        exc_value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> Ready {
        self.end_with(exc_value);
        Ready { value: None }
    }

    /// Starts timing, for code that cannot use `with` (callbacks); returns self.
    fn start(mut slf: PyRefMut<'_, Self>) -> PyResult<PyRefMut<'_, Self>> {
        slf.begin()?;
        Ok(slf)
    }

    /// Records the execution started by `start()`; does nothing if it was already recorded.
    #[pyo3(signature = (success = true, error_message = None))]
    fn finish(&mut self, success: bool, error_message: Option<String>) {
        self.end(success, error_message);
    }

    /// Milliseconds since the execution started (0.0 before it started or once recorded).
    #[getter]
    fn elapsed_ms(&self) -> f64 {
        self.tracker.as_ref().map_or(0.0, |tracker| tracker.elapsed().as_secs_f64() * 1e3)
    }

    /// The coordinator this execution belongs to.
    #[getter]
    fn coordinator(&self, py: Python<'_>) -> Py<CoordinatorHandle> {
        self.coordinator.clone_ref(py)
    }
}

/// An awaitable that is already complete: what `__aenter__` and `__aexit__` return, so that
/// `async with` costs no task switch and no coroutine object.
#[pyclass(freelist = 64, module = "coordmetrics._native", name = "_Ready")]
#[derive(Debug)]
struct Ready {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Err(PyStopIteration::new_err((self.value.take().unwrap_or_else(|| py.None()),)))
    }
}

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
struct MetricsCollector {
    pub(crate) collector: Collector,
    segment: Option<PathBuf>,
    disabled_reason: Option<String>,
    /// name (`str`) -> `Coordinator`: resolved once per name.
    coordinators: Py<PyDict>,
    /// name (`str`) -> `AnalyticsEvent`.
    events: Py<PyDict>,
    /// Remembers the previous export of `export_json`, for rates and the history.
    reporter: Mutex<Reporter>,
    /// Executions kept per coordinator in this process.
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
            coordinators: PyDict::new(py).unbind(),
            events: PyDict::new(py).unbind(),
            reporter: Mutex::new(Reporter::new(ReportOptions::default())),
            max_history,
            own_process: OwnProcess::default(),
        }
    }

    fn coordinator_handle<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, CoordinatorHandle>> {
        let py = name.py();
        let cache = self.coordinators.bind(py);
        if let Some(handle) = cache.get_item(name)? {
            return Ok(handle.cast_into::<CoordinatorHandle>()?);
        }
        let text = name.to_cow()?;
        let inner = self.collector.coordinator(&text);
        let cacheable = inner.is_recording() && cache.len() < MAX_CACHED_NAMES;
        let history = History::new(self.max_history);
        let handle = Bound::new(py, CoordinatorHandle { inner, name: text.into_owned(), history })?;
        if cacheable {
            cache.set_item(name, &handle)?;
        }
        Ok(handle)
    }

    fn event_handle<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, EventHandle>> {
        let py = name.py();
        let cache = self.events.bind(py);
        if let Some(handle) = cache.get_item(name)? {
            return Ok(handle.cast_into::<EventHandle>()?);
        }
        let text = name.to_cow()?;
        let inner = self.collector.event(&text);
        let cacheable = cache.len() < MAX_CACHED_NAMES && !text.is_empty();
        let handle = Bound::new(py, EventHandle { inner, name: text.into_owned() })?;
        if cacheable {
            cache.set_item(name, &handle)?;
        }
        Ok(handle)
    }

    /// The handle of `name` if this collector has resolved it: where its history is.
    fn cached_handle<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, CoordinatorHandle>>> {
        match self.coordinators.bind(name.py()).get_item(name)? {
            Some(handle) => Ok(Some(handle.cast_into::<CoordinatorHandle>()?)),
            None => Ok(None),
        }
    }

    /// The shortest and longest duration this process kept for `name`, in ms.
    fn own_range(&self, name: &Bound<'_, PyString>) -> PyResult<Option<(f64, f64)>> {
        Ok(self.cached_handle(name)?.and_then(|handle| handle.get().history.min_max_ms()))
    }

    /// A snapshot of the segment taken now, with the GIL released.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Snapshot> {
        let snapshot = if self.collector.is_enabled() { py.detach(|| self.collector.snapshot()) } else { None };
        snapshot.ok_or_else(|| {
            let reason = self.disabled_reason.as_deref().unwrap_or("no segment");
            PyRuntimeError::new_err(format!("metrics are disabled: {reason}"))
        })
    }

    /// Every coordinator's totals, from a snapshot taken now.
    fn totals(&self, py: Python<'_>) -> PyResult<Vec<CoordinatorTotals>> {
        Ok(self.snapshot(py)?.coordinators)
    }

    /// The `get_coordinator_stats` dict of each coordinator with executions, with its last
    /// `RECENT_EXECUTIONS` executions in this process: `export_json`'s `coordinator_stats`.
    fn coordinator_stats<'py>(&self, py: Python<'py>, report: &Report) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for coordinator in report.coordinators.iter().filter(|c| c.totals.executions > 0) {
            let name = PyString::new(py, &coordinator.totals.name);
            let stats =
                stats::stats_dict(py, &coordinator.totals.name, Some(&coordinator.totals), self.own_range(&name)?)?;
            let recent = match self.cached_handle(&name)? {
                Some(handle) => handle.get().history.recent(py, &coordinator.totals.name, RECENT_EXECUTIONS)?,
                None => Vec::new(),
            };
            let recent: Vec<Bound<'_, PyAny>> =
                recent.iter().map(|execution| execution.call_method0("to_dict")).collect::<PyResult<_>>()?;
            stats.set_item("recent_executions", recent)?;
            all.set_item(name, stats)?;
        }
        Ok(all)
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

    /// metrics.json of a fresh report, parsed by Python's `json` module.
    fn json_document<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let report = self.report(py, false)?;
        let text = render(py, |out| json::write_report(out, &report))?;
        py.import("json")?.call_method1("loads", (text,))
    }
}

/// Runs a formatter into a string, with the GIL released.
pub(crate) fn render(
    py: Python<'_>,
    write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()> + Send,
) -> PyResult<String> {
    py.detach(|| {
        let mut out = Vec::new();
        write(&mut out).map_err(|error| PyRuntimeError::new_err(format!("formatting failed: {error}")))?;
        String::from_utf8(out)
            .map_err(|error| PyRuntimeError::new_err(format!("formatter wrote invalid UTF-8: {error}")))
    })
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

fn segment_error(error: &OpenError) -> PyErr {
    SegmentError::new_err(error.to_string())
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
    #[getter]
    fn max_history(&self) -> usize {
        self.max_history
    }

    /// The segment path (None for a disabled collector).
    #[getter]
    fn segment(&self) -> Option<PathBuf> {
        self.segment.clone()
    }

    /// Whether this collector records into a segment.
    #[getter]
    fn enabled(&self) -> bool {
        self.collector.is_enabled()
    }

    /// Why this collector is disabled, if it is.
    #[getter]
    fn disabled_reason(&self) -> Option<String> {
        self.disabled_reason.clone()
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
        let coordinator = self.coordinator_handle(coordinator_name)?.unbind();
        Ok(Tracking { coordinator, tracker: None, metadata })
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
        let duration = duration_from_ms(duration_ms)?;
        self.coordinator_handle(coordinator_name)?.get().record_execution(duration, success, error_message, metadata);
        Ok(())
    }

    /// Records a cache hit of `coordinator_name`.
    fn record_cache_hit(&self, coordinator_name: &Bound<'_, PyString>) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().inner.cache_hit();
        Ok(())
    }

    /// Records a cache miss of `coordinator_name`.
    fn record_cache_miss(&self, coordinator_name: &Bound<'_, PyString>) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().inner.cache_miss();
        Ok(())
    }

    /// Adds `count` occurrences of analytics event `event_name`.
    #[pyo3(signature = (event_name, count = 1))]
    fn record_analytics_event(&self, event_name: &Bound<'_, PyString>, count: u64) -> PyResult<()> {
        self.event_handle(event_name)?.get().inner.record(count);
        Ok(())
    }

    /// Sets this process's memory gauge of `coordinator_name`, in bytes.
    fn set_memory_bytes(&self, coordinator_name: &Bound<'_, PyString>, n: u64) -> PyResult<()> {
        self.coordinator_handle(coordinator_name)?.get().inner.set_memory_bytes(n);
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
            return render(py, |out| json::write_report(out, &report));
        }
        let json_module = py.import("json")?;
        let document = json_module.call_method1("loads", (render(py, |out| json::write_report(out, &report))?,))?;
        document.set_item("coordinator_stats", self.coordinator_stats(py, &report)?)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("indent", 2)?;
        json_module.call_method("dumps", (document,), Some(&kwargs))?.extract()
    }

    /// The segment as Prometheus text: the same bytes as `coordmetrics snapshot --segment
    /// PATH --format prometheus` with the same options, for the same segment state.
    #[pyo3(
        signature = (*, namespace = "victor_coordinator".to_owned(), compat_names = true, bucket_resolution = 4),
        text_signature = "($self, /, *, namespace='victor_coordinator', compat_names=True, bucket_resolution=4)"
    )]
    fn export_prometheus(
        &self,
        py: Python<'_>,
        namespace: String,
        compat_names: bool,
        bucket_resolution: u32,
    ) -> PyResult<String> {
        if !prometheus::is_valid_namespace(&namespace) {
            return Err(PyValueError::new_err(format!("invalid namespace {namespace:?}")));
        }
        let bucket_resolution = histogram::Resolution::new(bucket_resolution).map_err(|_| {
            PyValueError::new_err(format!("bucket_resolution must be 1, 2, 4 or 8, not {bucket_resolution}"))
        })?;
        let options = prometheus::PrometheusOptions { namespace, compat_names, bucket_resolution };
        let report = self.report(py, false)?;
        render(py, |out| prometheus::write_report(out, &report, &options))
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
        let name = coordinator_name.to_cow()?;
        let totals = self.totals(py)?;
        let found = totals.iter().find(|t| t.name == name);
        stats::stats_dict(py, &name, found, self.own_range(coordinator_name)?)
    }

    /// A `CoordinatorSnapshot` of `coordinator_name` now, or None if it has no executions.
    fn get_snapshot<'py>(
        &self,
        py: Python<'py>,
        coordinator_name: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let name = coordinator_name.to_cow()?;
        let totals = self.totals(py)?;
        let Some(found) = totals.iter().find(|t| t.name == name && t.executions > 0) else {
            return Ok(None);
        };
        let timestamp = stats::now_isoformat(py)?;
        stats::snapshot_object(py, &timestamp, found, self.own_process.sample()).map(Some)
    }

    /// A `CoordinatorSnapshot` of every coordinator with executions, taken together.
    fn get_all_snapshots<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let totals = self.totals(py)?;
        let timestamp = stats::now_isoformat(py)?;
        let own = self.own_process.sample();
        totals.iter().filter(|t| t.executions > 0).map(|t| stats::snapshot_object(py, &timestamp, t, own)).collect()
    }

    /// Restarts `coordinator_name` at zero for every reader of the segment, in every process
    /// (a baseline the readers subtract), and forgets this process's history of it. Other
    /// coordinators and their counts are untouched.
    fn reset_coordinator(&self, py: Python<'_>, coordinator_name: &Bound<'_, PyString>) -> PyResult<()> {
        if let Some(handle) = self.cached_handle(coordinator_name)? {
            handle.get().history.clear();
        }
        let name = coordinator_name.to_cow()?.into_owned();
        py.detach(|| self.collector.reset_coordinator(&name));
        Ok(())
    }

    /// Restarts every coordinator and analytics event at zero for every reader of the
    /// segment, and forgets this process's history.
    fn reset_all(&self, py: Python<'_>) -> PyResult<()> {
        for handle in self.coordinators.bind(py).values() {
            handle.cast_into::<CoordinatorHandle>()?.get().history.clear();
        }
        py.detach(|| self.collector.reset_all());
        Ok(())
    }

    /// The metrics.json `overall_stats` as a dict (`total_executions`, `total_errors`,
    /// `overall_error_rate`, `analytics_events`, ...).
    fn get_overall_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.json_document(py)?.get_item("overall_stats")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match (&self.segment, &self.disabled_reason) {
            (Some(path), _) => {
                format!("CoordinatorMetricsCollector(segment={})", python_repr(py, &path.display().to_string())?)
            }
            (None, Some(reason)) => format!("<CoordinatorMetricsCollector disabled: {reason}>"),
            (None, None) => "<CoordinatorMetricsCollector disabled>".to_owned(),
        })
    }
}

/// The native half of `coordmetrics`: collector, handles and the exporter's formatters.
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::generate::{run_benchmark, sample_data};
    #[pymodule_export]
    use super::{CoordinatorHandle, EventHandle, MetricsCollector, SegmentError, Tracking};

    #[pymodule_export]
    const DEFAULT_SEGMENT_PATH: &str = coordmetrics::DEFAULT_SEGMENT_PATH;

    #[pymodule_export]
    const SEGMENT_ENV: &str = coordmetrics::SEGMENT_ENV;
}
