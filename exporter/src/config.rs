//! Settings of `coordmetrics run`: command-line flags > environment (`COORDMETRICS_*`) >
//! configuration file > built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use coordmetrics::{Capacities, OwnerPolicy, SegmentOptions};
use serde::Deserialize;

use coordmetrics::histogram;

use crate::format::native::{NativeOptions, MIN_SCHEMA};
use crate::format::prometheus::{is_valid_namespace, PrometheusOptions};
use crate::report::{ReportOptions, Thresholds};

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/coordmetrics/config.toml";
/// Default Prometheus text file (Debian's textfile collector directory).
pub const DEFAULT_PROM: &str = "/var/lib/prometheus/node-exporter/coordmetrics.prom";
/// Default metrics.json.
pub const DEFAULT_JSON: &str = "/var/lib/coordmetrics/metrics.json";

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
    /// configuration file disables it.
    #[arg(long, env = "COORDMETRICS_PROM", value_name = "PATH")]
    pub prom: Option<PathBuf>,
    /// metrics.json to rewrite, for the dashboard [default: /var/lib/coordmetrics/metrics.json];
    /// `json = ""` in the configuration file disables it.
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
        if interval < Duration::from_millis(10) {
            bail!("interval {interval_text} is below the 10ms minimum");
        }
        let listen = args.listen.clone().or(file.listen).map(|text| parse_listen(&text)).transpose()?;
        let namespace = args.namespace.clone().or(file.namespace).unwrap_or_else(|| "victor_coordinator".into());
        if !is_valid_namespace(&namespace) {
            bail!("invalid namespace {namespace:?}: use letters, digits, '_' and ':', not starting with a digit");
        }
        let bucket_resolution = args.bucket_resolution.or(file.bucket_resolution).unwrap_or(4);
        if !histogram::RESOLUTIONS.contains(&bucket_resolution) {
            bail!("invalid bucket resolution {bucket_resolution}: use 1, 2, 4 or 8");
        }
        let defaults = NativeOptions::default();
        let schema = args.native_histogram_schema.or(file.native_histogram_schema).unwrap_or(defaults.schema);
        if !(MIN_SCHEMA..=histogram::SCHEMA).contains(&schema) {
            bail!("invalid native_histogram_schema {schema}: use {MIN_SCHEMA} to {}", histogram::SCHEMA);
        }
        let native = NativeOptions {
            schema,
            max_buckets: args
                .native_histogram_max_buckets
                .or(file.native_histogram_max_buckets)
                .unwrap_or(defaults.max_buckets),
        };
        let history = args.history.or(file.history).unwrap_or(120);
        if history == 0 {
            bail!("history must keep at least one snapshot");
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
        coordmetrics_proto::Layout::new(capacities).context("invalid [capacity]")?;
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

fn validate_thresholds(t: &Thresholds) -> anyhow::Result<()> {
    let pairs = [
        ("p95", t.p95_warning_ms, t.p95_critical_ms, true),
        ("error_rate", t.error_rate_warning, t.error_rate_critical, true),
        ("cache_hit_rate", t.cache_hit_rate_warning, t.cache_hit_rate_critical, false),
        ("memory_growth", t.memory_growth_warning_mb_per_hour, t.memory_growth_critical_mb_per_hour, true),
    ];
    for (name, warning, critical, higher_is_worse) in pairs {
        let ordered = if higher_is_worse { warning <= critical } else { warning >= critical };
        if !warning.is_finite() || !critical.is_finite() || !ordered {
            bail!("[thresholds] {name}: warning {warning} must come before critical {critical}");
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
        assert_eq!(settings.prometheus.bucket_resolution, 4);
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
            ("bucket_resolution = 3", "bucket resolution"),
            ("native_histogram_schema = 4", "native_histogram_schema"),
            ("native_histogram_schema = -1", "native_histogram_schema"),
            ("native_histogram_max_buckets = -1", "native_histogram_max_buckets"),
            ("segment_mode = \"0666\"", "writable by every user"),
            ("namespace = \"9x\"", "invalid namespace"),
            ("[thresholds]\np95_warning_ms = 300.0", "p95"),
            ("listen = \"nowhere\"", "listen address"),
        ] {
            let (_dir, args) = with_file(text);
            let error = format!("{:#}", Settings::resolve(&args).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
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
