//! The thresholds that decide a coordinator's status, what each is compared with, and the one
//! rule of which side of a limit is worse (used by the status and by configuration checks).

use serde::Deserialize;

/// Warning and critical levels of the four measures (see [`Measure`]); published in
/// metrics.json so that the dashboard colours by the same numbers.
///
/// The configuration file's keys are the field names, except the memory growth's, which keep
/// their historical `_mb_per_hour` names: they are read in MiB (2^20 bytes) per hour, the unit
/// of metrics.json's `memory_mb`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Recent p95 latency above which a coordinator is in warning, in milliseconds.
    pub p95_warning_ms: f64,
    /// Recent p95 latency above which a coordinator is in error, in milliseconds.
    pub p95_critical_ms: f64,
    /// Error rate (0..1) above which a coordinator is in warning.
    pub error_rate_warning: f64,
    /// Error rate (0..1) above which a coordinator is in error.
    pub error_rate_critical: f64,
    /// Cache hit rate (0..1) below which a coordinator is in warning.
    pub cache_hit_rate_warning: f64,
    /// Cache hit rate (0..1) below which a coordinator is in error.
    pub cache_hit_rate_critical: f64,
    /// Memory growth above which a coordinator is in warning, MiB per hour.
    #[serde(rename = "memory_growth_warning_mb_per_hour")]
    pub memory_growth_warning_mib_per_hour: f64,
    /// Memory growth above which a coordinator is in error, MiB per hour.
    #[serde(rename = "memory_growth_critical_mb_per_hour")]
    pub memory_growth_critical_mib_per_hour: f64,
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
            memory_growth_warning_mib_per_hour: 5.0,
            memory_growth_critical_mib_per_hour: 10.0,
        }
    }
}

/// Health of a coordinator against the thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every threshold met.
    Healthy,
    /// A warning threshold crossed.
    Warning,
    /// A critical threshold crossed.
    Error,
}

/// Which side of a limit is worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Latency, error rate, memory growth.
    HigherIsWorse,
    /// Cache hit rate.
    LowerIsWorse,
}

impl Direction {
    /// Whether `value` is past `limit`, on the worse side.
    ///
    /// ```
    /// use coordmetrics_report::thresholds::Direction;
    /// assert!(Direction::HigherIsWorse.beyond(250.0, 200.0));
    /// assert!(!Direction::HigherIsWorse.beyond(200.0, 200.0));
    /// assert!(Direction::LowerIsWorse.beyond(0.4, 0.5));
    /// ```
    pub fn beyond(self, value: f64, limit: f64) -> bool {
        match self {
            Direction::HigherIsWorse => value > limit,
            Direction::LowerIsWorse => value < limit,
        }
    }

    /// How a warning level compares with its critical level, which it must not be beyond.
    pub fn warning_relation(self) -> &'static str {
        match self {
            Direction::HigherIsWorse => "<=",
            Direction::LowerIsWorse => ">=",
        }
    }
}

/// What a pair of thresholds is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// p95 latency over the recent window (since the previous snapshot), ms.
    P95,
    /// Failed / executions since the segment was created.
    ErrorRate,
    /// Hits / lookups since the segment was created.
    CacheHitRate,
    /// Memory growth over the history, MiB per hour.
    MemoryGrowth,
}

impl Measure {
    /// Every measure, in the order statuses give their reasons.
    pub const ALL: [Measure; 4] = [Measure::P95, Measure::ErrorRate, Measure::CacheHitRate, Measure::MemoryGrowth];

    /// Which side of its limits is worse.
    pub fn direction(self) -> Direction {
        match self {
            Measure::CacheHitRate => Direction::LowerIsWorse,
            _ => Direction::HigherIsWorse,
        }
    }

    /// Whether its values are rates in 0..=1 (else any finite number >= 0).
    pub fn is_fraction(self) -> bool {
        matches!(self, Measure::ErrorRate | Measure::CacheHitRate)
    }

    /// Configuration keys of its warning and critical levels.
    pub fn keys(self) -> [&'static str; 2] {
        match self {
            Measure::P95 => ["p95_warning_ms", "p95_critical_ms"],
            Measure::ErrorRate => ["error_rate_warning", "error_rate_critical"],
            Measure::CacheHitRate => ["cache_hit_rate_warning", "cache_hit_rate_critical"],
            Measure::MemoryGrowth => ["memory_growth_warning_mb_per_hour", "memory_growth_critical_mb_per_hour"],
        }
    }

    /// A status reason: `value` is beyond `limit`.
    pub fn reason(self, value: f64, limit: f64) -> String {
        match self {
            Measure::P95 => format!("recent p95 {value:.1} ms > {limit} ms"),
            Measure::ErrorRate => format!("error rate {:.2}% > {}%", value * 100.0, limit * 100.0),
            Measure::CacheHitRate => format!("cache hit rate {:.1}% < {}%", value * 100.0, limit * 100.0),
            Measure::MemoryGrowth => format!("memory growth {value:.1} MiB/h > {limit} MiB/h"),
        }
    }
}

impl Thresholds {
    /// The warning and critical levels of `measure`.
    pub fn levels(&self, measure: Measure) -> [f64; 2] {
        match measure {
            Measure::P95 => [self.p95_warning_ms, self.p95_critical_ms],
            Measure::ErrorRate => [self.error_rate_warning, self.error_rate_critical],
            Measure::CacheHitRate => [self.cache_hit_rate_warning, self.cache_hit_rate_critical],
            Measure::MemoryGrowth => {
                [self.memory_growth_warning_mib_per_hour, self.memory_growth_critical_mib_per_hour]
            }
        }
    }

    /// The status `value` of `measure` earns, and the limit it crossed if any.
    pub fn level(&self, measure: Measure, value: f64) -> Option<(Status, f64)> {
        let [warning, critical] = self.levels(measure);
        let direction = measure.direction();
        if direction.beyond(value, critical) {
            Some((Status::Error, critical))
        } else if direction.beyond(value, warning) {
            Some((Status::Warning, warning))
        } else {
            None
        }
    }
}
