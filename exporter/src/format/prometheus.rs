//! The Prometheus text exposition format (0.0.4), as node_exporter's textfile collector and
//! promtool read it: HELP and TYPE once per family, families in a fixed order, series sorted,
//! label values escaped, no timestamps, a trailing newline.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use coordmetrics::histogram;

use crate::report::{CoordinatorReport, Health, Report};

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

/// Writes `report` as Prometheus text.
///
/// # Errors
/// Only those of `out`.
pub fn write_report(out: &mut dyn Write, report: &Report, options: &PrometheusOptions) -> io::Result<()> {
    let ns = &options.namespace;
    let coordinators = &report.coordinators;
    let counter = |out: &mut dyn Write, suffix: &str, help: &str, value: fn(&CoordinatorReport) -> u64| {
        write_coordinator_family(out, &format!("{ns}_{suffix}"), help, "counter", coordinators, |c| {
            Some(value(c).to_string())
        })
    };
    counter(out, "executions_total", "Coordinator executions recorded, successful and failed.", |c| {
        c.totals.executions
    })?;
    counter(out, "errors_total", "Coordinator executions that failed.", |c| c.totals.errors)?;
    counter(out, "cache_hits_total", "Cache hits reported by the coordinator.", |c| c.totals.cache_hits)?;
    counter(out, "cache_misses_total", "Cache misses reported by the coordinator.", |c| c.totals.cache_misses)?;
    let seconds = HistogramUnit { help: "Coordinator execution latency.", nanos: 1e9 };
    write_histogram(out, &format!("{ns}_duration_seconds"), seconds, coordinators, options.bucket_resolution)?;
    write_coordinator_family(
        out,
        &format!("{ns}_in_flight"),
        "Executions started and not yet finished, in live processes.",
        "gauge",
        coordinators,
        |c| Some(c.totals.in_flight.to_string()),
    )?;
    write_coordinator_family(
        out,
        &format!("{ns}_memory_bytes"),
        "Memory of the coordinator: set by the client, else its share of its host processes' resident memory.",
        "gauge",
        coordinators,
        |c| c.memory_bytes.map(|b| b.to_string()),
    )?;
    if !report.events.is_empty() {
        let family = format!("{ns}_analytics_events_total");
        write_help_type(out, &family, "Analytics events recorded.", "counter")?;
        for (event, count) in &report.events {
            writeln!(out, "{family}{{event=\"{}\"}} {count}", escape_label_value(event))?;
        }
    }
    write_help_type(out, &format!("{ns}_uptime_seconds"), "Seconds since the metrics segment was created.", "gauge")?;
    writeln!(out, "{ns}_uptime_seconds {}", format_float(seconds_between(report.segment.created, report.timestamp)))?;

    if options.compat_names {
        write_compat_names(out, report, options)?;
    }
    write_exporter_health(out, report)
}

/// Writes the series the original Python collector documented (its README's names and its
/// PromQL), with the configured namespace in place of `victor_coordinator`: the seed's
/// `histogram_quantile(0.95, sum(rate(victor_coordinator_duration_ms_bucket[5m])) by
/// (coordinator, le))` works on them verbatim.
fn write_compat_names(out: &mut dyn Write, report: &Report, options: &PrometheusOptions) -> io::Result<()> {
    let ns = &options.namespace;
    let coordinators = &report.coordinators;
    let milliseconds = HistogramUnit {
        help: "Coordinator execution latency in milliseconds (original collector's name; prefer duration_seconds).",
        nanos: 1e6,
    };
    write_histogram(out, &format!("{ns}_duration_ms"), milliseconds, coordinators, options.bucket_resolution)?;
    write_coordinator_family(
        out,
        &format!("{ns}_duration_ms_total"),
        "Total execution time in milliseconds (original collector's name; prefer duration_seconds).",
        "counter",
        coordinators,
        |c| Some(format_float(c.totals.duration_sum_ns as f64 / 1e6)),
    )?;
    write_coordinator_family(
        out,
        &format!("{ns}_cache_hit_rate"),
        "Cache hits / (hits + misses) since the segment was created, 0 without cache traffic (original collector's name).",
        "gauge",
        coordinators,
        |c| Some(format_float(c.cache_hit_rate.unwrap_or(0.0))),
    )?;
    let total = format!("{ns}_total_executions");
    write_help_type(
        out,
        &total,
        "Executions of all coordinators (original collector's name; prefer executions_total).",
        "gauge",
    )?;
    writeln!(out, "{total} {}", report.total_executions())?;
    // The original's events family has no `_coordinator` in its name; under a namespace
    // without that suffix it would be the default family itself, already written.
    if let (Some(prefix), false) = (ns.strip_suffix("_coordinator"), report.events.is_empty()) {
        let family = format!("{prefix}_analytics_events_total");
        write_help_type(out, &family, "Analytics events recorded (original collector's name).", "counter")?;
        for (event, count) in &report.events {
            writeln!(out, "{family}{{event=\"{}\"}} {count}", escape_label_value(event))?;
        }
    }
    Ok(())
}

/// Writes the exporter's own families (the `coordmetrics_` prefix).
fn write_exporter_health(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    write_health_only(out, &report.health, report.interval)?;
    let rows = [
        (
            "coordmetrics_snapshot_duration_seconds",
            "Time the last snapshot and rendering took.",
            "gauge",
            format_float(report.health.snapshot_duration.as_secs_f64()),
        ),
        (
            "coordmetrics_live_writers",
            "Writer slots owned by live processes.",
            "gauge",
            report.live_writers.to_string(),
        ),
        (
            "coordmetrics_segment_created_timestamp_seconds",
            "Unix time the segment was created; a change means its counters restarted.",
            "gauge",
            format_float(unix_seconds(report.segment.created)),
        ),
    ];
    write_rows(out, &rows)?;
    write_help_type(
        out,
        "coordmetrics_dropped_updates_total",
        "Updates the clients could not record, by reason: no_writer (every writer slot taken by a live \
         process), no_block (block pool exhausted or file system full), name (name refused: empty or a full \
         table).",
        "counter",
    )?;
    let dropped = &report.dropped;
    for (reason, count) in [("name", dropped.name), ("no_block", dropped.no_block), ("no_writer", dropped.no_writer)] {
        writeln!(out, "coordmetrics_dropped_updates_total{{reason=\"{reason}\"}} {count}")?;
    }
    let capacities = report.capacities();
    let (used_blocks, blocks) = report.used_blocks;
    let kinds = [
        ("blocks", blocks as usize, used_blocks as usize),
        ("coordinators", capacities.coordinators as usize, report.coordinators.len()),
        ("errors", capacities.errors as usize, report.used_errors),
        ("events", capacities.events as usize, report.events.len()),
        ("writers", capacities.writers as usize, report.used_writers),
    ];
    write_help_type(out, "coordmetrics_segment_capacity", "Capacity of each table of the segment.", "gauge")?;
    for (kind, capacity, _) in kinds {
        writeln!(out, "coordmetrics_segment_capacity{{kind=\"{kind}\"}} {capacity}")?;
    }
    write_help_type(out, "coordmetrics_segment_used", "Entries in use in each table of the segment.", "gauge")?;
    for (kind, _, used) in kinds {
        writeln!(out, "coordmetrics_segment_used{{kind=\"{kind}\"}} {used}")?;
    }
    Ok(())
}

/// Writes the health families that exist even when no segment could be read: whether the last
/// snapshot worked, when one last did, and the error counters.
pub fn write_health_only(out: &mut dyn Write, health: &Health, interval: std::time::Duration) -> io::Result<()> {
    let rows = [
        (
            "coordmetrics_up",
            "1 if the last snapshot of the segment succeeded.",
            "gauge",
            u8::from(health.up).to_string(),
        ),
        (
            "coordmetrics_last_snapshot_timestamp_seconds",
            "Unix time of the last successful snapshot.",
            "gauge",
            format_float(health.last_success.map_or(0.0, unix_seconds)),
        ),
        (
            "coordmetrics_snapshot_interval_seconds",
            "Configured snapshot interval.",
            "gauge",
            format_float(interval.as_secs_f64()),
        ),
        (
            "coordmetrics_snapshot_errors_total",
            "Snapshots that failed (segment missing, corrupt, ...).",
            "counter",
            health.snapshot_errors.to_string(),
        ),
        (
            "coordmetrics_write_errors_total",
            "Output files that could not be written.",
            "counter",
            health.write_errors.to_string(),
        ),
    ];
    write_rows(out, &rows)
}

/// Writes single-sample families: (name, help, type, value).
fn write_rows(out: &mut dyn Write, rows: &[(&str, &str, &str, String)]) -> io::Result<()> {
    for (name, help, kind, value) in rows {
        write_help_type(out, name, help, kind)?;
        writeln!(out, "{name} {value}")?;
    }
    Ok(())
}

fn write_coordinator_family(
    out: &mut dyn Write,
    family: &str,
    help: &str,
    kind: &str,
    coordinators: &[CoordinatorReport],
    value: impl Fn(&CoordinatorReport) -> Option<String>,
) -> io::Result<()> {
    let rows: Vec<(&str, String)> =
        coordinators.iter().filter_map(|c| Some((c.totals.name.as_str(), value(c)?))).collect();
    if rows.is_empty() {
        return Ok(());
    }
    write_help_type(out, family, help, kind)?;
    for (name, value) in rows {
        writeln!(out, "{family}{{coordinator=\"{}\"}} {value}", escape_label_value(name))?;
    }
    Ok(())
}

/// The unit of a latency histogram's bounds and sum.
#[derive(Clone, Copy)]
struct HistogramUnit {
    help: &'static str,
    /// Nanoseconds per unit.
    nanos: f64,
}

fn write_histogram(
    out: &mut dyn Write,
    family: &str,
    unit: HistogramUnit,
    coordinators: &[CoordinatorReport],
    resolution: u32,
) -> io::Result<()> {
    if coordinators.is_empty() {
        return Ok(());
    }
    write_help_type(out, family, unit.help, "histogram")?;
    // Every coordinator has the same bounds: format them once.
    let per_second = 1e9 / unit.nanos;
    let bounds: Vec<String> = histogram::coarsen(&[0; histogram::BUCKETS], resolution)
        .iter()
        .map(|b| format_float(b.le * per_second))
        .collect();
    for coordinator in coordinators {
        let name = escape_label_value(&coordinator.totals.name);
        let classic = histogram::coarsen(&coordinator.totals.buckets, resolution);
        for (le, bucket) in bounds.iter().zip(&classic) {
            writeln!(out, "{family}_bucket{{coordinator=\"{name}\",le=\"{le}\"}} {}", bucket.cumulative)?;
        }
        writeln!(
            out,
            "{family}_sum{{coordinator=\"{name}\"}} {}",
            format_float(coordinator.totals.duration_sum_ns as f64 / unit.nanos)
        )?;
        let count = classic.last().map_or(0, |b| b.cumulative);
        writeln!(out, "{family}_count{{coordinator=\"{name}\"}} {count}")?;
    }
    Ok(())
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub fn write_help_type(out: &mut dyn Write, family: &str, help: &str, kind: &str) -> io::Result<()> {
    writeln!(out, "# HELP {family} {}", escape_help(help))?;
    writeln!(out, "# TYPE {family} {kind}")
}

/// Escapes a label value; see [`escape`].
pub fn escape_label_value(value: &str) -> String {
    escape(value, true)
}

/// Escapes HELP text; see [`escape`].
pub fn escape_help(text: &str) -> String {
    escape(text, false)
}

/// The one rule for text from the segment (coordinator and event names) and for HELP text.
///
/// The exposition format defines three escapes: `\\`, `\n` and, in label values, `\"`. Other
/// control characters are legal in the format, yet they break readers of the file: a carriage
/// return ends the line for Python's `open()` (so `prometheus_client`'s parser fails on the
/// file), an ESC starts a terminal escape sequence for whoever views it, NUL ends C strings,
/// and U+2028/U+2029 end lines for Python's `str.splitlines` and for editors. So every control
/// character (Unicode category Cc: U+0000-U+001F and U+007F-U+009F) other than the line feed,
/// and U+2028 and U+2029, is written as the visible text `\xHH` (`\u2028`, `\u2029`), its
/// backslash escaped like any other: a parser reads the TAB of `a<TAB>b` back as the four
/// characters `a\x09b`. The output is then printable UTF-8 in which only line feeds end lines.
fn escape(text: &str, quoted: bool) -> String {
    use std::fmt::Write as _;
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        // Writing to a String cannot fail.
        let _ = match c {
            '\\' => escaped.write_str("\\\\"),
            '"' if quoted => escaped.write_str("\\\""),
            '\n' => escaped.write_str("\\n"),
            c if c.is_control() => write!(escaped, "\\\\x{:02x}", u32::from(c)),
            '\u{2028}' | '\u{2029}' => write!(escaped, "\\\\u{:04x}", u32::from(c)),
            c => escaped.write_char(c),
        };
    }
    escaped
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

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    later.duration_since(earlier).map_or(0.0, |d| d.as_secs_f64())
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

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            escape_label_value("a\tb\rc\u{1b}d\0e\u{7f}f\u{85}g\u{2028}h\u{2029}i\nj"),
            r"a\\x09b\\x0dc\\x1bd\\x00e\\x7ff\\x85g\\u2028h\\u2029i\nj"
        );
        assert_eq!(escape_help("tab\there\nnext \"quoted\" \\"), r#"tab\\x09here\nnext "quoted" \\"#);
    }

    /// What a parser must read back from a name: the name, with the controls made visible.
    fn visible(name: &str) -> String {
        name.chars()
            .map(|c| match c {
                '\n' => "\n".to_owned(),
                c if c.is_control() => format!("\\x{:02x}", u32::from(c)),
                '\u{2028}' | '\u{2029}' => format!("\\u{:04x}", u32::from(c)),
                c => c.to_string(),
            })
            .collect()
    }

    /// Parses one line of the text format as promtool reads it: `# HELP name text`,
    /// `# TYPE name type` or `name{label="value",...} value`. Returns the sample's name and its
    /// unescaped label values.
    fn parse_line(line: &str) -> Result<(String, Vec<(String, String)>), String> {
        let is_name = |n: &str| !n.is_empty() && is_valid_namespace(n);
        if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            let (name, _) = rest.split_once(' ').ok_or("no text after the name")?;
            return if is_name(name) { Ok((name.into(), Vec::new())) } else { Err(format!("bad name {name:?}")) };
        }
        let end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..end];
        if !is_name(name) {
            return Err(format!("bad name {name:?}"));
        }
        let mut labels = Vec::new();
        let mut rest = &line[end..];
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                let (label, after) = inner.split_once("=\"").ok_or("no label value")?;
                if !is_name(label) {
                    return Err(format!("bad label name {label:?}"));
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let close = loop {
                    match chars.next().ok_or("unterminated label value")? {
                        (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => return Err(format!("unknown escape \\{c}")),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                labels.push((label.to_owned(), value));
                let after = &after[close + 1..];
                if let Some(next) = after.strip_prefix(',') {
                    inner = next;
                } else {
                    rest = after.strip_prefix('}').ok_or("no closing brace")?;
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        value.parse::<f64>().map_err(|_| format!("bad value {value:?}"))?;
        Ok((name.into(), labels))
    }

    /// Arbitrary text, with the characters that need care drawn often.
    fn hostile_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let hostile = prop_oneof![
            (0u32..0xa0).prop_filter_map("a char", char::from_u32),
            proptest::sample::select(vec![
                '"', '\\', '\n', '\r', '\t', '\u{2028}', '\u{2029}', '{', '}', '=', ',', ' '
            ]),
        ];
        proptest::collection::vec(prop_oneof![any::<char>(), hostile], 0..24).prop_map(String::from_iter)
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

        #[test]
        fn any_names_give_well_formed_lines_that_read_back(
            names in proptest::collection::vec(hostile_text(), 1..4),
            event in hostile_text(),
        ) {
            static SAMPLE: std::sync::OnceLock<Report> = std::sync::OnceLock::new();
            let mut report = SAMPLE.get_or_init(crate::sample::sample_report).clone();
            report.coordinators.truncate(names.len());
            for (coordinator, name) in report.coordinators.iter_mut().zip(&names) {
                coordinator.totals.name.clone_from(name);
            }
            report.events = vec![(event.clone(), 3)];
            let mut out = Vec::new();
            write_report(&mut out, &report, &PrometheusOptions::default()).unwrap();
            let text = String::from_utf8(out).unwrap();

            proptest::prop_assert!(text.ends_with('\n'));
            let unsafe_char = text.chars().find(|&c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}'));
            proptest::prop_assert_eq!(unsafe_char, None);
            let mut coordinators = Vec::new();
            let mut events = Vec::new();
            for line in text.lines() {
                let (name, labels) = parse_line(line).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}: {line:?}")))?;
                for (label, value) in labels {
                    match (name.as_str(), label.as_str()) {
                        ("victor_coordinator_executions_total", "coordinator") => coordinators.push(value),
                        ("victor_coordinator_analytics_events_total", "event") => events.push(value),
                        _ => {}
                    }
                }
            }
            proptest::prop_assert_eq!(coordinators, names.iter().map(|n| visible(n)).collect::<Vec<_>>());
            proptest::prop_assert_eq!(events, vec![visible(&event)]);
        }
    }
}
