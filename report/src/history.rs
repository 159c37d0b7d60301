//! The bounded history kept in metrics.json: one point per snapshot, as data. Formatters render
//! it (and may cache what they rendered); a restarted exporter reads it back from its previous
//! metrics.json.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One point of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// When the snapshot was taken.
    #[serde(with = "crate::time")]
    pub timestamp: SystemTime,
    /// Seconds since the previous point: the window of its rates and quantiles.
    pub interval_seconds: f64,
    /// Per coordinator.
    pub coordinators: BTreeMap<String, HistoryEntry>,
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
    /// p95 over the interval, ms (`None` if the interval had no executions). Written by
    /// exporters before 0.1 as `p95_ms`.
    #[serde(alias = "p95_ms")]
    pub window_p95_ms: Option<f64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
}

/// The last `capacity` points, oldest first. Points are shared (`Arc`) with the reports that
/// hold them, so a report's history costs a pointer per point.
#[derive(Debug)]
pub struct History {
    points: VecDeque<Arc<HistoryPoint>>,
    capacity: usize,
}

impl History {
    /// An empty history of at most `capacity` points.
    pub fn new(capacity: usize) -> Self {
        Self { points: VecDeque::new(), capacity }
    }

    /// Keeps at most `capacity` points from now on, dropping the oldest.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.trim();
    }

    /// Replaces the points, e.g. with those of the previous metrics.json after a restart.
    pub fn restore(&mut self, points: Vec<HistoryPoint>) {
        self.points = points.into_iter().map(Arc::new).collect();
        self.trim();
    }

    /// Appends the newest point.
    pub fn push(&mut self, point: HistoryPoint) {
        self.points.push_back(Arc::new(point));
        self.trim();
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<Arc<HistoryPoint>> {
        self.points.iter().cloned().collect()
    }

    /// The oldest point at which `name`'s memory is known: when, and how much.
    pub fn oldest_memory(&self, name: &str) -> Option<(SystemTime, u64)> {
        self.points.iter().find_map(|point| Some((point.timestamp, point.coordinators.get(name)?.memory_bytes?)))
    }

    fn trim(&mut self) {
        while self.points.len() > self.capacity {
            self.points.pop_front();
        }
    }
}
