//! coordmetrics reports and their formats: a [`coordmetrics::Snapshot`] in, a
//! [`model::Report`] of plain data out ([`reporter::Reporter`]), and pure formatters
//! ([`format`](mod@format)) that write it as Prometheus text, OpenMetrics, protobuf or `metrics.json` to
//! any `impl Write`.
//!
//! No I/O beyond the writer it is given, and no CLI, signal, configuration-file or network
//! code: the exporter binary, the Python binding and the fuzz target share it.
#![forbid(unsafe_code)]

/// Prefix of the coordinator metric names unless configured otherwise: the original
/// collector's, so that its dashboards and PromQL work unchanged.
pub const DEFAULT_NAMESPACE: &str = "victor_coordinator";

pub mod format;
pub mod generator;
pub mod history;
pub mod hosts;
pub mod memory;
pub mod model;
pub mod rates;
pub mod reporter;
pub mod sample;
pub mod status;
pub mod thresholds;
pub mod time;
