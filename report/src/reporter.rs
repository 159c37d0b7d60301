//! From successive snapshots to reports: ties together the window since the previous snapshot
//! ([`crate::rates`]), memory ([`crate::memory`]), the status ([`crate::status`]) and the
//! history ([`crate::history`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use coordmetrics::{histogram, CoordinatorTotals, Snapshot};

use crate::history::{History, HistoryEntry, HistoryPoint};
use crate::hosts::Hosts;
use crate::memory;
use crate::model::{CoordinatorReport, Health, Overall, Report};
use crate::rates::{Previous, Window};
use crate::status::assess;
use crate::thresholds::{Status, Thresholds};

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

/// Turns successive snapshots into reports, remembering what rates and history need.
///
/// # Examples
/// ```
/// # use std::time::{Duration, UNIX_EPOCH};
/// # use coordmetrics::{Capacities, CoordinatorTotals, Dropped, SegmentInfo, Snapshot};
/// use coordmetrics_report::model::Health;
/// use coordmetrics_report::reporter::{ReportOptions, Reporter};
/// # let snapshot = Snapshot {
/// #     taken_at: UNIX_EPOCH + Duration::from_secs(20),
/// #     info: SegmentInfo { path: "doc".into(), layout_version: 1, segment_id: 1, created: UNIX_EPOCH,
/// #         capacities: Capacities::default(), size: 0 },
/// #     coordinators: vec![CoordinatorTotals { executions: 10, ..CoordinatorTotals::empty("Chat") }],
/// #     events: Vec::new(), writers: Vec::new(), processes: Vec::new(), blocks_in_use: (0, 1),
/// #     dropped: Dropped::default(), errors: Vec::new(),
/// # };
/// let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
/// let report = reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at));
/// // No previous snapshot: the window starts when the segment was created, 20 s earlier.
/// assert_eq!(report.coordinators[0].throughput_per_sec, 0.5);
/// assert_eq!(report.overall.executions, 10);
/// assert_eq!(report.history.len(), 1);
/// ```
#[derive(Debug)]
pub struct Reporter {
    options: ReportOptions,
    started: SystemTime,
    previous: Option<Previous>,
    history: History,
}

impl Reporter {
    /// A reporter that started now.
    pub fn new(options: ReportOptions) -> Self {
        Self::starting_at(options, SystemTime::now())
    }

    /// A reporter whose uptime counts from `started`.
    pub fn starting_at(options: ReportOptions, started: SystemTime) -> Self {
        Self { options, started, previous: None, history: History::new(options.history) }
    }

    /// Replaces the options (on reload); history and rates carry on.
    pub fn set_options(&mut self, options: ReportOptions) {
        self.options = options;
        self.history.set_capacity(options.history);
    }

    /// The options in force.
    pub fn options(&self) -> &ReportOptions {
        &self.options
    }

    /// Seeds the history, e.g. from the previous metrics.json after a restart.
    pub fn restore_history(&mut self, points: Vec<HistoryPoint>) {
        self.history.restore(points);
    }

    /// The report of a single snapshot, as a fresh reporter with the default options makes it
    /// (`coordmetrics snapshot`): rates since the segment was created, one history point.
    pub fn single(snapshot: &Snapshot) -> Report {
        Self::new(ReportOptions::default()).report(snapshot, Health::snapshot_at(snapshot.taken_at))
    }

    /// Builds the report of `snapshot`, taken with the exporter in `health`.
    ///
    /// Memory and CPU of the processes that host a coordinator come from the snapshot: every
    /// writer publishes its own in its slot, so no other process's `/proc` is read.
    pub fn report(&mut self, snapshot: &Snapshot, health: Health) -> Report {
        let now = snapshot.taken_at;
        let hosts = Hosts::of(snapshot);
        let window = Window::new(snapshot, self.previous.as_ref());
        let mut coordinators = Vec::with_capacity(snapshot.coordinators.len());
        let mut history_entries = BTreeMap::new();
        for totals in &snapshot.coordinators {
            let report = self.coordinator(totals, now, &window, &hosts);
            history_entries.insert(
                totals.name.clone(),
                HistoryEntry {
                    executions: totals.executions,
                    errors: totals.errors,
                    throughput_per_sec: report.throughput_per_sec,
                    window_p95_ms: report.window_p95_ms,
                    memory_bytes: report.memory_bytes,
                },
            );
            coordinators.push(report);
        }
        let interval_seconds = window.seconds;
        self.history.push(HistoryPoint { timestamp: now, interval_seconds, coordinators: history_entries });
        self.previous = Some(Previous::of(snapshot, &hosts));

        Report {
            timestamp: now,
            segment: snapshot.info.clone(),
            interval: self.options.interval,
            exporter_uptime: now.duration_since(self.started).unwrap_or_default(),
            overall: Overall::of(&coordinators),
            coordinators,
            events: snapshot.events.clone(),
            live_writers: snapshot.live_writers(),
            used_writers: snapshot.writers.len(),
            used_errors: snapshot.errors.len(),
            used_blocks: snapshot.blocks_in_use,
            dropped: snapshot.dropped,
            recent_errors: snapshot.errors.clone(),
            history: self.history.points(),
            thresholds: self.options.thresholds,
            health,
            demo: false,
        }
    }

    fn coordinator(
        &self,
        totals: &CoordinatorTotals,
        now: SystemTime,
        window: &Window,
        hosts: &Hosts,
    ) -> CoordinatorReport {
        let (memory_bytes, memory_source) = memory::attribute(totals, hosts);
        let lifetime_ms = |q| quantile_ms(&totals.buckets, q);
        let mut report = CoordinatorReport {
            totals: totals.clone(),
            memory_bytes,
            memory_source,
            cpu_percent: window.cpu_percent(totals, hosts),
            lifetime_avg_ms: (totals.executions > 0)
                .then(|| totals.duration_sum_ns as f64 / totals.executions as f64 / 1e6),
            lifetime_p50_ms: lifetime_ms(0.5),
            lifetime_p95_ms: lifetime_ms(0.95),
            lifetime_p99_ms: lifetime_ms(0.99),
            window_p95_ms: quantile_ms(&window.buckets(totals), 0.95),
            error_rate: ratio(totals.errors, totals.executions).unwrap_or(0.0).min(1.0),
            cache_hit_rate: ratio(totals.cache_hits, totals.cache_hits.saturating_add(totals.cache_misses)),
            throughput_per_sec: window.throughput(totals),
            memory_growth_mib_per_hour: memory::growth_mib_per_hour(&self.history, &totals.name, now, memory_bytes),
            status: Status::Healthy,
            status_reasons: Vec::new(),
        };
        (report.status, report.status_reasons) = assess(&report, &self.options.thresholds);
        report
    }
}

fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    histogram::quantile(buckets, q).map(|seconds| seconds * 1e3)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use coordmetrics::{Capacities, Dropped, ProcessGauges, SegmentInfo, WriterState, WriterSummary};

    use super::*;
    use crate::memory::{MemorySource, MIB};
    use crate::status::assess;

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

    fn report(reporter: &mut Reporter, snapshot: &Snapshot) -> Report {
        reporter.report(snapshot, Health::snapshot_at(snapshot.taken_at))
    }

    /// Regression of a fuzzer finding: counters from a corrupt segment overflowed the sums.
    #[test]
    fn extreme_counters_make_a_report_not_a_panic() {
        let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
        let report = report(&mut reporter, &snapshot(vec![totals("a", u64::MAX), totals("b", u64::MAX)], 10));
        assert_eq!(report.overall.executions, u64::MAX);
        // The sums saturate, the rates stay rates, and both formats carry them.
        assert_eq!(
            (report.overall.errors, report.overall.cache_hits, report.overall.memory_bytes),
            (u64::MAX, u64::MAX, u64::MAX)
        );
        assert_eq!(report.coordinators[0].error_rate, 1.0);
        // Lookups (hits + misses) saturate too: the rate stays within 0..=1.
        assert_eq!(report.coordinators[0].cache_hit_rate, Some(1.0));
        assert_eq!(report.coordinators[0].status, Status::Error);
        let mut json = Vec::new();
        crate::format::json::write_report(&mut json, &report).unwrap();
        let document: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(document["overall_stats"]["total_executions"], u64::MAX);
        assert_eq!(document["overall_stats"]["overall_error_rate"], 1.0);
        let mut text = Vec::new();
        crate::format::prometheus::write_report(&mut text, &report, &Default::default()).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(&format!("victor_coordinator_executions_total{{coordinator=\"b\"}} {}\n", u64::MAX)),
            "{text}"
        );
    }

    #[test]
    fn rates_come_from_the_difference_between_snapshots() {
        let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
        report(&mut reporter, &snapshot(vec![totals("a", 100)], 10));
        let report_20 = report(&mut reporter, &snapshot(vec![totals("a", 150)], 20));
        let a = &report_20.coordinators[0];
        assert_eq!(a.throughput_per_sec, 5.0);
        assert_eq!(report_20.history.len(), 2);
        assert_eq!(report_20.history[1].coordinators["a"].throughput_per_sec, 5.0);
        assert_eq!(report_20.history[1].interval_seconds, 10.0);
        // A recreated segment (new id) restarts the rates instead of going negative.
        let mut recreated = snapshot(vec![totals("a", 10)], 30);
        recreated.info.segment_id = 8;
        let report_30 = report(&mut reporter, &recreated);
        assert_eq!(report_30.coordinators[0].throughput_per_sec, 10.0 / 30.0);
    }

    fn timed(name: &str, executions: u64, millis: u64) -> CoordinatorTotals {
        let mut totals = CoordinatorTotals { executions, ..CoordinatorTotals::empty(name) };
        totals.buckets[histogram::bucket_index(millis * 1_000_000)] = executions;
        totals.duration_sum_ns = executions * millis * 1_000_000;
        totals
    }

    /// The status follows the recent window: a coordinator that was slow for a while is
    /// healthy again once its recent executions are fast, though its lifetime p95 still
    /// remembers the slow period.
    #[test]
    fn status_returns_to_healthy_once_the_window_is_fast() {
        let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
        let slow = report(&mut reporter, &snapshot(vec![timed("a", 100, 300)], 10));
        assert_eq!(slow.coordinators[0].status, Status::Error, "{:?}", slow.coordinators[0].status_reasons);

        let mut recovered = timed("a", 1100, 300);
        let fast = histogram::bucket_index(2_000_000);
        recovered.buckets[fast] = 1000;
        recovered.buckets[histogram::bucket_index(300_000_000)] = 100;
        let now = report(&mut reporter, &snapshot(vec![recovered], 20));
        let a = &now.coordinators[0];
        assert!(a.lifetime_p95_ms.unwrap() > 200.0, "the lifetime still holds the slow period: {a:?}");
        assert!(a.window_p95_ms.unwrap() < 3.0, "{a:?}");
        assert_eq!((a.status, a.status_reasons.len()), (Status::Healthy, 0), "{:?}", a.status_reasons);
        assert_eq!(now.history[1].coordinators["a"].window_p95_ms, a.window_p95_ms);

        // A window without executions says nothing about latency.
        let idle = report(&mut reporter, &snapshot(vec![now.coordinators[0].totals.clone()], 30));
        assert_eq!((idle.coordinators[0].window_p95_ms, idle.coordinators[0].status), (None, Status::Healthy));
    }

    /// Memory and its growth are in the same unit, the MiB: a coordinator whose host grows by
    /// 6 MiB in an hour grows by 6 (MiB/h), crossing the 5 MiB/h warning, and its memory in
    /// MiB has grown by exactly as much.
    #[test]
    fn memory_and_its_growth_share_one_unit() {
        let mut reporter = Reporter::starting_at(ReportOptions::default(), UNIX_EPOCH);
        let hosted = |rss_mib: u64, seconds: u64| {
            let mut snapshot =
                snapshot(vec![CoordinatorTotals { hosts: vec![1], ..CoordinatorTotals::empty("a") }], seconds);
            snapshot.processes = vec![ProcessGauges {
                process: 1,
                pid: 1,
                rss_bytes: rss_mib * 1_048_576,
                cpu_time: Duration::ZERO,
                published: snapshot.taken_at,
            }];
            snapshot
        };
        let before = report(&mut reporter, &hosted(100, 10));
        let after = report(&mut reporter, &hosted(106, 3610));
        let (before, after) = (&before.coordinators[0], &after.coordinators[0]);
        assert_eq!(after.memory_source, MemorySource::Process);
        let grown_mib = (after.memory_bytes.unwrap() - before.memory_bytes.unwrap()) as f64 / MIB;
        assert_eq!(grown_mib, 6.0);
        assert_eq!(after.memory_growth_mib_per_hour, Some(grown_mib));
        assert_eq!(after.status, Status::Warning);
        assert_eq!(after.status_reasons, ["memory growth 6.0 MiB/h > 5 MiB/h"]);
        let mut json = Vec::new();
        crate::format::json::write_report(&mut json, &report(&mut reporter, &hosted(106, 3610))).unwrap();
        let document: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(document["coordinators_without_executions"][0]["memory_mb"], 106.0);
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
            lifetime_avg_ms: None,
            lifetime_p50_ms: None,
            lifetime_p95_ms: None,
            lifetime_p99_ms: None,
            window_p95_ms: Some(50.0),
            error_rate: 0.02,
            cache_hit_rate: Some(0.8),
            throughput_per_sec: 0.0,
            memory_growth_mib_per_hour: Some(1.0),
            status: Status::Healthy,
            status_reasons: Vec::new(),
        };
        let (status, reasons) = assess(&mostly_fine, &thresholds);
        assert_eq!((status, reasons.len()), (Status::Warning, 1), "{reasons:?}");
        mostly_fine.window_p95_ms = Some(250.0);
        mostly_fine.cache_hit_rate = Some(0.4);
        let (status, reasons) = assess(&mostly_fine, &thresholds);
        assert_eq!((status, reasons.len()), (Status::Error, 3), "{reasons:?}");
        mostly_fine.memory_growth_mib_per_hour = Some(12.0);
        assert_eq!(assess(&mostly_fine, &thresholds).1.len(), 4);
    }
}
