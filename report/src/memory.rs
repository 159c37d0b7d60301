//! A coordinator's memory: where the figure comes from, and how fast it grows. One unit for
//! people, the MiB (2^20 bytes): metrics.json's `memory_mb`, the growth and its thresholds.

use std::time::SystemTime;

use coordmetrics::CoordinatorTotals;
use serde::Serialize;

use crate::history::History;
use crate::hosts::Hosts;

/// Bytes in a MiB.
pub const MIB: f64 = 1_048_576.0;

/// Where a coordinator's memory figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemorySource {
    /// Set by the client with `set_memory_bytes`.
    Explicit,
    /// Resident memory of the live processes hosting it, shared among their coordinators.
    Process,
    /// Unknown (no live host).
    None,
}

/// The memory of `totals`: set by the client, else its share of its live hosts' resident
/// memory, else unknown.
pub fn attribute(totals: &CoordinatorTotals, hosts: &Hosts) -> (Option<u64>, MemorySource) {
    match totals.explicit_memory_bytes {
        Some(bytes) => (Some(bytes), MemorySource::Explicit),
        None if hosts.any_live(totals) => (Some(hosts.memory_share(totals)), MemorySource::Process),
        None => (None, MemorySource::None),
    }
}

/// Growth of `name`'s memory from the oldest history point that has it to `now`, in MiB per
/// hour; `None` until the history spans at least a minute.
pub fn growth_mib_per_hour(history: &History, name: &str, now: SystemTime, memory: Option<u64>) -> Option<f64> {
    let memory = memory?;
    let (then, earlier) = history.oldest_memory(name)?;
    let hours = now.duration_since(then).ok()?.as_secs_f64() / 3600.0;
    (hours >= 1.0 / 60.0).then(|| (memory as f64 - earlier as f64) / MIB / hours)
}
