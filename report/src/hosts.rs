//! The live processes hosting coordinators, as the snapshot has them (each writer publishes its
//! own resident memory and CPU time), and the share of each that falls to one coordinator.

use std::collections::HashMap;
use std::time::Duration;

use coordmetrics::{CoordinatorTotals, Snapshot};

/// Resident memory and CPU time of each live process, by process token.
#[derive(Debug)]
pub struct Hosts<'a> {
    gauges: HashMap<u64, (u64, Duration)>,
    coordinators: &'a [CoordinatorTotals],
}

impl<'a> Hosts<'a> {
    /// The processes of `snapshot`.
    pub fn of(snapshot: &'a Snapshot) -> Self {
        Self {
            gauges: snapshot.processes.iter().map(|p| (p.process, (p.rss_bytes, p.cpu_time))).collect(),
            coordinators: &snapshot.coordinators,
        }
    }

    /// How many coordinators `process` hosts (at least 1): its figures are shared evenly
    /// among them.
    fn sharing(&self, process: u64) -> usize {
        self.coordinators.iter().filter(|c| c.hosts.contains(&process)).count().max(1)
    }

    /// Whether any of `totals`' hosts is live.
    pub fn any_live(&self, totals: &CoordinatorTotals) -> bool {
        totals.hosts.iter().any(|process| self.gauges.contains_key(process))
    }

    /// The resident memory of `totals`' live hosts that falls to it.
    pub fn memory_share(&self, totals: &CoordinatorTotals) -> u64 {
        crate::model::saturating_sum(
            totals.hosts.iter().filter_map(|p| Some(self.gauges.get(p)?.0 / self.sharing(*p) as u64)),
        )
    }

    /// For each of `totals`' live hosts known in `before` (CPU times by process token): the
    /// CPU seconds it used since, and how many coordinators share them.
    pub fn cpu_used(&self, totals: &CoordinatorTotals, before: &HashMap<u64, Duration>) -> Vec<(f64, usize)> {
        totals
            .hosts
            .iter()
            .filter_map(|p| {
                let used = self.gauges.get(p)?.1.checked_sub(*before.get(p)?)?;
                Some((used.as_secs_f64(), self.sharing(*p)))
            })
            .collect()
    }

    /// CPU time of every live process, to compare the next snapshot with.
    pub fn cpu_times(&self) -> HashMap<u64, Duration> {
        self.gauges.iter().map(|(process, (_, cpu))| (*process, *cpu)).collect()
    }
}
