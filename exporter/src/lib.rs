//! The coordmetrics exporter: snapshot a segment, build a [`report::Report`], format it as
//! Prometheus text or `metrics.json` with pure functions, and write it atomically or serve it.
//!
//! Pipeline: [`coordmetrics::Snapshot`] -> [`report::Reporter`] -> [`format`] -> [`sink`] / [`http`].
#![forbid(unsafe_code)]

pub mod config;
pub mod dashboard;
pub mod format;
pub mod generator;
pub mod http;
pub mod logging;
pub mod report;
pub mod sample;
pub mod sink;
pub mod workload;
