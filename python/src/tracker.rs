//! `Tracking`, one execution timed by a `with`/`async with` block (or `start()`/`finish()`),
//! what the decorator and `track_coordinator` return; the failure message it records for an
//! exception; and `_Ready`, the already-complete awaitable of its async protocol.

use pyo3::exceptions::{PyGeneratorExit, PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::handles::CoordinatorHandle;

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

/// One execution of a coordinator, timed from entering to leaving a `with` or `async with`
/// block. An exception inside the block records a failed execution with the message
/// `f"{type(e).__name__}: {e}"` (a cancellation: "cancelled") and propagates.
// A free list: one is created and dropped per execution, the memory is reused.
#[pyclass(freelist = 64, module = "coordmetrics", name = "Tracking")]
#[derive(Debug)]
pub(crate) struct Tracking {
    coordinator: Py<CoordinatorHandle>,
    /// Counts the execution in the in-flight gauge while it runs.
    tracker: Option<coordmetrics::OwnedTracker>,
    /// Kept with the execution in the history.
    metadata: Option<Py<PyAny>>,
}

impl Tracking {
    /// An execution of `coordinator`, not started yet.
    pub(crate) fn new(coordinator: Py<CoordinatorHandle>, metadata: Option<Py<PyAny>>) -> Self {
        Self { coordinator, tracker: None, metadata }
    }

    fn begin(&mut self) -> PyResult<()> {
        if self.tracker.is_some() {
            return Err(PyRuntimeError::new_err("this execution is already being tracked"));
        }
        self.tracker = Some(self.coordinator.get().inner.track_owned());
        Ok(())
    }

    fn end(&mut self, success: bool, message: Option<String>) {
        let Some(tracker) = self.tracker.take() else { return };
        // The record keeps the duration the segment recorded: no clock read of its own.
        let duration = match (success, message.as_deref()) {
            (false, Some(message)) => tracker.fail(message),
            _ => tracker.finish(success),
        };
        self.coordinator.get().history.push(duration, success, message, self.metadata.take());
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
    fn start(slf: PyRefMut<'_, Self>) -> PyResult<PyRefMut<'_, Self>> {
        Self::__enter__(slf)
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
pub(crate) struct Ready {
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
