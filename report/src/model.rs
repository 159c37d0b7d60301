//! The report: plain data about one snapshot (and the exporter's health at that tick), made
//! once by [`crate::reporter::Reporter`] and read by every formatter.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coordmetrics::{Capacities, CoordinatorTotals, Dropped, RecordedError, SegmentInfo};

use crate::history::HistoryPoint;
use crate::memory::MemorySource;
use crate::thresholds::{Status, Thresholds};

/// One coordinator in a report. Lifetime figures cover every execution since the segment was
/// created; window figures, those since the previous snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct CoordinatorReport {
    /// What the segment holds for it.
    pub totals: CoordinatorTotals,
    /// Memory in bytes, if known.
    pub memory_bytes: Option<u64>,
    /// Where `memory_bytes` comes from.
    pub memory_source: MemorySource,
    /// CPU use of its host processes' share, percent of one core, over the window.
    pub cpu_percent: Option<f64>,
    /// Mean duration over its lifetime, ms.
    pub lifetime_avg_ms: Option<f64>,
    /// Median over its lifetime, ms.
    pub lifetime_p50_ms: Option<f64>,
    /// 95th percentile over its lifetime, ms.
    pub lifetime_p95_ms: Option<f64>,
    /// 99th percentile over its lifetime, ms.
    pub lifetime_p99_ms: Option<f64>,
    /// 95th percentile over the window, ms (`None` if the window had no executions): what the
    /// status compares with the latency thresholds.
    pub window_p95_ms: Option<f64>,
    /// Failed / executions over its lifetime (0..1).
    pub error_rate: f64,
    /// Hits / (hits + misses) over its lifetime, if any cache traffic.
    pub cache_hit_rate: Option<f64>,
    /// Executions per second over the window.
    pub throughput_per_sec: f64,
    /// Memory growth over the history, MiB per hour.
    pub memory_growth_mib_per_hour: Option<f64>,
    /// Status against the thresholds.
    pub status: Status,
    /// Which thresholds were crossed.
    pub status_reasons: Vec<String>,
}

/// How the exporter itself is doing: an input of the report, kept by whoever takes the
/// snapshots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Whether the last snapshot succeeded.
    pub up: bool,
    /// Time of the last successful snapshot.
    pub last_success: Option<SystemTime>,
    /// How long the last snapshot took.
    pub snapshot_duration: Duration,
    /// Failed snapshots since start.
    pub snapshot_errors: u64,
    /// Failed file writes since start.
    pub write_errors: u64,
    /// The last problem, if the last snapshot or write failed.
    pub last_error: Option<String>,
}

impl Health {
    /// The health of a one-off snapshot taken at `time`, as `coordmetrics snapshot` makes it.
    pub fn snapshot_at(time: SystemTime) -> Self {
        Self { up: true, last_success: Some(time), ..Self::default() }
    }

    /// Whether the last snapshot and the last writes succeeded.
    pub fn is_healthy(&self) -> bool {
        self.up && self.last_error.is_none()
    }
}

/// Sums over every coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overall {
    /// Executions.
    pub executions: u64,
    /// Failed executions.
    pub errors: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
    /// Known memory, bytes.
    pub memory_bytes: u64,
    /// Executions per second over the window.
    pub throughput_per_sec: f64,
    /// Coordinators with at least one execution.
    pub coordinators_with_executions: usize,
}

impl Overall {
    /// The sums of `coordinators`.
    pub fn of(coordinators: &[CoordinatorReport]) -> Self {
        let sum = |pick: fn(&CoordinatorReport) -> u64| saturating_sum(coordinators.iter().map(pick));
        Self {
            executions: sum(|c| c.totals.executions),
            errors: sum(|c| c.totals.errors),
            cache_hits: sum(|c| c.totals.cache_hits),
            cache_misses: sum(|c| c.totals.cache_misses),
            memory_bytes: sum(|c| c.memory_bytes.unwrap_or(0)),
            throughput_per_sec: coordinators.iter().map(|c| c.throughput_per_sec).sum(),
            coordinators_with_executions: coordinators.iter().filter(|c| c.totals.executions > 0).count(),
        }
    }
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
    /// Sums over `coordinators`.
    pub overall: Overall,
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
    /// Recent errors, newest first, as the snapshot read them.
    pub recent_errors: Vec<RecordedError>,
    /// Oldest first.
    pub history: Vec<Arc<HistoryPoint>>,
    /// Thresholds applied.
    pub thresholds: Thresholds,
    /// The exporter's own health at this tick.
    pub health: Health,
    /// Whether this is sample data rather than a real segment.
    pub demo: bool,
}

impl Report {
    /// Capacities of the segment.
    pub fn capacities(&self) -> Capacities {
        self.segment.capacities
    }

    /// This tick's report when its snapshot failed: the last report's data, this tick's
    /// health (formatters then say the data is stale).
    pub fn with_health(self, health: Health) -> Self {
        Self { health, ..self }
    }
}

/// Sums counters without overflowing: a corrupt segment can hold any values, and the report
/// must still be made (and never panic).
pub fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, u64::saturating_add)
}
