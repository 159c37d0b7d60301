//! The coordmetrics exporter around the pure report and formats of [`coordmetrics_report`]:
//! configuration, the atomic file sinks, the HTTP listener, the dashboard's assets, logging, and
//! the workload that `coordmetrics bench` and the integration tests record and predict.
//!
//! Pipeline: [`coordmetrics::Snapshot`] -> [`coordmetrics_report::reporter::Reporter`] ->
//! [`coordmetrics_report::format`] -> [`sink`] / [`http`].
#![forbid(unsafe_code)]

pub mod config;
pub mod dashboard;
pub mod http;
pub mod logging;
pub mod sink;
pub mod workload;
