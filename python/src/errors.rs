//! The exceptions the binding raises of its own: `SegmentError` when a segment cannot be
//! opened or created, `RuntimeError` when a disabled collector is asked for its metrics or a
//! formatter fails. (Invalid arguments raise `ValueError` where they are checked.)

use coordmetrics::OpenError;
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::PyErr;

create_exception!(
    coordmetrics,
    SegmentError,
    PyOSError,
    "The segment could not be created or opened (missing directory, permissions, another layout version, corruption)."
);

/// `SegmentError` with the client's message.
pub(crate) fn segment_error(error: &OpenError) -> PyErr {
    SegmentError::new_err(error.to_string())
}

/// What reading the metrics of a disabled collector raises.
pub(crate) fn metrics_disabled(reason: Option<&str>) -> PyErr {
    PyRuntimeError::new_err(format!("metrics are disabled: {}", reason.unwrap_or("no segment")))
}

/// What a formatter that failed or wrote something other than UTF-8 raises.
pub(crate) fn formatting_failed(error: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(format!("formatting failed: {error}"))
}
