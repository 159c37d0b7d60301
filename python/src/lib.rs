//! `coordmetrics._native`: the native half of the `coordmetrics` Python package, and the one
//! place that says what it exports to Python.
//!
//! It exposes the original Python collector's API over the shared-memory segment of the Rust
//! client, and the exporter's own formatters, so Python and Rust processes record into one
//! segment and one exporter. The pure-Python half (`coordmetrics/`) adds the process-wide
//! singleton, the `track_coordinator_metrics` decorator, the record dataclasses, the
//! `coordmetrics.victor` drop-in and the generator's CLI.
//!
//! Modules, one job each:
//! - `collector`: `CoordinatorMetricsCollector`, the original API's entry point (opening,
//!   recording by name, read-back calls, exports, resets), delegating to the modules below;
//! - `handles`: the resolved `Coordinator` and `AnalyticsEvent` handles, and the per-collector
//!   cache that resolves each name once;
//! - `tracker`: `Tracking`, one timed execution (`with`, `async with`, `start()`/`finish()`);
//! - `history`: the executions each process keeps per coordinator, bounded by `max_history`;
//! - `stats`: the read-back calls' dicts and records, from totals and reports (no JSON);
//! - `export`: metrics.json and Prometheus text through the exporter's formatters;
//! - `errors`: the exceptions the binding raises of its own (`SegmentError`, ...);
//! - `generate`: the generator's benchmark and sample data.
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
//! the reads of the segment (a snapshot of every writer slot, the report and the formatting).

#![forbid(unsafe_code)]

mod collector;
mod errors;
mod export;
mod generate;
mod handles;
mod history;
mod stats;
mod tracker;

use pyo3::prelude::*;

/// The native half of `coordmetrics`: collector, handles and the exporter's formatters.
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::collector::MetricsCollector;
    #[pymodule_export]
    use super::errors::SegmentError;
    #[pymodule_export]
    use super::generate::{run_benchmark, sample_data};
    #[pymodule_export]
    use super::handles::{CoordinatorHandle, EventHandle};
    #[pymodule_export]
    use super::tracker::Tracking;

    #[pymodule_export]
    const DEFAULT_SEGMENT_PATH: &str = coordmetrics::DEFAULT_SEGMENT_PATH;

    #[pymodule_export]
    const SEGMENT_ENV: &str = coordmetrics::SEGMENT_ENV;

    #[pymodule_export]
    const DEFAULT_NAMESPACE: &str = super::export::DEFAULT_NAMESPACE;
}
