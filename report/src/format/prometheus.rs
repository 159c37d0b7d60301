//! The Prometheus text exposition format (0.0.4), as node_exporter's textfile collector and
//! promtool read it: HELP and TYPE once per family, families in a fixed order, series sorted,
//! label values escaped, no timestamps, a trailing newline; and OpenMetrics text, its successor,
//! for scrapers that ask for it.

use std::collections::HashSet;
use std::io::{self, Write};

use coordmetrics::histogram::{self, ClassicBucket, Resolution};

use super::model::{self, Family, Kind, Value};
use crate::model::Report;

/// Settings of the Prometheus formatter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusOptions {
    /// Prefix of the coordinator families.
    pub namespace: String,
    /// Also emit the original collector's documented names.
    pub compat_names: bool,
    /// Classic buckets per power of two.
    pub bucket_resolution: Resolution,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        Self { namespace: crate::DEFAULT_NAMESPACE.into(), compat_names: false, bucket_resolution: Resolution::DEFAULT }
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
/// two.
///
/// # Errors
/// Only those of `out`.
pub fn write_families(
    out: &mut dyn Write,
    families: &[Family],
    resolution: Resolution,
    dialect: Dialect,
) -> io::Result<()> {
    // Written into one buffer, then handed over at once: the many small writes of a sample
    // line stay plain appends to a `Vec`, not calls through `dyn Write`.
    let mut text = Vec::with_capacity(64 * 1024);
    let mut openmetrics_names = HashSet::new();
    for family in families {
        // OpenMetrics family names must be unique, and the compat `duration_ms_total` counter is
        // the `duration_ms` family there, like the histogram: left out, its value is that
        // histogram's `_sum`.
        if dialect == Dialect::OpenMetrics && !openmetrics_names.insert(family.name.as_str()) {
            continue;
        }
        let mut writer = FamilyWriter::start(&mut text, dialect, &family.name, family.help, family.kind)?;
        // The series of a histogram family share their bounds: formatted once.
        let mut bounds = Vec::new();
        for sample in &family.samples {
            match sample.value {
                Value::Histogram { buckets, sum, unit } => {
                    if bounds.is_empty() {
                        bounds = histogram::coarsen(&[0; histogram::BUCKETS], resolution)
                            .iter()
                            .map(|b| format_float(b.le * unit.per_second()))
                            .collect();
                    }
                    writer.histogram(sample.label, &bounds, &histogram::coarsen(buckets, resolution), sum)?;
                }
                value => writer.sample(sample.label, value)?,
            }
        }
    }
    if dialect == Dialect::OpenMetrics {
        text.extend_from_slice(b"# EOF\n");
    }
    out.write_all(&text)
}

/// One family of the text format being written: its `# HELP` and `# TYPE` lines (and, in
/// OpenMetrics, `# UNIT`) when started, then its samples, named by the family's type (`_total`
/// for a counter's, `_bucket`, `_sum` and `_count` for a histogram's), label values escaped
/// straight into the writer.
///
/// # Examples
/// ```
/// use coordmetrics_report::format::model::{Kind, Value};
/// use coordmetrics_report::format::prometheus::{Dialect, FamilyWriter};
///
/// let mut out = Vec::new();
/// let mut jobs = FamilyWriter::start(&mut out, Dialect::Prometheus, "jobs", "Jobs done.", Kind::Counter)?;
/// jobs.sample(Some(("queue", "fast \"lane\"")), Value::Unsigned(7))?;
/// jobs.sample(None, Value::Unsigned(3))?;
/// let mut heat = FamilyWriter::start(&mut out, Dialect::Prometheus, "heat", "Heat.\nIn kelvin.", Kind::Gauge)?;
/// heat.sample(None, Value::Float(f64::INFINITY))?;
/// assert_eq!(String::from_utf8(out)?, r#"# HELP jobs_total Jobs done.
/// ## TYPE jobs_total counter
/// jobs_total{queue="fast \"lane\""} 7
/// jobs_total 3
/// ## HELP heat Heat.\nIn kelvin.
/// ## TYPE heat gauge
/// heat +Inf
/// "#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FamilyWriter<'a, W: Write + ?Sized> {
    out: &'a mut W,
    name: &'a str,
    kind: Kind,
}

impl<'a, W: Write + ?Sized> FamilyWriter<'a, W> {
    /// Writes the family's metadata lines in `dialect`.
    ///
    /// # Errors
    /// Only those of `out`.
    pub fn start(out: &'a mut W, dialect: Dialect, name: &'a str, help: &str, kind: Kind) -> io::Result<Self> {
        let (suffix, type_name) = (kind.suffix(), kind.name());
        match dialect {
            Dialect::Prometheus => {
                write!(out, "# HELP {name}{suffix} ")?;
                write_escaped(out, help, false)?;
                writeln!(out, "\n# TYPE {name}{suffix} {type_name}")?;
            }
            Dialect::OpenMetrics => {
                // OpenMetrics names a counter family without the `_total` of its samples, and
                // wants a unit only when it is the name's suffix.
                writeln!(out, "# TYPE {name} {type_name}")?;
                for unit in ["seconds", "bytes"] {
                    if name.strip_suffix(unit).is_some_and(|rest| rest.ends_with('_')) {
                        writeln!(out, "# UNIT {name} {unit}")?;
                    }
                }
                write!(out, "# HELP {name} ")?;
                write_escaped(out, help, true)?;
                writeln!(out)?;
            }
        }
        Ok(Self { out, name, kind })
    }

    /// Writes one sample of a counter or gauge (a histogram's go through [`Self::histogram`]).
    ///
    /// # Errors
    /// Those of `out`, and `InvalidInput` for a histogram value.
    pub fn sample(&mut self, label: Option<(&str, &str)>, value: Value) -> io::Result<()> {
        let out = &mut *self.out;
        out.write_all(self.name.as_bytes())?;
        out.write_all(self.kind.suffix().as_bytes())?;
        write_labels(out, label, None)?;
        out.write_all(b" ")?;
        match value {
            Value::Unsigned(value) => out.write_all(itoa::Buffer::new().format(value).as_bytes())?,
            Value::Signed(value) => out.write_all(itoa::Buffer::new().format(value).as_bytes())?,
            Value::Float(value) => write!(out, "{}", Float(value))?,
            Value::Histogram { .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a histogram is written by FamilyWriter::histogram",
                ))
            }
        }
        out.write_all(b"\n")
    }

    /// Writes one histogram series: a `_bucket` sample per classic bucket (`bounds` are their
    /// `le` values, formatted), then `_sum` and `_count`.
    ///
    /// # Errors
    /// Only those of `out`.
    pub fn histogram(
        &mut self,
        label: Option<(&str, &str)>,
        bounds: &[String],
        classic: &[ClassicBucket],
        sum: f64,
    ) -> io::Result<()> {
        let (out, name) = (&mut *self.out, self.name.as_bytes());
        let mut digits = itoa::Buffer::new();
        for (le, bucket) in bounds.iter().zip(classic) {
            out.write_all(name)?;
            out.write_all(b"_bucket")?;
            write_labels(out, label, Some(le))?;
            out.write_all(b" ")?;
            out.write_all(digits.format(bucket.cumulative).as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.write_all(name)?;
        out.write_all(b"_sum")?;
        write_labels(out, label, None)?;
        writeln!(out, " {}", Float(sum))?;
        out.write_all(name)?;
        out.write_all(b"_count")?;
        write_labels(out, label, None)?;
        out.write_all(b" ")?;
        out.write_all(digits.format(classic.last().map_or(0, |b| b.cumulative)).as_bytes())?;
        out.write_all(b"\n")
    }
}

/// Writes `{label="value",le="bound"}`, the pairs there are (nothing without any).
fn write_labels<W: Write + ?Sized>(out: &mut W, label: Option<(&str, &str)>, le: Option<&str>) -> io::Result<()> {
    if label.is_none() && le.is_none() {
        return Ok(());
    }
    out.write_all(b"{")?;
    if let Some((name, value)) = label {
        out.write_all(name.as_bytes())?;
        out.write_all(b"=\"")?;
        write_escaped(out, value, true)?;
        out.write_all(b"\"")?;
    }
    if let Some(le) = le {
        out.write_all(if label.is_some() { b",le=\"" } else { b"le=\"" })?;
        out.write_all(le.as_bytes())?;
        out.write_all(b"\"")?;
    }
    out.write_all(b"}")
}

/// Escapes a label value; see [`write_escaped`].
pub fn escape_label_value(value: &str) -> String {
    escape(value, true)
}

/// Escapes HELP text; see [`write_escaped`].
pub fn escape_help(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, quoted: bool) -> String {
    let mut escaped = Vec::with_capacity(text.len());
    // Writing to a Vec cannot fail, and escapes are ASCII: the text stays UTF-8.
    let _ = write_escaped(&mut escaped, text, quoted);
    String::from_utf8(escaped).unwrap_or_default()
}

/// The one rule for text from the segment (coordinator and event names) and for HELP text,
/// written to `out` with its escapes (`quoted`: a label value, which also escapes `"`).
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
///
/// # Errors
/// Only those of `out`.
pub fn write_escaped<W: Write + ?Sized>(out: &mut W, text: &str, quoted: bool) -> io::Result<()> {
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        let escaped = matches!(c, '\\' | '\n' | '\u{2028}' | '\u{2029}') || (c == '"' && quoted) || c.is_control();
        if !escaped {
            continue;
        }
        out.write_all(&text.as_bytes()[plain..at])?;
        plain = at + c.len_utf8();
        match c {
            '\\' => out.write_all(b"\\\\")?,
            '"' => out.write_all(b"\\\"")?,
            '\n' => out.write_all(b"\\n")?,
            '\u{2028}' | '\u{2029}' => write!(out, "\\\\u{:04x}", u32::from(c))?,
            c => write!(out, "\\\\x{:02x}", u32::from(c))?,
        }
    }
    out.write_all(&text.as_bytes()[plain..])
}

/// A sample value or `le` bound as Prometheus writes it (`+Inf`, `-Inf`, `NaN`).
#[derive(Clone, Copy, Debug)]
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.0;
        if value.is_nan() {
            f.write_str("NaN")
        } else if value.is_infinite() {
            f.write_str(if value > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{value}")
        }
    }
}

/// Formats a sample value or `le` bound as Prometheus expects (`+Inf`, `-Inf`, `NaN`).
pub fn format_float(value: f64) -> String {
    Float(value).to_string()
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

    #[test]
    fn openmetrics_family_names_stay_unique_with_compat_names() {
        let report = crate::sample::sample_report();
        let options = PrometheusOptions { compat_names: true, ..PrometheusOptions::default() };
        let mut out = Vec::new();
        write_families(&mut out, &model::families(&report, &options), Resolution::DEFAULT, Dialect::OpenMetrics)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().map(|t| t.split(' ').next().unwrap()).collect();
        assert!(types.contains(&"victor_coordinator_duration_ms histogram"), "{text}");
        assert!(text.contains("victor_coordinator_duration_ms_bucket{coordinator="), "{text}");
        assert!(!text.contains("victor_coordinator_duration_ms_total"), "{text}");
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{text}");
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
