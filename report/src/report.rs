//! From snapshots to a report: per-coordinator totals, rates between snapshots, quantiles,
//! memory and CPU attribution, status against thresholds, and a bounded history.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coordmetrics::histogram;
use coordmetrics::{Capacities, CoordinatorTotals, Dropped, SegmentInfo, Snapshot};
use serde::{Deserialize, Serialize};

/// Thresholds that decide a coordinator's status; also published in metrics.json so the
/// dashboard colours by the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// p95 latency above which a coordinator is in warning, in milliseconds.
    pub p95_warning_ms: f64,
    /// p95 latency above which a coordinator is in error, in milliseconds.
    pub p95_critical_ms: f64,
    /// Error rate (0..1) above which a coordinator is in warning.
    pub error_rate_warning: f64,
    /// Error rate (0..1) above which a coordinator is in error.
    pub error_rate_critical: f64,
    /// Cache hit rate (0..1) below which a coordinator is in warning.
    pub cache_hit_rate_warning: f64,
    /// Cache hit rate (0..1) below which a coordinator is in error.
    pub cache_hit_rate_critical: f64,
    /// Memory growth above which a coordinator is in warning, MB (10^6 bytes) per hour.
    pub memory_growth_warning_mb_per_hour: f64,
    /// Memory growth above which a coordinator is in error, MB per hour.
    pub memory_growth_critical_mb_per_hour: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            p95_warning_ms: 100.0,
            p95_critical_ms: 200.0,
            error_rate_warning: 0.01,
            error_rate_critical: 0.05,
            cache_hit_rate_warning: 0.70,
            cache_hit_rate_critical: 0.50,
            memory_growth_warning_mb_per_hour: 5.0,
            memory_growth_critical_mb_per_hour: 10.0,
        }
    }
}

/// Health of a coordinator against the thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every threshold met.
    Healthy,
    /// A warning threshold crossed.
    Warning,
    /// A critical threshold crossed.
    Error,
}

/// Where a coordinator's memory figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemorySource {
    /// Set by the client with `set_memory_bytes`.
    Explicit,
    /// Resident memory of the live processes hosting it, shared among their coordinators.
    Process,
    /// Unknown (no live host).
    None,
}

/// One coordinator in a report.
#[derive(Clone, Debug, PartialEq)]
pub struct CoordinatorReport {
    /// What the segment holds for it.
    pub totals: CoordinatorTotals,
    /// Memory in bytes, if known.
    pub memory_bytes: Option<u64>,
    /// Where `memory_bytes` comes from.
    pub memory_source: MemorySource,
    /// CPU use of its host processes' share, percent of one core.
    pub cpu_percent: Option<f64>,
    /// Mean duration, ms.
    pub avg_ms: Option<f64>,
    /// Median over all recorded executions, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile over all recorded executions, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile over all recorded executions, ms.
    pub p99_ms: Option<f64>,
    /// Failed / executions (0..1).
    pub error_rate: f64,
    /// Hits / (hits + misses), if any cache traffic.
    pub cache_hit_rate: Option<f64>,
    /// Executions per second since the previous snapshot.
    pub throughput_per_sec: f64,
    /// Memory growth over the history window, MB per hour.
    pub memory_growth_mb_per_hour: Option<f64>,
    /// Status against the thresholds.
    pub status: Status,
    /// Which thresholds were crossed.
    pub status_reasons: Vec<String>,
}

/// One point of the history kept in metrics.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// When the snapshot was taken (RFC 3339).
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// Seconds since the previous point.
    pub interval_seconds: f64,
    /// Per coordinator.
    pub coordinators: std::collections::BTreeMap<String, HistoryEntry>,
}

/// A history point and its JSON, rendered once when the point is recorded: metrics.json
/// carries up to `--history` points, and rendering them all again at every snapshot would be
/// most of the exporter's work.
#[derive(Debug)]
pub struct RecordedPoint {
    /// The point.
    pub point: HistoryPoint,
    /// Its JSON (`None` in the impossible case that it cannot be serialized).
    pub json: Option<Box<serde_json::value::RawValue>>,
}

impl RecordedPoint {
    fn new(point: HistoryPoint) -> Arc<Self> {
        let json = serde_json::value::to_raw_value(&point).ok();
        Arc::new(Self { point, json })
    }
}

/// One coordinator at one history point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Cumulative executions.
    pub executions: u64,
    /// Cumulative errors.
    pub errors: u64,
    /// Executions per second over the interval.
    pub throughput_per_sec: f64,
    /// p95 over the interval, ms (`None` if the interval had no executions).
    pub p95_ms: Option<f64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
}

/// An error from the ring, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReport {
    /// When it was recorded.
    pub time: SystemTime,
    /// Coordinator name (empty if unknown).
    pub coordinator: String,
    /// Recording process.
    pub pid: u32,
    /// Message.
    pub message: String,
}

/// How the exporter itself is doing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Whether the last snapshot succeeded.
    pub up: bool,
    /// Time of the last successful snapshot.
    pub last_success: Option<SystemTime>,
    /// How long the last snapshot and rendering took.
    pub snapshot_duration: Duration,
    /// Failed snapshots since start.
    pub snapshot_errors: u64,
    /// Failed file writes since start.
    pub write_errors: u64,
    /// The last problem, if the last snapshot or write failed.
    pub last_error: Option<String>,
}

/// Everything the formatters need.
#[derive(Clone, Debug)]
pub struct Report {
    /// When the snapshot was taken.
    pub timestamp: SystemTime,
    /// The segment.
    pub segment: SegmentInfo,
    /// Configured snapshot interval.
    pub interval: Duration,
    /// Time since the exporter started.
    pub exporter_uptime: Duration,
    /// Per coordinator, sorted by name.
    pub coordinators: Vec<CoordinatorReport>,
    /// Analytics events, sorted by name.
    pub events: Vec<(String, u64)>,
    /// Writer slots owned by live processes.
    pub live_writers: usize,
    /// Writer slots ever claimed.
    pub used_writers: usize,
    /// Error ring entries in use.
    pub used_errors: usize,
    /// Blocks of the segment's pool in use, and its capacity.
    pub used_blocks: (u32, u32),
    /// What clients could not record.
    pub dropped: Dropped,
    /// Recent errors, newest first.
    pub recent_errors: Vec<ErrorReport>,
    /// Oldest first.
    pub history: Vec<Arc<RecordedPoint>>,
    /// Thresholds applied.
    pub thresholds: Thresholds,
    /// The exporter's own health.
    pub health: Health,
    /// Whether this is sample data rather than a real segment.
    pub demo: bool,
}

impl Report {
    /// Capacities of the segment.
    pub fn capacities(&self) -> Capacities {
        self.segment.capacities
    }

    /// Sum of executions.
    pub fn total_executions(&self) -> u64 {
        saturating_sum(self.coordinators.iter().map(|c| c.totals.executions))
    }

    /// Sum of errors.
    pub fn total_errors(&self) -> u64 {
        saturating_sum(self.coordinators.iter().map(|c| c.totals.errors))
    }

    /// Sum of throughputs.
    pub fn total_throughput(&self) -> f64 {
        self.coordinators.iter().map(|c| c.throughput_per_sec).sum()
    }
}

/// Settings of a [`Reporter`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReportOptions {
    /// Thresholds for status.
    pub thresholds: Thresholds,
    /// History points kept.
    pub history: usize,
    /// Snapshot interval (published for staleness checks).
    pub interval: Duration,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { thresholds: Thresholds::default(), history: 120, interval: Duration::from_secs(10) }
    }
}

#[derive(Debug)]
struct Previous {
    time: SystemTime,
    segment_id: u64,
    per_coordinator: HashMap<String, (u64, Vec<u64>)>,
    /// CPU time of each live process (by token) at the previous snapshot.
    cpu: HashMap<u64, Duration>,
}

/// Turns successive snapshots into reports, remembering what rates and history need.
#[derive(Debug)]
pub struct Reporter {
    options: ReportOptions,
    started: SystemTime,
    previous: Option<Previous>,
    history: VecDeque<Arc<RecordedPoint>>,
}

impl Reporter {
    /// A reporter that started now.
    pub fn new(options: ReportOptions) -> Self {
        Self::starting_at(options, SystemTime::now())
    }

    /// A reporter whose uptime counts from `started`.
    pub fn starting_at(options: ReportOptions, started: SystemTime) -> Self {
        Self { options, started, previous: None, history: VecDeque::new() }
    }

    /// Replaces the options (on reload); history and rates carry on.
    pub fn set_options(&mut self, options: ReportOptions) {
        self.options = options;
        self.trim_history();
    }

    /// The options in force.
    pub fn options(&self) -> &ReportOptions {
        &self.options
    }

    /// Seeds the history, e.g. from the previous metrics.json after a restart.
    pub fn restore_history(&mut self, points: Vec<HistoryPoint>) {
        self.history = points.into_iter().map(RecordedPoint::new).collect();
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.options.history {
            self.history.pop_front();
        }
    }

    /// Builds the report for `snapshot`.
    ///
    /// Memory and CPU of the processes that host a coordinator come from the snapshot: every
    /// writer publishes its own in its slot, so no other process's `/proc` is read.
    pub fn report(&mut self, snapshot: &Snapshot) -> Report {
        let now = snapshot.taken_at;
        let previous = self.previous.take().filter(|p| p.segment_id == snapshot.info.segment_id);
        // Without a previous snapshot, rates are averages since the segment was created.
        let (since, elapsed) = match &previous {
            Some(p) => (Some(p), now.duration_since(p.time).unwrap_or_default()),
            None => (None, now.duration_since(snapshot.info.created).unwrap_or_default()),
        };
        let seconds = elapsed.as_secs_f64();

        let stats: HashMap<u64, (u64, Duration)> =
            snapshot.processes.iter().map(|p| (p.process, (p.rss_bytes, p.cpu_time))).collect();
        let hosted_by =
            |process: u64| snapshot.coordinators.iter().filter(|c| c.hosts.contains(&process)).count().max(1);

        let mut coordinators = Vec::with_capacity(snapshot.coordinators.len());
        let mut history_entries = std::collections::BTreeMap::new();
        for totals in &snapshot.coordinators {
            let (before_executions, before_buckets) = since
                .and_then(|p| p.per_coordinator.get(&totals.name))
                .filter(|(executions, _)| *executions <= totals.executions)
                .map_or((0, None), |(e, b)| (*e, Some(b)));
            let window: Vec<u64> = match before_buckets {
                Some(before) => {
                    totals.buckets.iter().zip(before).map(|(now, then)| now.saturating_sub(*then)).collect()
                }
                None => totals.buckets.clone(),
            };
            let throughput = if seconds > 0.0 { (totals.executions - before_executions) as f64 / seconds } else { 0.0 };

            let (memory_bytes, memory_source) = match totals.explicit_memory_bytes {
                Some(bytes) => (Some(bytes), MemorySource::Explicit),
                None if totals.hosts.iter().any(|pid| stats.contains_key(pid)) => (
                    Some(saturating_sum(
                        totals.hosts.iter().filter_map(|pid| Some(stats.get(pid)?.0 / hosted_by(*pid) as u64)),
                    )),
                    MemorySource::Process,
                ),
                None => (None, MemorySource::None),
            };
            let cpu_percent = since.filter(|_| seconds > 0.0).and_then(|p| {
                let shares: Vec<f64> = totals
                    .hosts
                    .iter()
                    .filter_map(|pid| {
                        let used = stats.get(pid)?.1.checked_sub(*p.cpu.get(pid)?)?;
                        Some(used.as_secs_f64() / seconds * 100.0 / hosted_by(*pid) as f64)
                    })
                    .collect();
                (!shares.is_empty()).then(|| shares.iter().sum())
            });

            let quantile_ms = |q| histogram::quantile(&totals.buckets, q).map(|s| s * 1e3);
            let mut report = CoordinatorReport {
                totals: totals.clone(),
                memory_bytes,
                memory_source,
                cpu_percent,
                avg_ms: (totals.executions > 0).then(|| totals.duration_sum_ns as f64 / totals.executions as f64 / 1e6),
                p50_ms: quantile_ms(0.5),
                p95_ms: quantile_ms(0.95),
                p99_ms: quantile_ms(0.99),
                error_rate: ratio(totals.errors, totals.executions).unwrap_or(0.0).min(1.0),
                cache_hit_rate: ratio(totals.cache_hits, totals.cache_hits.saturating_add(totals.cache_misses)),
                throughput_per_sec: throughput,
                memory_growth_mb_per_hour: None,
                status: Status::Healthy,
                status_reasons: Vec::new(),
            };
            history_entries.insert(
                totals.name.clone(),
                HistoryEntry {
                    executions: totals.executions,
                    errors: totals.errors,
                    throughput_per_sec: throughput,
                    p95_ms: histogram::quantile(&window, 0.95).map(|s| s * 1e3),
                    memory_bytes,
                },
            );
            report.memory_growth_mb_per_hour = self.memory_growth(&totals.name, now, memory_bytes);
            (report.status, report.status_reasons) = assess(&report, &self.options.thresholds);
            coordinators.push(report);
        }

        self.history.push_back(RecordedPoint::new(HistoryPoint {
            timestamp: now,
            interval_seconds: seconds,
            coordinators: history_entries,
        }));
        self.trim_history();
        self.previous = Some(Previous {
            time: now,
            segment_id: snapshot.info.segment_id,
            per_coordinator: snapshot
                .coordinators
                .iter()
                .map(|c| (c.name.clone(), (c.executions, c.buckets.clone())))
                .collect(),
            cpu: stats.iter().map(|(process, (_, cpu))| (*process, *cpu)).collect(),
        });

        Report {
            timestamp: now,
            segment: snapshot.info.clone(),
            interval: self.options.interval,
            exporter_uptime: now.duration_since(self.started).unwrap_or_default(),
            coordinators,
            events: snapshot.events.clone(),
            live_writers: snapshot.live_writers(),
            used_writers: snapshot.writers.len(),
            used_errors: snapshot.errors.len(),
            used_blocks: snapshot.blocks_in_use,
            dropped: snapshot.dropped,
            recent_errors: snapshot
                .errors
                .iter()
                .map(|e| ErrorReport {
                    time: e.time,
                    coordinator: e.coordinator_name.clone().unwrap_or_default(),
                    pid: e.pid,
                    message: e.message.clone(),
                })
                .collect(),
            history: self.history.iter().cloned().collect(),
            thresholds: self.options.thresholds,
            health: Health { up: true, last_success: Some(now), ..Health::default() },
            demo: false,
        }
    }

    /// Growth of `name`'s memory from the oldest history point that has it to now, in MB per
    /// hour; `None` until the history spans at least a minute.
    fn memory_growth(&self, name: &str, now: SystemTime, memory: Option<u64>) -> Option<f64> {
        let memory = memory?;
        let (then, earlier) = self.history.iter().find_map(|recorded| {
            let point = &recorded.point;
            Some((point.timestamp, point.coordinators.get(name)?.memory_bytes?))
        })?;
        let hours = now.duration_since(then).ok()?.as_secs_f64() / 3600.0;
        (hours >= 1.0 / 60.0).then(|| (memory as f64 - earlier as f64) / 1e6 / hours)
    }
}

/// Sums counters without overflowing: a corrupt segment can hold any values, and the report
/// must still be made (and never panic).
pub fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, u64::saturating_add)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Status of a coordinator: the worst of the four thresholds, with the reasons.
pub fn assess(report: &CoordinatorReport, t: &Thresholds) -> (Status, Vec<String>) {
    let mut status = Status::Healthy;
    let mut reasons = Vec::new();
    let mut check = |value: Option<f64>,
                     warning: f64,
                     critical: f64,
                     higher_is_worse: bool,
                     describe: &dyn Fn(f64, f64) -> String| {
        let Some(value) = value else { return };
        let beyond = |limit: f64| if higher_is_worse { value > limit } else { value < limit };
        let level = if beyond(critical) {
            Some((Status::Error, critical))
        } else if beyond(warning) {
            Some((Status::Warning, warning))
        } else {
            None
        };
        if let Some((level, limit)) = level {
            status = status.max(level);
            reasons.push(describe(value, limit));
        }
    };
    check(report.p95_ms, t.p95_warning_ms, t.p95_critical_ms, true, &|v, l| format!("p95 {v:.1} ms > {l} ms"));
    check(
        Some(report.error_rate).filter(|_| report.totals.executions > 0),
        t.error_rate_warning,
        t.error_rate_critical,
        true,
        &|v, l| format!("error rate {:.2}% > {}%", v * 100.0, l * 100.0),
    );
    check(report.cache_hit_rate, t.cache_hit_rate_warning, t.cache_hit_rate_critical, false, &|v, l| {
        format!("cache hit rate {:.1}% < {}%", v * 100.0, l * 100.0)
    });
    check(
        report.memory_growth_mb_per_hour,
        t.memory_growth_warning_mb_per_hour,
        t.memory_growth_critical_mb_per_hour,
        true,
        &|v, l| format!("memory growth {v:.1} MB/h > {l} MB/h"),
    );
    (status, reasons)
}

/// RFC 3339 timestamps with milliseconds, in UTC.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats `time`.
    pub fn format(time: SystemTime) -> String {
        humantime::format_rfc3339_millis(time).to_string()
    }

    /// Serde serializer.
    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*time))
    }

    /// Serde deserializer.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use coordmetrics::{WriterState, WriterSummary};

    use super::*;

    fn snapshot(coordinators: Vec<CoordinatorTotals>, seconds: u64) -> Snapshot {
        Snapshot {
            taken_at: UNIX_EPOCH + Duration::from_secs(seconds),
            info: SegmentInfo {
                path: "test".into(),
                layout_version: 1,
                segment_id: 7,
                created: UNIX_EPOCH,
                capacities: Capacities::default(),
                size: 0,
            },
            coordinators,
            events: vec![("e".into(), u64::MAX)],
            writers: vec![WriterSummary { slot: 0, state: WriterState::Active { pid: 1 }, process: 1 }],
            processes: Vec::new(),
            blocks_in_use: (1, 1),
            dropped: Dropped::default(),
            errors: Vec::new(),
        }
    }

    fn totals(name: &str, value: u64) -> CoordinatorTotals {
        let mut buckets = vec![0; histogram::BUCKETS];
        buckets[100] = value;
        CoordinatorTotals {
            name: name.into(),
            executions: value,
            errors: value,
            cache_hits: value,
            cache_misses: value,
            duration_sum_ns: value,
            buckets,
            in_flight: 0,
            explicit_memory_bytes: Some(value),
            hosts: vec![1],
        }
    }

    /// Regression of a fuzzer finding: counters from a corrupt segment overflowed the sums.
    #[test]
    fn extreme_counters_make_a_report_not_a_panic() {
        let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
        let report = reporter.report(&snapshot(vec![totals("a", u64::MAX), totals("b", u64::MAX)], 10));
        assert_eq!(report.total_executions(), u64::MAX);
        let mut out = Vec::new();
        crate::format::json::write_report(&mut out, &report).unwrap();
        crate::format::prometheus::write_report(&mut out, &report, &Default::default()).unwrap();
    }

    #[test]
    fn rates_come_from_the_difference_between_snapshots() {
        let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
        reporter.report(&snapshot(vec![totals("a", 100)], 10));
        let report = reporter.report(&snapshot(vec![totals("a", 150)], 20));
        let a = &report.coordinators[0];
        assert_eq!(a.throughput_per_sec, 5.0);
        assert_eq!(report.history.len(), 2);
        assert_eq!(report.history[1].point.coordinators["a"].throughput_per_sec, 5.0);
        assert_eq!(report.history[1].point.interval_seconds, 10.0);
        // A recreated segment (new id) restarts the rates instead of going negative.
        let mut recreated = snapshot(vec![totals("a", 10)], 30);
        recreated.info.segment_id = 8;
        let report = reporter.report(&recreated);
        assert_eq!(report.coordinators[0].throughput_per_sec, 10.0 / 30.0);
    }

    #[test]
    fn status_is_the_worst_threshold_crossed() {
        let thresholds = Thresholds::default();
        let mut mostly_fine = CoordinatorReport {
            totals: CoordinatorTotals {
                executions: 1000,
                errors: 20,
                cache_hits: 80,
                cache_misses: 20,
                ..CoordinatorTotals::empty("c")
            },
            memory_bytes: None,
            memory_source: MemorySource::None,
            cpu_percent: None,
            avg_ms: None,
            p50_ms: None,
            p95_ms: Some(50.0),
            p99_ms: None,
            error_rate: 0.02,
            cache_hit_rate: Some(0.8),
            throughput_per_sec: 0.0,
            memory_growth_mb_per_hour: Some(1.0),
            status: Status::Healthy,
            status_reasons: Vec::new(),
        };
        let (status, reasons) = assess(&mostly_fine, &thresholds);
        assert_eq!((status, reasons.len()), (Status::Warning, 1), "{reasons:?}");
        mostly_fine.p95_ms = Some(250.0);
        mostly_fine.cache_hit_rate = Some(0.4);
        let (status, reasons) = assess(&mostly_fine, &thresholds);
        assert_eq!((status, reasons.len()), (Status::Error, 3), "{reasons:?}");
        mostly_fine.memory_growth_mb_per_hour = Some(12.0);
        assert_eq!(assess(&mostly_fine, &thresholds).1.len(), 4);
    }
}
