//! The one workload predictor: [`Totals`] are what a snapshot shows of a workload, predicted
//! from its operations alone ([`Totals::predict`]) or read from a snapshot ([`Totals::of`]),
//! and compared with readable differences.

use std::collections::{BTreeMap, BTreeSet};

use coordmetrics::{histogram, Snapshot};

use super::{Names, Op};

/// The totals of one coordinator, as predicted or as read from a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Executions.
    pub executions: u64,
    /// Failed executions.
    pub errors: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
    /// Sum of durations; `None` for the tracked coordinator, whose durations are measured.
    pub duration_sum_ns: Option<u64>,
    /// Non-empty fine histogram buckets; `None` for the tracked coordinator.
    pub buckets: Option<BTreeMap<usize, u64>>,
}

/// Everything a snapshot of a workload's segment shows that can be predicted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Per coordinator name.
    pub coordinators: BTreeMap<String, Counts>,
    /// Per event name.
    pub events: BTreeMap<String, u64>,
    /// (coordinator, message) of every error in the ring, sorted.
    pub messages: Vec<(String, String)>,
}

impl Totals {
    /// What a snapshot must show once `ops` have been recorded into a fresh segment in which
    /// every name of `names` is registered.
    pub fn predict(names: &Names, ops: impl IntoIterator<Item = Op>) -> Self {
        // Counted by index rather than by name: the bench predicts hundreds of millions of
        // operations.
        #[derive(Clone)]
        struct Predicted {
            counts: Counts,
            duration_sum_ns: u64,
            buckets: [u64; histogram::BUCKETS],
        }
        let zero = Predicted { counts: Counts::default(), duration_sum_ns: 0, buckets: [0; histogram::BUCKETS] };
        let mut coordinators = vec![zero; names.coordinators.len()];
        let mut tracked = Counts::default();
        let mut events = vec![0_u64; names.events.len()];
        let mut messages = Vec::new();
        let execution = |predicted: &mut Predicted, nanos: u64, ok: bool| {
            predicted.counts.executions += 1;
            predicted.counts.errors += u64::from(!ok);
            predicted.duration_sum_ns = predicted.duration_sum_ns.wrapping_add(nanos);
            predicted.buckets[histogram::bucket_index(nanos)] += 1;
        };
        for op in ops {
            match op {
                Op::Record { coordinator, nanos, ok } => execution(&mut coordinators[coordinator], nanos, ok),
                Op::Failure { coordinator, nanos, message } => {
                    execution(&mut coordinators[coordinator], nanos, false);
                    messages.push((names.coordinators[coordinator].to_owned(), message));
                }
                Op::CacheHit { coordinator, .. } => coordinators[coordinator].counts.cache_hits += 1,
                Op::CacheMiss { coordinator, .. } => coordinators[coordinator].counts.cache_misses += 1,
                Op::Event { event, count, .. } => events[event] += count,
                Op::Track { message, .. } => {
                    let name = names.tracked.expect("Op::Track on a workload without a tracked coordinator");
                    tracked.executions += 1;
                    if let Some(message) = message {
                        tracked.errors += 1;
                        messages.push((name.to_owned(), message));
                    }
                }
            }
        }
        let mut predicted: BTreeMap<String, Counts> = names
            .coordinators
            .iter()
            .zip(coordinators)
            .map(|(name, p)| {
                let buckets = p.buckets.iter().enumerate().filter(|(_, &n)| n != 0).map(|(i, &n)| (i, n)).collect();
                let counts = Counts { duration_sum_ns: Some(p.duration_sum_ns), buckets: Some(buckets), ..p.counts };
                (name.to_string(), counts)
            })
            .collect();
        if let Some(name) = names.tracked {
            predicted.insert(name.to_owned(), tracked);
        }
        messages.sort();
        Self {
            coordinators: predicted,
            events: names.events.iter().map(|name| name.to_string()).zip(events).collect(),
            messages,
        }
    }

    /// What `snapshot` shows, in the same terms as [`Totals::predict`]: durations of every
    /// coordinator but `names.tracked`.
    pub fn of(snapshot: &Snapshot, names: &Names) -> Self {
        let coordinators = snapshot
            .coordinators
            .iter()
            .map(|c| {
                let predicted = names.tracked != Some(c.name.as_str());
                let buckets = c
                    .buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, &count)| count != 0)
                    .map(|(index, &count)| (index, count))
                    .collect();
                let counts = Counts {
                    executions: c.executions,
                    errors: c.errors,
                    cache_hits: c.cache_hits,
                    cache_misses: c.cache_misses,
                    duration_sum_ns: predicted.then_some(c.duration_sum_ns),
                    buckets: predicted.then_some(buckets),
                };
                (c.name.clone(), counts)
            })
            .collect();
        let mut messages: Vec<(String, String)> = snapshot
            .errors
            .iter()
            .map(|e| {
                let coordinator = e.coordinator_name.clone().unwrap_or_default();
                (coordinator, e.message.clone())
            })
            .collect();
        messages.sort();
        Self { coordinators, events: snapshot.events.iter().cloned().collect(), messages }
    }

    /// Adds `other` to these totals, as if its operations had been recorded after theirs (in
    /// a ring large enough to keep every message).
    pub fn add(&mut self, other: &Totals) {
        for (name, theirs) in &other.coordinators {
            let ours = self.coordinators.entry(name.clone()).or_insert_with(|| Counts {
                duration_sum_ns: theirs.duration_sum_ns.map(|_| 0),
                buckets: theirs.buckets.as_ref().map(|_| BTreeMap::new()),
                ..Counts::default()
            });
            ours.executions += theirs.executions;
            ours.errors += theirs.errors;
            ours.cache_hits += theirs.cache_hits;
            ours.cache_misses += theirs.cache_misses;
            ours.duration_sum_ns = ours.duration_sum_ns.zip(theirs.duration_sum_ns).map(|(a, b)| a.wrapping_add(b));
            if let (Some(ours), Some(theirs)) = (&mut ours.buckets, &theirs.buckets) {
                theirs.iter().for_each(|(&index, &count)| *ours.entry(index).or_default() += count);
            } else {
                ours.buckets = None;
            }
        }
        for (name, count) in &other.events {
            *self.events.entry(name.clone()).or_default() += count;
        }
        self.messages.extend(other.messages.iter().cloned());
        self.messages.sort();
    }

    /// Operations behind these totals, if every event was recorded with a count of one:
    /// executions, cache hits and misses, and events.
    pub fn operations(&self) -> u64 {
        let coordinators: u64 = self.coordinators.values().map(|c| c.executions + c.cache_hits + c.cache_misses).sum();
        coordinators + self.events.values().sum::<u64>()
    }

    /// Every way `self` differs from `expected`, one line each (empty when they are equal):
    /// readable where a whole-struct `assert_eq!` would print thousands of buckets.
    pub fn differences(&self, expected: &Totals) -> Vec<String> {
        let mut lines = Vec::new();
        let names: BTreeSet<&String> = self.coordinators.keys().chain(expected.coordinators.keys()).collect();
        for name in names {
            match (self.coordinators.get(name), expected.coordinators.get(name)) {
                (Some(found), Some(wanted)) => {
                    for ((label, found), (_, wanted)) in found.fields().iter().zip(&wanted.fields()) {
                        if found != wanted {
                            lines.push(format!("{name:?} {label}: found {found}, expected {wanted}"));
                        }
                    }
                }
                (found, _) => {
                    lines.push(format!("{name:?}: {}", if found.is_some() { "unexpected" } else { "missing" }))
                }
            }
        }
        let events: BTreeSet<&String> = self.events.keys().chain(expected.events.keys()).collect();
        for name in events {
            let (found, wanted) = (self.events.get(name), expected.events.get(name));
            if found != wanted {
                lines.push(format!("event {name:?}: found {found:?}, expected {wanted:?}"));
            }
        }
        if self.messages != expected.messages {
            let missing = expected.messages.iter().filter(|m| !self.messages.contains(m)).count();
            let unexpected = self.messages.iter().filter(|m| !expected.messages.contains(m)).count();
            lines.push(format!(
                "error ring: {} messages, expected {} ({missing} missing, {unexpected} unexpected)",
                self.messages.len(),
                expected.messages.len()
            ));
        }
        lines
    }
}

impl Counts {
    fn fields(&self) -> [(&'static str, String); 6] {
        [
            ("executions", self.executions.to_string()),
            ("errors", self.errors.to_string()),
            ("cache hits", self.cache_hits.to_string()),
            ("cache misses", self.cache_misses.to_string()),
            ("duration sum", format!("{:?}", self.duration_sum_ns)),
            ("buckets", format!("{:?}", self.buckets)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use coordmetrics::{Capacities, Collector, SegmentOptions};

    use super::*;
    use crate::workload::{Handles, Workload, NAMES, TRACKED};

    fn collector(dir: &tempfile::TempDir) -> Collector {
        let capacities = Capacities { coordinators: 8, events: 4, writers: 4, errors: 4096 };
        let options = SegmentOptions { capacities, ..SegmentOptions::default() };
        Collector::open_with(dir.path().join("segment"), &options).unwrap()
    }

    #[test]
    fn the_prediction_is_what_the_segment_shows() {
        let dir = tempfile::tempdir().unwrap();
        let collector = collector(&dir);
        let workload = Workload { processes: 2, threads: 2, iterations: 300 };
        let handles = Handles::resolve(&collector, &NAMES);
        (0..workload.processes).for_each(|process| workload.run_process(&handles, process));
        let shown = Totals::of(&collector.snapshot().unwrap(), &NAMES);
        let expected = workload.expected();
        assert_eq!(shown.differences(&expected), Vec::<String>::new());
        assert!(expected.messages.len() > 10 && expected.coordinators[TRACKED].errors > 0);
    }

    #[test]
    fn adding_predictions_is_predicting_the_whole() {
        let workload = Workload { processes: 3, threads: 1, iterations: 200 };
        let mut sum = workload.expected_for(0..1);
        sum.add(&workload.expected_for(1..3));
        assert_eq!(sum, workload.expected());
    }

    #[test]
    fn differences_name_what_differs() {
        let expected = Workload { processes: 1, threads: 1, iterations: 50 }.expected();
        let mut found = expected.clone();
        found.coordinators.get_mut(TRACKED).unwrap().executions += 1;
        found.events.remove("tool_call");
        let lines = found.differences(&expected);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("\"WorkflowCoordinator\" executions: found"), "{lines:?}");
        assert!(lines[1].starts_with("event \"tool_call\": found None"), "{lines:?}");
    }
}
