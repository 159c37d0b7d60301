//! The Prometheus text exposition format (0.0.4), as node_exporter's textfile collector and
//! promtool read it: HELP and TYPE once per family, families in a fixed order, series sorted,
//! label values escaped, no timestamps, a trailing newline; and OpenMetrics text, its successor,
//! for scrapers that ask for it.

use std::io::{self, Write};

use coordmetrics::histogram;

use super::model::{self, Family, Kind, Value};
use crate::report::Report;

/// Settings of the Prometheus formatter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusOptions {
    /// Prefix of the coordinator families.
    pub namespace: String,
    /// Also emit the original collector's documented names.
    pub compat_names: bool,
    /// Classic buckets per power of two (1, 2, 4 or 8).
    pub bucket_resolution: u32,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        Self { namespace: "victor_coordinator".into(), compat_names: false, bucket_resolution: 4 }
    }
}

/// Whether `namespace` is a valid metric name prefix.
pub fn is_valid_namespace(namespace: &str) -> bool {
    let mut chars = namespace.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The two text dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Prometheus text 0.0.4: what node_exporter's textfile collector and promtool read.
    Prometheus,
    /// OpenMetrics 1.0.0: counter families named without `_total`, `# UNIT` lines, `# EOF`.
    OpenMetrics,
}

impl Dialect {
    /// The Content-Type of this dialect.
    pub fn content_type(self) -> &'static str {
        match self {
            Dialect::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Dialect::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Writes `report` as Prometheus text.
///
/// # Errors
/// Only those of `out`.
pub fn write_report(out: &mut dyn Write, report: &Report, options: &PrometheusOptions) -> io::Result<()> {
    write_families(out, &model::families(report, options), options.bucket_resolution, Dialect::Prometheus)
}

/// Writes `families` in `dialect`, histograms with `resolution` classic buckets per power of
/// two (one of `histogram::RESOLUTIONS`).
///
/// # Errors
/// Only those of `out`.
pub fn write_families(out: &mut dyn Write, families: &[Family], resolution: u32, dialect: Dialect) -> io::Result<()> {
    // Every histogram has the same bounds: format them once.
    let bounds: Vec<String> =
        histogram::coarsen(&[0; histogram::BUCKETS], resolution).iter().map(|b| format_float(b.le)).collect();
    for family in families {
        let name = family.name.as_str();
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        match dialect {
            Dialect::Prometheus => write_help_type(out, name, family.help, kind)?,
            Dialect::OpenMetrics => {
                // OpenMetrics names a counter family without the `_total` of its samples, and
                // wants a unit only when it is the name's suffix.
                let base = if family.kind == Kind::Counter { name.trim_end_matches("_total") } else { name };
                writeln!(out, "# TYPE {base} {kind}")?;
                for unit in ["seconds", "bytes"] {
                    if base.ends_with(&format!("_{unit}")) {
                        writeln!(out, "# UNIT {base} {unit}")?;
                    }
                }
                writeln!(out, "# HELP {base} {}", escape_label_value(family.help))?;
            }
        }
        for sample in &family.samples {
            let label = sample.label.map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value)));
            match sample.value {
                Value::Histogram { buckets, sum_seconds } => {
                    let label = label.unwrap_or_default();
                    let classic = histogram::coarsen(buckets, resolution);
                    for (le, bucket) in bounds.iter().zip(&classic) {
                        writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {}", bucket.cumulative)?;
                    }
                    writeln!(out, "{name}_sum{{{label}}} {}", format_float(sum_seconds))?;
                    let count = classic.last().map_or(0, |b| b.cumulative);
                    writeln!(out, "{name}_count{{{label}}} {count}")?;
                }
                value => {
                    let labels = label.map(|l| format!("{{{l}}}")).unwrap_or_default();
                    writeln!(out, "{name}{labels} {}", format_value(value))?;
                }
            }
        }
    }
    if dialect == Dialect::OpenMetrics {
        writeln!(out, "# EOF")?;
    }
    Ok(())
}

fn format_value(value: Value) -> String {
    match value {
        Value::Unsigned(value) => value.to_string(),
        Value::Signed(value) => value.to_string(),
        value => format_float(value.as_f64()),
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub fn write_help_type(out: &mut dyn Write, family: &str, help: &str, kind: &str) -> io::Result<()> {
    writeln!(out, "# HELP {family} {}", escape_help(help))?;
    writeln!(out, "# TYPE {family} {kind}")
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Escapes HELP text: backslash and line feed.
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a sample value or `le` bound as Prometheus expects (`+Inf`, `-Inf`, `NaN`).
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("ünï</script>"), "ünï</script>");
    }

    #[test]
    fn formats_floats() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(0.00006103515625), "0.00006103515625");
    }

    #[test]
    fn validates_namespaces() {
        assert!(is_valid_namespace("victor_coordinator"));
        assert!(is_valid_namespace("a:b_1"));
        assert!(!is_valid_namespace("1abc"));
        assert!(!is_valid_namespace("a-b"));
        assert!(!is_valid_namespace(""));
    }

    proptest::proptest! {
        #[test]
        fn escaped_values_never_end_a_label(value in ".*") {
            let escaped = escape_label_value(&value);
            proptest::prop_assert!(!escaped.contains('\n'));
            // Every quote is preceded by an odd run of backslashes.
            let bytes = escaped.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'"' {
                    let run = bytes[..i].iter().rev().take_while(|&&c| c == b'\\').count();
                    proptest::prop_assert!(run % 2 == 1);
                }
            }
        }
    }
}
