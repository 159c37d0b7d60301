//! Pure formatters: a [`crate::model::Report`] in, bytes out through `impl Write`. They own
//! every byte of presentation: names, units, rounding, escaping, the history's JSON.

pub mod client_model;
pub mod json;
pub mod model;
pub mod native;
pub mod negotiate;
pub mod prometheus;
pub mod protobuf;

use std::io::{self, Write};

use crate::model::Report;

/// The formats of a whole report, for the tools that write one file of one report (`snapshot`,
/// `sample-data`, `generate`, the Python binding's sample data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format.
    Prometheus,
    /// metrics.json for the dashboard.
    Json,
}

impl Format {
    /// Every format, by the name [`std::str::FromStr`] reads.
    pub const NAMES: [&'static str; 2] = ["prometheus", "json"];

    /// Writes `report` in this format (`options` apply to Prometheus text).
    ///
    /// # Errors
    /// Only those of `out`.
    pub fn write(
        self,
        out: &mut dyn Write,
        report: &Report,
        options: &prometheus::PrometheusOptions,
    ) -> io::Result<()> {
        match self {
            Format::Prometheus => prometheus::write_report(out, report, options),
            Format::Json => json::write_report(out, report),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// ```
    /// use coordmetrics_report::format::Format;
    /// assert_eq!("json".parse(), Ok(Format::Json));
    /// assert!("yaml".parse::<Format>().unwrap_err().contains("prometheus or json"));
    /// ```
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "prometheus" => Ok(Format::Prometheus),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?}: expected prometheus or json")),
        }
    }
}
