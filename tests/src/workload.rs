//! The integration tests' view of the deterministic workload of `coordmetrics_exporter::workload`:
//! the workload and its predictor are re-exported from there, and this module owns the
//! assertion that a snapshot shows exactly what was predicted.

use coordmetrics::Snapshot;

pub use coordmetrics_exporter::workload::{
    Counts, Handles, Names, Op, Totals, Workload, COORDINATORS, EVENTS, NAMES, TRACKED,
};

/// Asserts that `snapshot` shows exactly `expected`, listing every difference otherwise.
#[track_caller]
pub fn assert_totals(snapshot: &Snapshot, expected: &Totals) {
    let differences = Totals::of(snapshot, &NAMES).differences(expected);
    assert!(differences.is_empty(), "the snapshot differs from what was recorded:\n  {}", differences.join("\n  "));
}
