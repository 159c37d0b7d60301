//! The resolved handles, `Coordinator` and `AnalyticsEvent` (resolve a name once, then record
//! through the handle: no name lookup per call), and [`Handles`], the cache of one kind of
//! handle by name that each collector keeps, so that its name-taking calls resolve a name once.

use std::marker::PhantomData;
use std::time::Duration;

use coordmetrics::Collector;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::{PyDict, PyString};
use pyo3::{PyClass, PyClassInitializer};

use crate::history::History;
use crate::tracker::Tracking;

/// Beyond this many distinct names a collector resolves names without caching their handles,
/// so that a program generating unique names cannot grow the cache without bound.
const MAX_CACHED_NAMES: usize = 4096;

/// A handle that [`Handles`] caches by name.
pub(crate) trait Handle: PyClass<Frozen = True> + Sync + Into<PyClassInitializer<Self>> {
    /// Whether this handle is worth an entry in the cache.
    fn cacheable(&self) -> bool;
}

/// name (`str`) -> resolved handle of kind `T`: each name is resolved once (a Python `str`
/// caches its hash, so a lookup encodes and hashes nothing again).
#[derive(Debug)]
pub(crate) struct Handles<T> {
    by_name: Py<PyDict>,
    kind: PhantomData<fn() -> T>,
}

impl<T: Handle> Handles<T> {
    pub(crate) fn new(py: Python<'_>) -> Self {
        Self { by_name: PyDict::new(py).unbind(), kind: PhantomData }
    }

    /// The handle of `name`: the cached one, else one made by `resolve` from the name's text
    /// (cached if it is worth it and the cache is not full).
    pub(crate) fn get<'py>(
        &self,
        name: &Bound<'py, PyString>,
        resolve: impl FnOnce(String) -> T,
    ) -> PyResult<Bound<'py, T>> {
        if let Some(handle) = self.cached(name)? {
            return Ok(handle);
        }
        let cache = self.by_name.bind(name.py());
        let handle = Bound::new(name.py(), resolve(name.to_cow()?.into_owned()))?;
        if handle.get().cacheable() && cache.len() < MAX_CACHED_NAMES {
            cache.set_item(name, &handle)?;
        }
        Ok(handle)
    }

    /// The handle of `name` if it was resolved and cached.
    pub(crate) fn cached<'py>(&self, name: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, T>>> {
        match self.by_name.bind(name.py()).get_item(name)? {
            Some(handle) => Ok(Some(handle.cast_into::<T>()?)),
            None => Ok(None),
        }
    }

    /// Every cached handle.
    pub(crate) fn all<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, T>>> {
        self.by_name.bind(py).values().into_iter().map(|handle| Ok(handle.cast_into::<T>()?)).collect()
    }
}

/// `Kind('name')`, the `repr` of a handle.
fn handle_repr(py: Python<'_>, kind: &str, name: &str) -> PyResult<String> {
    Ok(format!("{kind}({})", PyString::new(py, name).repr()?.to_string_lossy()))
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

/// A resolved coordinator: resolve it once with `collector.coordinator(name)` and keep it, it
/// is the fast path (no name lookup per call).
#[pyclass(frozen, module = "coordmetrics", name = "Coordinator")]
#[derive(Debug)]
pub(crate) struct CoordinatorHandle {
    pub(crate) inner: coordmetrics::Coordinator,
    name: String,
    /// This process's recent executions of the coordinator through this collector.
    pub(crate) history: History,
}

impl CoordinatorHandle {
    /// Coordinator `name` of `collector`, keeping at most `max_history` executions here.
    pub(crate) fn resolve(collector: &Collector, name: String, max_history: usize) -> Self {
        Self { inner: collector.coordinator(&name), name, history: History::new(max_history) }
    }
}

impl Handle for CoordinatorHandle {
    /// Not a refused name (empty, or beyond a full table) nor a disabled collector's: those
    /// record nothing and keep no history.
    fn cacheable(&self) -> bool {
        self.inner.is_recording()
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
    pub(crate) fn track(slf: &Bound<'_, Self>, metadata: Option<Py<PyAny>>) -> Tracking {
        Tracking::new(slf.clone().unbind(), metadata)
    }

    /// Records one execution that took `duration_ms` milliseconds; a failed one with
    /// `error_message` goes into the segment's ring of recent errors. `metadata` is kept with
    /// the execution in this process's history.
    #[pyo3(signature = (duration_ms, success = true, error_message = None, metadata = None))]
    pub(crate) fn record(
        &self,
        duration_ms: f64,
        success: bool,
        error_message: Option<String>,
        metadata: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let duration = duration_from_ms(duration_ms)?;
        match (success, error_message.as_deref()) {
            (false, Some(message)) => self.inner.record_failure(duration, message),
            _ => self.inner.record(duration, success),
        }
        self.history.push(duration, success, error_message, metadata);
        Ok(())
    }

    /// Records a cache hit.
    pub(crate) fn cache_hit(&self) {
        self.inner.cache_hit();
    }

    /// Records a cache miss.
    pub(crate) fn cache_miss(&self) {
        self.inner.cache_miss();
    }

    /// Sets this process's memory gauge for the coordinator, in bytes (replacing the
    /// exporter's estimate from the resident memory of the processes that host it).
    pub(crate) fn set_memory_bytes(&self, n: u64) {
        self.inner.set_memory_bytes(n);
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        handle_repr(py, "Coordinator", &self.name)
    }
}

/// A resolved analytics event.
#[pyclass(frozen, module = "coordmetrics", name = "AnalyticsEvent")]
#[derive(Debug)]
pub(crate) struct EventHandle {
    inner: coordmetrics::AnalyticsEvent,
    name: String,
}

impl EventHandle {
    /// Analytics event `name` of `collector`.
    pub(crate) fn resolve(collector: &Collector, name: String) -> Self {
        Self { inner: collector.event(&name), name }
    }
}

impl Handle for EventHandle {
    /// Not the empty name, which is refused.
    fn cacheable(&self) -> bool {
        !self.name.is_empty()
    }
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
    pub(crate) fn record(&self, count: u64) {
        self.inner.record(count);
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        handle_repr(py, "AnalyticsEvent", &self.name)
    }
}
