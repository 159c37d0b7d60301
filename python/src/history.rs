//! The executions this process recorded, per coordinator: what the original collector kept in
//! memory and the segment does not (each execution's times, message and metadata, hence the
//! minimum and maximum duration), bounded by the collector's `max_history`.
//!
//! The segment holds counters and histograms shared by every process; these records are
//! private to the process that made them, so they are kept here, in the coordinator's handle.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// One execution, as the original `CoordinatorExecution` describes it.
#[derive(Debug)]
pub struct Execution {
    /// Unix time the execution ended, in seconds.
    end_time: f64,
    duration_ms: f64,
    success: bool,
    error_message: Option<String>,
    metadata: Option<Py<PyAny>>,
}

/// The most recent executions of one coordinator in this process, at most `capacity`.
#[derive(Debug)]
pub struct History {
    records: Mutex<VecDeque<Execution>>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self { records: Mutex::new(VecDeque::new()), capacity }
    }

    /// Whether records are kept at all (`max_history` > 0).
    pub fn keeps_records(&self) -> bool {
        self.capacity > 0
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Execution>> {
        // A panic while holding the lock cannot leave a half-pushed record: keep going.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps one execution that just ended after `duration`, dropping the oldest beyond the
    /// capacity.
    pub fn push(&self, duration: Duration, success: bool, error_message: Option<String>, metadata: Option<Py<PyAny>>) {
        if !self.keeps_records() {
            return;
        }
        let end_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let execution =
            Execution { end_time, duration_ms: duration.as_secs_f64() * 1e3, success, error_message, metadata };
        let mut records = self.lock();
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(execution);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The shortest and longest duration kept, in ms; `None` when nothing is kept.
    pub fn min_max_ms(&self) -> Option<(f64, f64)> {
        self.lock().iter().fold(None, |range, e| {
            let (low, high) = range.unwrap_or((e.duration_ms, e.duration_ms));
            Some((low.min(e.duration_ms), high.max(e.duration_ms)))
        })
    }

    /// The last `n` executions (oldest first) as `CoordinatorExecution` objects.
    pub fn recent<'py>(&self, py: Python<'py>, coordinator_name: &str, n: usize) -> PyResult<Vec<Bound<'py, PyAny>>> {
        static EXECUTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let class = EXECUTION.import(py, "coordmetrics.records", "CoordinatorExecution")?;
        let records = self.lock();
        records
            .iter()
            .skip(records.len().saturating_sub(n))
            .map(|e| {
                let kwargs = PyDict::new(py);
                kwargs.set_item("coordinator_name", coordinator_name)?;
                kwargs.set_item("start_time", e.end_time - e.duration_ms / 1e3)?;
                kwargs.set_item("end_time", e.end_time)?;
                kwargs.set_item("duration_ms", e.duration_ms)?;
                kwargs.set_item("success", e.success)?;
                kwargs.set_item("error_message", e.error_message.as_deref())?;
                match &e.metadata {
                    Some(metadata) => kwargs.set_item("metadata", metadata.bind(py))?,
                    None => kwargs.set_item("metadata", PyDict::new(py))?,
                }
                class.call((), Some(&kwargs))
            })
            .collect()
    }
}
