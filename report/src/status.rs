//! A coordinator's status: the worst level its measures reach against the thresholds, with the
//! reasons.

use crate::model::CoordinatorReport;
use crate::thresholds::{Measure, Status, Thresholds};

/// The value of `measure` for `report`, if it has one: no latency without recent executions,
/// no error rate without executions, no hit rate without cache traffic, no growth without
/// history.
pub fn measured(report: &CoordinatorReport, measure: Measure) -> Option<f64> {
    match measure {
        Measure::P95 => report.window_p95_ms,
        Measure::ErrorRate => Some(report.error_rate).filter(|_| report.totals.executions > 0),
        Measure::CacheHitRate => report.cache_hit_rate,
        Measure::MemoryGrowth => report.memory_growth_mib_per_hour,
    }
}

/// Status of a coordinator: the worst of the four thresholds, with the reasons.
pub fn assess(report: &CoordinatorReport, thresholds: &Thresholds) -> (Status, Vec<String>) {
    let mut status = Status::Healthy;
    let mut reasons = Vec::new();
    for measure in Measure::ALL {
        let Some(value) = measured(report, measure) else { continue };
        if let Some((level, limit)) = thresholds.level(measure, value) {
            status = status.max(level);
            reasons.push(measure.reason(value, limit));
        }
    }
    (status, reasons)
}
