//! What changed since the previous snapshot: the recent window's latency buckets, throughput
//! and CPU use. Without a previous snapshot of the same segment, the window starts at the
//! segment's creation.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use coordmetrics::{CoordinatorTotals, Snapshot};

use crate::hosts::Hosts;

/// What the next report needs of the previous snapshot.
#[derive(Debug)]
pub struct Previous {
    time: SystemTime,
    segment_id: u64,
    /// Executions and fine buckets of each coordinator.
    per_coordinator: HashMap<String, (u64, Vec<u64>)>,
    /// CPU time of each live process (by token).
    cpu: HashMap<u64, Duration>,
}

impl Previous {
    /// Remembers `snapshot` (and its hosts' CPU times).
    pub fn of(snapshot: &Snapshot, hosts: &Hosts) -> Self {
        Self {
            time: snapshot.taken_at,
            segment_id: snapshot.info.segment_id,
            per_coordinator: snapshot
                .coordinators
                .iter()
                .map(|c| (c.name.clone(), (c.executions, c.buckets.clone())))
                .collect(),
            cpu: hosts.cpu_times(),
        }
    }
}

/// The window from the previous snapshot (or the segment's creation) to `snapshot`.
#[derive(Debug)]
pub struct Window<'a> {
    previous: Option<&'a Previous>,
    /// Its length in seconds.
    pub seconds: f64,
}

impl<'a> Window<'a> {
    /// The window ending at `snapshot`; `previous` counts only if it is of the same segment
    /// (a recreated segment restarts its counters).
    pub fn new(snapshot: &Snapshot, previous: Option<&'a Previous>) -> Self {
        let previous = previous.filter(|p| p.segment_id == snapshot.info.segment_id);
        let start = previous.map_or(snapshot.info.created, |p| p.time);
        Self { previous, seconds: snapshot.taken_at.duration_since(start).unwrap_or_default().as_secs_f64() }
    }

    /// Executions and fine buckets of `totals` at the window's start, if known and not ahead
    /// of now (a torn or corrupt read).
    fn before(&self, totals: &CoordinatorTotals) -> Option<&'a (u64, Vec<u64>)> {
        self.previous?.per_coordinator.get(&totals.name).filter(|(executions, _)| *executions <= totals.executions)
    }

    /// The fine buckets of the executions inside the window.
    pub fn buckets(&self, totals: &CoordinatorTotals) -> Vec<u64> {
        match self.before(totals) {
            Some((_, before)) => {
                totals.buckets.iter().zip(before).map(|(now, then)| now.saturating_sub(*then)).collect()
            }
            None => totals.buckets.clone(),
        }
    }

    /// Executions per second inside the window.
    pub fn throughput(&self, totals: &CoordinatorTotals) -> f64 {
        let before = self.before(totals).map_or(0, |(executions, _)| *executions);
        if self.seconds > 0.0 {
            (totals.executions - before) as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// CPU use of `totals`' share of its hosts, percent of one core; `None` without a previous
    /// snapshot or a host seen in both.
    pub fn cpu_percent(&self, totals: &CoordinatorTotals, hosts: &Hosts) -> Option<f64> {
        let previous = self.previous.filter(|_| self.seconds > 0.0)?;
        let used = hosts.cpu_used(totals, &previous.cpu);
        (!used.is_empty())
            .then(|| used.iter().map(|&(seconds, sharing)| seconds / self.seconds * 100.0 / sharing as f64).sum())
    }
}
