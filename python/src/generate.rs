//! The generator's native half (`python -m coordmetrics.generate`): the benchmark and the sample
//! data of `coordmetrics generate`, the same Rust code, so both entry points produce the same data.

use coordmetrics_report::format::{prometheus, Format};
use coordmetrics_report::{generator, sample};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::collector::MetricsCollector;
use crate::export::render;

/// Records `iterations` executions of each of the 13 Victor coordinators into `collector`'s
/// segment through the Rust client, as `coordmetrics generate --benchmark` does, calling
/// `on_iteration(index)` before each iteration.
#[pyfunction]
#[pyo3(signature = (collector, iterations, on_iteration = None))]
pub(crate) fn run_benchmark(
    collector: &MetricsCollector,
    iterations: u32,
    on_iteration: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let mut failure = None;
    generator::run_benchmark(&collector.collector, iterations, |index| {
        if let (Some(callback), None) = (&on_iteration, &failure) {
            failure = callback.call1((index,)).err();
        }
    });
    failure.map_or(Ok(()), Err)
}

/// The exporter's deterministic sample data (marked as demo data) as `format` ("json" or
/// "prometheus", with the original collector's names), as `coordmetrics sample-data` writes it.
#[pyfunction]
pub(crate) fn sample_data(py: Python<'_>, format: &str) -> PyResult<String> {
    let format: Format = format.parse().map_err(PyValueError::new_err)?;
    let report = sample::sample_report();
    let options = prometheus::PrometheusOptions { compat_names: true, ..Default::default() };
    render(py, |out| format.write(out, &report, &options))
}
