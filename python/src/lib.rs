//! `coordmetrics._native`: the native half of the `coordmetrics` Python package.
//!
//! It exposes the original Python collector's API over the shared-memory segment of the Rust
//! client, and the exporter's own formatters, so Python and Rust processes record into one
//! segment and one exporter. The pure-Python half (`coordmetrics/__init__.py`) adds the
//! process-wide singleton and the `track_coordinator_metrics` decorator.
//!
//! The hot path (`with collector.track_coordinator(name):`, `record_cache_hit(name)`, ...) keeps
//! the GIL and allocates nothing in Rust: a dictionary lookup of the name resolves the cached
//! `Coordinator` handle (a Python `str` caches its hash, so nothing is encoded or hashed again),
//! the `Tracking` object comes from a free list, `__enter__` starts an owned tracker and
//! `__exit__` makes a few relaxed atomic stores into this thread's writer slot: tens of
//! nanoseconds of Rust in a `with` statement whose interpreter overhead is larger. Releasing
//! and re-taking the GIL would cost more than the work, so only the calls that can take long
//! release it: opening a segment (it may wait for another process to finish creating it) and
//! the exports (a snapshot of every writer slot, the report and the formatting).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use coordmetrics::{Capacities, Collector, OpenError, SegmentOptions, DEFAULT_SEGMENT_PATH, SEGMENT_ENV};
use coordmetrics_exporter::format::{json, prometheus};
use coordmetrics_exporter::report::{Report, ReportOptions, Reporter};
use pyo3::create_exception;
use pyo3::exceptions::{PyGeneratorExit, PyOSError, PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyType};

create_exception!(
    coordmetrics,
    SegmentError,
    PyOSError,
    "The segment could not be created or opened (missing directory, permissions, another layout version, corruption)."
);

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

fn record(coordinator: &coordmetrics::Coordinator, duration: Duration, success: bool, message: Option<&str>) {
    match (success, message) {
        (true, _) => coordinator.record(duration, true),
        (false, Some(message)) => coordinator.record_failure(duration, message),
        (false, None) => coordinator.record(duration, false),
    }
}

/// A resolved coordinator: resolve it once with `collector.coordinator(name)` and keep it, it
/// is the fast path (no name lookup per call).
#[pyclass(frozen, module = "coordmetrics", name = "Coordinator")]
#[derive(Debug)]
struct CoordinatorHandle {
    inner: coordmetrics::Coordinator,
    name: String,
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
    fn track(slf: &Bound<'_, Self>) -> Tracking {
        Tracking { coordinator: slf.clone().unbind(), tracker: None }
    }

    /// Records one execution that took `duration_ms` milliseconds; a failed one with
    /// `error_message` goes into the segment's ring of recent errors.
    #[pyo3(signature = (duration_ms, success = true, error_message = None))]
    fn record(&self, duration_ms: f64, success: bool, error_message: Option<String>) -> PyResult<()> {
        record(&self.inner, duration_from_ms(duration_ms)?, success, error_message.as_deref());
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
}

impl Tracking {
    fn begin(&mut self) -> PyResult<()> {
        if self.tracker.is_some() {
            return Err(PyRuntimeError::new_err("this execution is already being tracked"));
        }
        self.tracker = Some(self.coordinator.get().inner.track_owned());
        Ok(())
    }

    fn end(&mut self, success: bool, message: Option<&str>) {
        if let Some(tracker) = self.tracker.take() {
            match (success, message) {
                (false, Some(message)) => tracker.fail(message),
                _ => tracker.finish(success),
            }
        }
    }

    fn end_with(&mut self, error: &Bound<'_, PyAny>) {
        if error.is_none() {
            self.end(true, None);
        } else if self.tracker.is_some() {
            self.end(false, Some(&failure_message(error)));
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
        self.end(success, error_message.as_deref());
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
/// `segment` is the path of the segment (default: `$COORDMETRICS_SEGMENT`, else
/// `/dev/shm/coordmetrics`); it is created if it does not exist, with `capacities` (a dict of
/// `coordinators`, `events`, `writers`, `errors`; ignored for an existing segment).
/// Raises `SegmentError` (an `OSError`) if the segment cannot be opened or created.
#[pyclass(frozen, subclass, module = "coordmetrics", name = "CoordinatorMetricsCollector")]
#[derive(Debug)]
struct MetricsCollector {
    collector: Collector,
    segment: Option<PathBuf>,
    disabled_reason: Option<String>,
    /// name (`str`) -> `Coordinator`: resolved once per name.
    coordinators: Py<PyDict>,
    /// name (`str`) -> `AnalyticsEvent`.
    events: Py<PyDict>,
    /// Remembers the previous export of `export_json`, for rates and the history.
    reporter: Mutex<Reporter>,
}

impl MetricsCollector {
    fn with(py: Python<'_>, collector: Collector, segment: Option<PathBuf>, disabled_reason: Option<String>) -> Self {
        Self {
            collector,
            segment,
            disabled_reason,
            coordinators: PyDict::new(py).unbind(),
            events: PyDict::new(py).unbind(),
            reporter: Mutex::new(Reporter::new(ReportOptions::default())),
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
        let handle = Bound::new(py, CoordinatorHandle { inner, name: text.into_owned() })?;
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

    /// A report of a snapshot taken now, built as `coordmetrics snapshot` builds it (a fresh
    /// reporter) or, with `remember`, by this collector's reporter (rates since the previous
    /// export, history), with the GIL released.
    fn report(&self, py: Python<'_>, remember: bool) -> PyResult<Report> {
        if !self.collector.is_enabled() {
            let reason = self.disabled_reason.as_deref().unwrap_or("no segment");
            return Err(PyRuntimeError::new_err(format!("metrics are disabled: {reason}")));
        }
        py.detach(|| {
            let snapshot = self.collector.snapshot().ok_or_else(|| PyRuntimeError::new_err("metrics are disabled"))?;
            let report = if remember {
                let mut reporter = self.reporter.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                reporter.report(&snapshot)
            } else {
                Reporter::new(ReportOptions::default()).report(&snapshot)
            };
            Ok(report)
        })
    }

    /// metrics.json of a fresh report, parsed by Python's `json` module.
    fn json_document<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let report = self.report(py, false)?;
        let text = render(py, |out| json::write_report(out, &report))?;
        py.import("json")?.call_method1("loads", (text,))
    }
}

/// Runs a formatter into a string, with the GIL released.
fn render(py: Python<'_>, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()> + Send) -> PyResult<String> {
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
    #[pyo3(signature = (segment = None, *, capacities = None))]
    fn new(py: Python<'_>, segment: Option<PathBuf>, capacities: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let path = segment
            .or_else(|| std::env::var_os(SEGMENT_ENV).map(PathBuf::from))
            .unwrap_or_else(|| DEFAULT_SEGMENT_PATH.into());
        let mut options = SegmentOptions::default();
        if let Some(capacities) = capacities {
            options.capacities = capacities_from(capacities)?;
        }
        // Opening may wait for another process that is still creating the segment.
        let collector = py.detach(|| Collector::open_with(&path, &options)).map_err(|e| segment_error(&e))?;
        Ok(Self::with(py, collector, Some(path), None))
    }

    /// A collector that records nothing (every update is counted as dropped) and whose exports
    /// raise `RuntimeError` with `reason`: what `get_coordinator_metrics_collector()` returns
    /// when the segment cannot be opened, so that metrics never break the host program.
    #[staticmethod]
    #[pyo3(signature = (reason = None))]
    fn disabled(py: Python<'_>, reason: Option<String>) -> Self {
        Self::with(py, Collector::disabled(), None, reason)
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
    /// of coordinator `name` and its duration. An exception inside the block is recorded as a
    /// failure with its message and re-raised; a cancellation is recorded as failed with the
    /// message "cancelled". `metadata` is accepted for compatibility with the original
    /// collector and not recorded (the segment holds numbers only).
    #[pyo3(signature = (name, metadata = None))]
    fn track_coordinator(&self, name: &Bound<'_, PyString>, metadata: Option<&Bound<'_, PyAny>>) -> PyResult<Tracking> {
        let _ = metadata;
        let coordinator = self.coordinator_handle(name)?.unbind();
        Ok(Tracking { coordinator, tracker: None })
    }

    /// Records one execution of coordinator `name` that took `duration_ms` milliseconds; a
    /// failed one with `error_message` goes into the ring of recent errors.
    #[pyo3(signature = (name, duration_ms, success = true, error_message = None))]
    fn track_execution(
        &self,
        name: &Bound<'_, PyString>,
        duration_ms: f64,
        success: bool,
        error_message: Option<String>,
    ) -> PyResult<()> {
        let duration = duration_from_ms(duration_ms)?;
        record(&self.coordinator_handle(name)?.get().inner, duration, success, error_message.as_deref());
        Ok(())
    }

    /// Records a cache hit of coordinator `name`.
    fn record_cache_hit(&self, name: &Bound<'_, PyString>) -> PyResult<()> {
        self.coordinator_handle(name)?.get().inner.cache_hit();
        Ok(())
    }

    /// Records a cache miss of coordinator `name`.
    fn record_cache_miss(&self, name: &Bound<'_, PyString>) -> PyResult<()> {
        self.coordinator_handle(name)?.get().inner.cache_miss();
        Ok(())
    }

    /// Adds `count` occurrences of analytics event `name`.
    #[pyo3(signature = (name, count = 1))]
    fn record_analytics_event(&self, name: &Bound<'_, PyString>, count: u64) -> PyResult<()> {
        self.event_handle(name)?.get().inner.record(count);
        Ok(())
    }

    /// Sets this process's memory gauge of coordinator `name`, in bytes.
    fn set_memory_bytes(&self, name: &Bound<'_, PyString>, n: u64) -> PyResult<()> {
        self.coordinator_handle(name)?.get().inner.set_memory_bytes(n);
        Ok(())
    }

    /// The segment as metrics.json text (the exporter's formatter). This collector's reporter
    /// remembers its previous export: rates (`throughput_per_sec`, `cpu_percent`) are over the
    /// time since then, and `history` holds one point per export (at most 120) when
    /// `include_history` is true; otherwise it is the empty list.
    #[pyo3(signature = (include_history = false))]
    fn export_json(&self, py: Python<'_>, include_history: bool) -> PyResult<String> {
        let mut report = self.report(py, true)?;
        if !include_history {
            report.history.clear();
        }
        render(py, |out| json::write_report(out, &report))
    }

    /// The segment as Prometheus text: the same bytes as `coordmetrics snapshot --segment
    /// PATH --format prometheus` with the same options, for the same segment state.
    #[pyo3(
        signature = (*, namespace = "victor_coordinator".to_owned(), compat_names = false, bucket_resolution = 4),
        text_signature = "($self, /, *, namespace='victor_coordinator', compat_names=False, bucket_resolution=4)"
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
        if ![1, 2, 4, 8].contains(&bucket_resolution) {
            return Err(PyValueError::new_err(format!(
                "bucket_resolution must be 1, 2, 4 or 8, not {bucket_resolution}"
            )));
        }
        let options = prometheus::PrometheusOptions { namespace, compat_names, bucket_resolution };
        let report = self.report(py, false)?;
        render(py, |out| prometheus::write_report(out, &report, &options))
    }

    /// The metrics.json entry of coordinator `name` as a dict (`execution_count`,
    /// `error_count`, `p95_duration_ms`, ...), or None if it recorded nothing yet.
    fn get_coordinator_stats<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let document = self.json_document(py)?;
        let coordinators = document.get_item("coordinators")?.cast_into::<PyList>()?;
        for entry in coordinators.iter() {
            if entry.get_item("coordinator_name")?.extract::<String>()? == name {
                return Ok(Some(entry));
            }
        }
        Ok(None)
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
    use super::{CoordinatorHandle, EventHandle, MetricsCollector, SegmentError, Tracking};

    #[pymodule_export]
    const DEFAULT_SEGMENT_PATH: &str = coordmetrics::DEFAULT_SEGMENT_PATH;

    #[pymodule_export]
    const SEGMENT_ENV: &str = coordmetrics::SEGMENT_ENV;
}
