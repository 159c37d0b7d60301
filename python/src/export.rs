//! The exports: the exporter's own formatters run on a report of the segment, into Python
//! strings. metrics.json (`export_json`, with the original's `coordinator_stats` when asked) and
//! Prometheus text (`export_prometheus`, its options checked as the CLI checks them), and the
//! one place a formatter runs (with the GIL released), for the generator's sample data too.

use coordmetrics::histogram;
use coordmetrics_report::format::{json, prometheus};
use coordmetrics_report::model::Report;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::formatting_failed;

/// The Prometheus namespace `export_prometheus()` uses unless told otherwise: the exporter's.
pub(crate) use coordmetrics_report::DEFAULT_NAMESPACE;

/// Runs a formatter into a string, with the GIL released.
pub(crate) fn render(
    py: Python<'_>,
    write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()> + Send,
) -> PyResult<String> {
    py.detach(|| {
        let mut out = Vec::new();
        write(&mut out).map_err(formatting_failed)?;
        String::from_utf8(out).map_err(|error| formatting_failed(format_args!("invalid UTF-8: {error}")))
    })
}

/// metrics.json of `report`.
pub(crate) fn json_text(py: Python<'_>, report: &Report) -> PyResult<String> {
    render(py, |out| json::write_report(out, report))
}

/// metrics.json of `report` with `coordinator_stats` added, written as the original's
/// `export_json(include_history=True)` wrote it (`json.dumps(..., indent=2)`): the records in
/// it hold whatever metadata Python code passed, which only Python's `json` can write.
pub(crate) fn json_with_coordinator_stats(
    py: Python<'_>,
    report: &Report,
    coordinator_stats: &Bound<'_, PyDict>,
) -> PyResult<String> {
    let json_module = py.import("json")?;
    let document = json_module.call_method1("loads", (json_text(py, report)?,))?;
    document.set_item("coordinator_stats", coordinator_stats)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("indent", 2)?;
    json_module.call_method("dumps", (document,), Some(&kwargs))?.extract()
}

/// `export_prometheus()`'s options, refused as `coordmetrics snapshot` refuses them.
pub(crate) fn prometheus_options(
    namespace: String,
    compat_names: bool,
    bucket_resolution: u32,
) -> PyResult<prometheus::PrometheusOptions> {
    if !prometheus::is_valid_namespace(&namespace) {
        return Err(PyValueError::new_err(format!("invalid namespace {namespace:?}")));
    }
    let bucket_resolution = histogram::Resolution::new(bucket_resolution).map_err(|_| {
        PyValueError::new_err(format!("bucket_resolution must be 1, 2, 4 or 8, not {bucket_resolution}"))
    })?;
    Ok(prometheus::PrometheusOptions { namespace, compat_names, bucket_resolution })
}

/// Prometheus text of `report`.
pub(crate) fn prometheus_text(
    py: Python<'_>,
    report: &Report,
    options: &prometheus::PrometheusOptions,
) -> PyResult<String> {
    render(py, |out| prometheus::write_report(out, report, options))
}
