//! Settings of `coordmetrics run`: command-line flags > environment (`COORDMETRICS_*`) >
//! configuration file > built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use coordmetrics::{Capacities, OwnerPolicy, SegmentOptions};
use coordmetrics_proto::{LayoutError, MAX_CAPACITY};
use serde::Deserialize;

use coordmetrics::histogram::{self, Resolution};

use coordmetrics_report::format::native::{NativeOptions, MIN_SCHEMA};
use coordmetrics_report::format::prometheus::{is_valid_namespace, PrometheusOptions};
use coordmetrics_report::reporter::ReportOptions;
use coordmetrics_report::thresholds::{Measure, Thresholds};
use coordmetrics_report::DEFAULT_NAMESPACE;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/coordmetrics/config.toml";
/// Default Prometheus text file (Debian's textfile collector directory).
pub const DEFAULT_PROM: &str = "/var/lib/prometheus/node-exporter/coordmetrics.prom";
/// Default metrics.json.
pub const DEFAULT_JSON: &str = "/var/lib/coordmetrics/metrics.json";

/// Snapshot intervals accepted: below 10 ms the exporter would spin, and beyond a day a typo
/// (`1000y`) would overflow the clock arithmetic of the sidecar's loop.
const INTERVAL_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(86_400);
/// Snapshots kept in metrics.json's history: 10 000 points of a few hundred coordinators is
/// already tens of megabytes rewritten at every interval.
const HISTORY_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;

/// Flags of `coordmetrics run` (and `check-config`).
#[derive(Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); a missing default file is not an error.
    #[arg(long, env = "COORDMETRICS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Shared-memory segment to read [default: /dev/shm/coordmetrics].
    #[arg(long, env = "COORDMETRICS_SEGMENT", value_name = "PATH")]
    pub segment: Option<PathBuf>,
    /// Prometheus text file to rewrite, for node_exporter's textfile collector
    /// [default: /var/lib/prometheus/node-exporter/coordmetrics.prom]; `prom = ""` in the
    /// configuration file disables it. Outputs are replaced atomically (temporary file beside
    /// them, then rename); a symbolic link is followed and the file it points to is replaced in
    /// its own directory, so the link stays; a directory, FIFO, socket or device is never
    /// replaced (the write fails and is counted); `-` or /dev/stdout writes to standard output.
    #[arg(long, env = "COORDMETRICS_PROM", value_name = "PATH")]
    pub prom: Option<PathBuf>,
    /// metrics.json to rewrite, for the dashboard [default: /var/lib/coordmetrics/metrics.json];
    /// `json = ""` in the configuration file disables it. Written like --prom.
    #[arg(long, env = "COORDMETRICS_JSON", value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Time between snapshots, e.g. 500ms, 10s, 1m [default: 10s].
    #[arg(long, env = "COORDMETRICS_INTERVAL", value_name = "DURATION")]
    pub interval: Option<String>,
    /// Serve /metrics, /metrics.json, /healthz and the dashboard on this address, e.g.
    /// 127.0.0.1:9464 (a bare port binds 127.0.0.1).
    #[arg(long, env = "COORDMETRICS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Prefix of the coordinator metric names [default: victor_coordinator].
    #[arg(long, env = "COORDMETRICS_NAMESPACE", value_name = "NAME")]
    pub namespace: Option<String>,
    /// Also emit the original collector's names (_duration_ms_total, _cache_hit_rate,
    /// _total_executions) for dashboards built on them. promtool's linter flags the _ms unit
    /// of the first; the default names are lint-clean.
    #[arg(long, env = "COORDMETRICS_COMPAT_NAMES")]
    pub compat_names: bool,
    /// Classic histogram buckets per power of two: 1, 2, 4 or 8 [default: 4]. 4 keeps
    /// PromQL's histogram_quantile within about 19% of the true value; fewer buckets means
    /// fewer series and coarser quantiles.
    #[arg(long, env = "COORDMETRICS_BUCKET_RESOLUTION", value_name = "N")]
    pub bucket_resolution: Option<u32>,
    /// Schema of the native histogram served on /metrics to scrapers that ask for protobuf:
    /// 3 (the segment's own 8 buckets per power of two, under 4.4% error) down to 0 (1 bucket
    /// per power of two), merged exactly [default: 3].
    #[arg(long, env = "COORDMETRICS_NATIVE_HISTOGRAM_SCHEMA", value_name = "N")]
    pub native_histogram_schema: Option<i32>,
    /// Most populated buckets of a native histogram series: the schema is lowered (down to 0)
    /// until a series fits; 0 for no limit [default: 0].
    #[arg(long, env = "COORDMETRICS_NATIVE_HISTOGRAM_MAX_BUCKETS", value_name = "N")]
    pub native_histogram_max_buckets: Option<u32>,
    /// Snapshots kept in metrics.json's history [default: 120].
    #[arg(long, env = "COORDMETRICS_HISTORY", value_name = "N")]
    pub history: Option<usize>,
    /// Create the segment if it does not exist (with the capacities of the config file).
    #[arg(long, env = "COORDMETRICS_CREATE")]
    pub create: bool,
}

/// The configuration file's contents. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    segment: Option<PathBuf>,
    prom: Option<PathBuf>,
    json: Option<PathBuf>,
    interval: Option<String>,
    listen: Option<String>,
    namespace: Option<String>,
    compat_names: Option<bool>,
    bucket_resolution: Option<u32>,
    native_histogram_schema: Option<i32>,
    native_histogram_max_buckets: Option<u32>,
    history: Option<usize>,
    create_segment: Option<bool>,
    segment_mode: Option<String>,
    segment_group: Option<String>,
    trusted_owners: Option<Vec<String>>,
    capacity: Option<CapacityConfig>,
    thresholds: Option<Thresholds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityConfig {
    coordinators: Option<u32>,
    events: Option<u32>,
    writers: Option<u32>,
    errors: Option<u32>,
}

/// Everything `run` needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    /// Segment path.
    pub segment: PathBuf,
    /// Prometheus text output.
    pub prom: Option<PathBuf>,
    /// metrics.json output.
    pub json: Option<PathBuf>,
    /// Snapshot interval.
    pub interval: Duration,
    /// HTTP listener.
    pub listen: Option<SocketAddr>,
    /// Formatter settings.
    pub prometheus: PrometheusOptions,
    /// Native histogram settings (protobuf exposition).
    pub native: NativeOptions,
    /// Report settings.
    pub report: ReportOptions,
    /// Create the segment if absent.
    pub create_segment: bool,
    /// How to open or create the segment.
    pub segment_options: SegmentOptions,
}

impl Settings {
    /// Resolves `args` against the configuration file and the defaults.
    ///
    /// # Errors
    /// An unreadable or invalid configuration file (naming the key and line), or an invalid
    /// value.
    pub fn resolve(args: &RunArgs) -> anyhow::Result<Self> {
        let (config_file, file) = match &args.config {
            Some(path) => (Some(path.clone()), load(path)?),
            None if Path::new(DEFAULT_CONFIG).exists() => {
                (Some(DEFAULT_CONFIG.into()), load(Path::new(DEFAULT_CONFIG))?)
            }
            None => (None, FileConfig::default()),
        };
        let optional_path = |path: PathBuf| (!path.as_os_str().is_empty()).then_some(path);
        let interval_text = args.interval.clone().or(file.interval).unwrap_or_else(|| "10s".into());
        let interval = parse_duration(&interval_text).with_context(|| format!("invalid interval {interval_text:?}"))?;
        if !INTERVAL_RANGE.contains(&interval) {
            bail!("interval = {interval_text:?}: must be from 10ms to 24h");
        }
        let listen = args.listen.clone().or(file.listen).map(|text| parse_listen(&text)).transpose()?;
        let namespace = args.namespace.clone().or(file.namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !is_valid_namespace(&namespace) {
            bail!("invalid namespace {namespace:?}: use letters, digits, '_' and ':', not starting with a digit");
        }
        let bucket_resolution = match args.bucket_resolution.or(file.bucket_resolution) {
            None => Resolution::DEFAULT,
            Some(n) => Resolution::new(n)
                .map_err(|_| anyhow::anyhow!("bucket_resolution = {n}: must be {}", Resolution::SUPPORTED))?,
        };
        let defaults = NativeOptions::default();
        let schema = args.native_histogram_schema.or(file.native_histogram_schema).unwrap_or(defaults.schema);
        if !(MIN_SCHEMA..=histogram::SCHEMA).contains(&schema) {
            bail!("native_histogram_schema = {schema}: must be from {MIN_SCHEMA} to {}", histogram::SCHEMA);
        }
        let native = NativeOptions {
            schema,
            max_buckets: args
                .native_histogram_max_buckets
                .or(file.native_histogram_max_buckets)
                .unwrap_or(defaults.max_buckets),
        };
        let history = args.history.or(file.history).unwrap_or(120);
        if !HISTORY_RANGE.contains(&history) {
            bail!("history = {history}: must keep from {} to {} snapshots", HISTORY_RANGE.start(), HISTORY_RANGE.end());
        }
        let thresholds = file.thresholds.unwrap_or_default();
        validate_thresholds(&thresholds)?;
        let mode_text = file.segment_mode.unwrap_or_else(|| "0660".into());
        let mode = u32::from_str_radix(mode_text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .with_context(|| format!("invalid segment_mode {mode_text:?}: use octal such as \"0660\""))?;
        if mode & 0o002 != 0 {
            bail!("segment_mode {mode_text} would make the segment writable by every user");
        }
        let group = file
            .segment_group
            .map(|name| coordmetrics::group_gid(&name).with_context(|| format!("unknown segment_group {name:?}")))
            .transpose()?;
        let owners = match file.trusted_owners {
            None => OwnerPolicy::Default,
            Some(names) => OwnerPolicy::Users(
                names
                    .iter()
                    .map(|name| {
                        name.parse()
                            .ok()
                            .or_else(|| coordmetrics::system_user_uid(name))
                            .with_context(|| format!("unknown user {name:?} in trusted_owners"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
        };
        let defaults = Capacities::default();
        let capacities = file.capacity.map_or(defaults, |c| Capacities {
            coordinators: c.coordinators.unwrap_or(defaults.coordinators),
            events: c.events.unwrap_or(defaults.events),
            writers: c.writers.unwrap_or(defaults.writers),
            errors: c.errors.unwrap_or(defaults.errors),
        });
        coordmetrics_proto::Layout::new(capacities).map_err(|error| match error {
            LayoutError::Capacity { what, value } => {
                anyhow::anyhow!("[capacity] {what} = {value}: must be from 1 to {MAX_CAPACITY}")
            }
            LayoutError::TooLarge(_) => anyhow::anyhow!("[capacity]: {error}"),
        })?;
        Ok(Self {
            config_file,
            segment: args.segment.clone().or(file.segment).unwrap_or_else(|| coordmetrics::DEFAULT_SEGMENT_PATH.into()),
            prom: optional_path(args.prom.clone().or(file.prom).unwrap_or_else(|| DEFAULT_PROM.into())),
            json: optional_path(args.json.clone().or(file.json).unwrap_or_else(|| DEFAULT_JSON.into())),
            interval,
            listen,
            prometheus: PrometheusOptions {
                namespace,
                compat_names: args.compat_names || file.compat_names.unwrap_or(false),
                bucket_resolution,
            },
            native,
            report: ReportOptions { thresholds, history, interval },
            create_segment: args.create || file.create_segment.unwrap_or(false),
            segment_options: SegmentOptions { capacities, mode, group, owners, ..SegmentOptions::default() },
        })
    }
}

fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read configuration {}", path.display()))?;
    toml::from_str(&text).map_err(|error| anyhow::anyhow!("invalid configuration {}: {error}", path.display()))
}

/// Refuses thresholds that no measurement can be compared with (NaN, infinite, negative, a rate
/// outside 0..1) and pairs whose warning level is beyond their critical level.
fn validate_thresholds(t: &Thresholds) -> anyhow::Result<()> {
    for measure in Measure::ALL {
        let keys = measure.keys();
        let levels = t.levels(measure);
        // An infinity is outside both ranges, and a NaN is in no range.
        let (range, expected) = if measure.is_fraction() {
            (0.0..=1.0, "a number from 0 to 1")
        } else {
            (0.0..=f64::MAX, "a finite number >= 0")
        };
        for (key, value) in keys.iter().zip(levels) {
            if !range.contains(&value) {
                bail!("[thresholds] {key} = {value}: must be {expected}");
            }
        }
        let ([warning_key, critical_key], [warning, critical]) = (keys, levels);
        let direction = measure.direction();
        if direction.beyond(warning, critical) {
            bail!(
                "[thresholds] {warning_key} = {warning} must be {} {critical_key} = {critical}: \
                 the warning level comes before the critical one",
                direction.warning_relation()
            );
        }
    }
    Ok(())
}

/// Parses durations such as `500ms`, `10s`, `1m 30s`.
///
/// # Errors
/// Not a duration.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    Ok(humantime::parse_duration(text.trim())?)
}

/// Parses a command-line duration that must be longer than zero (for clap's `value_parser`).
///
/// # Errors
/// Not a duration, or zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(duration) if duration > Duration::ZERO => Ok(duration),
        Ok(_) => Err("must be longer than zero".into()),
        Err(error) => Err(error.to_string()),
    }
}

/// Parses a listen address; a bare port means 127.0.0.1.
///
/// # Errors
/// Not an address or port.
pub fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().with_context(|| format!("invalid listen address {text:?}: use HOST:PORT, e.g. 127.0.0.1:9464"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(contents: &str) -> (tempfile::TempDir, RunArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, contents).unwrap();
        (dir, RunArgs { config: Some(path), ..RunArgs::default() })
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let (_dir, mut args) =
            with_file("interval = \"2s\"\nnamespace = \"from_file\"\n[thresholds]\np95_warning_ms = 50.0\n");
        args.namespace = Some("from_flag".into());
        let settings = Settings::resolve(&args).unwrap();
        assert_eq!(settings.interval, Duration::from_secs(2));
        assert_eq!(settings.prometheus.namespace, "from_flag");
        assert_eq!(settings.report.thresholds.p95_warning_ms, 50.0);
        assert_eq!(settings.report.thresholds.p95_critical_ms, 200.0);
        assert_eq!(settings.prometheus.bucket_resolution, Resolution::DEFAULT);
        assert_eq!(settings.native, NativeOptions { schema: 3, max_buckets: 0 });
    }

    #[test]
    fn the_packaged_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config.toml");
        let settings = Settings::resolve(&RunArgs { config: Some(path), ..RunArgs::default() }).unwrap();
        assert_eq!(settings.native, NativeOptions::default());
    }

    #[test]
    fn native_histogram_settings_from_file_and_flags() {
        let (_dir, mut args) = with_file("native_histogram_schema = 1\nnative_histogram_max_buckets = 40\n");
        assert_eq!(Settings::resolve(&args).unwrap().native, NativeOptions { schema: 1, max_buckets: 40 });
        args.native_histogram_schema = Some(0);
        assert_eq!(Settings::resolve(&args).unwrap().native, NativeOptions { schema: 0, max_buckets: 40 });
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let (_dir, args) = with_file("interval = \"2s\"\nintreval = \"3s\"\n");
        let error = Settings::resolve(&args).unwrap_err().to_string();
        assert!(error.contains("intreval") && error.contains("line 2"), "{error}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, expected) in [
            ("interval = \"soon\"", "invalid interval"),
            ("native_histogram_schema = 4", "native_histogram_schema = 4: must be from 0 to 3"),
            ("native_histogram_schema = -1", "native_histogram_schema"),
            ("native_histogram_max_buckets = -1", "native_histogram_max_buckets"),
            ("segment_mode = \"0666\"", "writable by every user"),
            ("namespace = \"9x\"", "invalid namespace"),
            ("listen = \"nowhere\"", "listen address"),
        ] {
            let (_dir, args) = with_file(text);
            let error = format!("{:#}", Settings::resolve(&args).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    fn refusal(contents: &str) -> String {
        let (_dir, args) = with_file(contents);
        format!("{:#}", Settings::resolve(&args).expect_err(contents))
    }

    const THRESHOLD_KEYS: [(&str, bool); 8] = [
        ("p95_warning_ms", false),
        ("p95_critical_ms", false),
        ("error_rate_warning", true),
        ("error_rate_critical", true),
        ("cache_hit_rate_warning", true),
        ("cache_hit_rate_critical", true),
        ("memory_growth_warning_mb_per_hour", false),
        ("memory_growth_critical_mb_per_hour", false),
    ];

    #[test]
    fn every_threshold_refuses_negative_nan_and_infinite_values_by_name() {
        for (key, is_rate) in THRESHOLD_KEYS {
            let mut values = vec![("-1.0", "-1"), ("nan", "NaN"), ("inf", "inf"), ("-inf", "-inf")];
            if is_rate {
                values.push(("1.5", "1.5"));
            }
            let expected = if is_rate { "must be a number from 0 to 1" } else { "must be a finite number >= 0" };
            for (written, shown) in values {
                let error = refusal(&format!("[thresholds]\n{key} = {written}\n"));
                assert_eq!(error, format!("[thresholds] {key} = {shown}: {expected}"));
            }
        }
    }

    #[test]
    fn warning_must_come_before_critical() {
        for (pair, relation) in [
            (
                "p95_warning_ms = 300.0\np95_critical_ms = 200.0",
                "p95_warning_ms = 300 must be <= p95_critical_ms = 200",
            ),
            (
                "error_rate_warning = 0.5\nerror_rate_critical = 0.1",
                "error_rate_warning = 0.5 must be <= error_rate_critical = 0.1",
            ),
            (
                "cache_hit_rate_warning = 0.4\ncache_hit_rate_critical = 0.6",
                "cache_hit_rate_warning = 0.4 must be >= cache_hit_rate_critical = 0.6",
            ),
            (
                "memory_growth_warning_mb_per_hour = 20.0",
                "memory_growth_warning_mb_per_hour = 20 must be <= memory_growth_critical_mb_per_hour = 10",
            ),
        ] {
            let error = refusal(&format!("[thresholds]\n{pair}\n"));
            assert!(error.starts_with(&format!("[thresholds] {relation}: ")), "{error}");
        }
        // Equal levels are allowed: the status goes straight to critical.
        let (_dir, args) = with_file("[thresholds]\np95_warning_ms = 0.0\np95_critical_ms = 0.0\n");
        assert!(Settings::resolve(&args).is_ok());
    }

    #[test]
    fn out_of_range_numbers_name_their_key() {
        for (text, expected) in [
            ("interval = \"5ms\"", "interval = \"5ms\": must be from 10ms to 24h"),
            ("interval = \"1000years\"", "interval = \"1000years\": must be from 10ms to 24h"),
            ("history = 0", "history = 0: must keep from 1 to 10000 snapshots"),
            ("history = 10001", "history = 10001: must keep from 1 to 10000 snapshots"),
            ("bucket_resolution = 3", "bucket_resolution = 3: must be 1, 2, 4 or 8"),
            ("[capacity]\ncoordinators = 0", "[capacity] coordinators = 0: must be from 1 to 65536"),
            ("[capacity]\nwriters = 70000", "[capacity] writers = 70000: must be from 1 to 65536"),
        ] {
            assert_eq!(refusal(text), expected);
        }
        // Negative counts fail in the TOML decoder, which names the key and line.
        for (text, key) in [
            ("history = -1", "history"),
            ("bucket_resolution = -4", "bucket_resolution"),
            ("[capacity]\nerrors = -1", "errors"),
        ] {
            let error = refusal(text);
            assert!(error.contains(key) && error.contains("line"), "{text}: {error}");
        }
    }

    #[test]
    fn command_line_durations_must_be_positive() {
        assert_eq!(positive_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("soon").is_err());
    }

    #[test]
    fn a_bare_port_listens_on_loopback() {
        assert_eq!(parse_listen("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
    }
}
