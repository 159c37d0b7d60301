//! A deterministic workload: every (process, thread) of a [`Workload`] records a sequence of
//! operations drawn from a PRNG seeded by its indices. The same description gives both the
//! operations to record (in `cm-writer` processes or test threads) and, independently of any
//! recording, the exact totals a snapshot must show ([`Workload::expected`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use coordmetrics::{histogram, AnalyticsEvent, Collector, Coordinator, Snapshot};

use crate::rng::Rng;

/// Coordinators that receive durations known in advance: their duration sums and histogram
/// buckets are predicted exactly.
pub const COORDINATORS: [&str; 5] =
    ["ChatCoordinator", "ToolCoordinator", "ContextCoordinator", "ProviderCoordinator", "SessionCoordinator"];
/// The coordinator timed by real trackers: its executions and errors are exact, its
/// durations are whatever the clock measured.
pub const TRACKED: &str = "WorkflowCoordinator";
/// Analytics events.
pub const EVENTS: [&str; 3] = ["tool_call", "session_start", "cache_evict"];

/// One thing a writer thread records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `Coordinator::record(duration, ok)`.
    Record { coordinator: usize, nanos: u64, ok: bool },
    /// `Coordinator::record_failure(duration, message)`.
    Failure { coordinator: usize, nanos: u64, message: String },
    /// A cache hit, through the handle or by name.
    CacheHit { coordinator: usize, by_name: bool },
    /// A cache miss, through the handle or by name.
    CacheMiss { coordinator: usize, by_name: bool },
    /// `count` analytics events, through the handle or by name.
    Event { event: usize, count: u64, by_name: bool },
    /// A tracker on [`TRACKED`] (by handle or by name), failed with `message` if there is one.
    Track { by_name: bool, message: Option<String> },
}

/// `processes` x `threads`, each recording `iterations` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Number of writer processes.
    pub processes: u32,
    /// Threads per process.
    pub threads: u32,
    /// Operations per thread.
    pub iterations: u32,
}

impl Workload {
    /// The operations of thread `thread` of process `process`.
    pub fn ops(&self, process: u32, thread: u32) -> impl Iterator<Item = Op> {
        let mut rng = Rng::new((u64::from(process) << 32) | u64::from(thread));
        (0..self.iterations).map(move |iteration| {
            let tag = format!("p{process} t{thread} i{iteration}");
            random_op(&mut rng, &tag)
        })
    }

    /// What a snapshot must show once every thread of every process has run.
    pub fn expected(&self) -> Totals {
        self.expected_for(0..self.processes)
    }

    /// What a snapshot must show once every thread of `processes` has run.
    pub fn expected_for(&self, processes: Range<u32>) -> Totals {
        let mut totals = Totals::registered();
        for process in processes {
            for thread in 0..self.threads {
                self.ops(process, thread).for_each(|op| totals.add(&op));
            }
        }
        totals.messages.sort();
        totals
    }

    /// Runs every thread of `process`: thread 0 on the calling thread, the others on scoped
    /// threads that have all exited when this returns.
    pub fn run_process(&self, handles: &Handles, process: u32) {
        std::thread::scope(|scope| {
            for thread in 1..self.threads {
                scope.spawn(move || handles.run(self, process, thread));
            }
            handles.run(self, process, 0);
        });
    }
}

fn random_op(rng: &mut Rng, tag: &str) -> Op {
    let coordinator = rng.below(COORDINATORS.len() as u64) as usize;
    let choice = rng.below(32);
    match choice {
        0..=13 => Op::Record { coordinator, nanos: random_nanos(rng), ok: rng.below(5) != 0 },
        14..=15 => {
            Op::Failure { coordinator, nanos: random_nanos(rng), message: format!("{tag}: provider said \"no\"") }
        }
        16..=19 => Op::CacheHit { coordinator, by_name: choice == 19 },
        20..=22 => Op::CacheMiss { coordinator, by_name: choice == 22 },
        23..=26 => Op::Event {
            event: rng.below(EVENTS.len() as u64) as usize,
            count: 1 + rng.below(100),
            by_name: choice == 26,
        },
        _ => Op::Track { by_name: choice % 2 == 1, message: (choice >= 30).then(|| format!("{tag}: tool failed")) },
    }
}

/// Durations from 0 to about 140 s: the underflow and overflow buckets and everything between.
fn random_nanos(rng: &mut Rng) -> u64 {
    let bits = rng.next_u64();
    if bits % 97 == 0 {
        0
    } else {
        ((bits >> 8) % 1000 + 1) << ((bits >> 20) % 28)
    }
}

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
    /// Sum of durations; `None` for [`TRACKED`], whose durations are measured.
    pub duration_sum_ns: Option<u64>,
    /// Non-empty fine histogram buckets; `None` for [`TRACKED`].
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
    /// Every name a [`Handles`] registers, with zero counts.
    fn registered() -> Self {
        let mut coordinators: BTreeMap<String, Counts> = COORDINATORS
            .iter()
            .map(|name| {
                let counts = Counts { duration_sum_ns: Some(0), buckets: Some(BTreeMap::new()), ..Counts::default() };
                (name.to_string(), counts)
            })
            .collect();
        coordinators.insert(TRACKED.into(), Counts::default());
        let events = EVENTS.iter().map(|name| (name.to_string(), 0)).collect();
        Self { coordinators, events, messages: Vec::new() }
    }

    fn add(&mut self, op: &Op) {
        fn coordinator(totals: &mut Totals, index: usize) -> &mut Counts {
            totals.coordinators.get_mut(COORDINATORS[index]).expect("registered")
        }
        let execution = |counts: &mut Counts, nanos: u64, ok: bool| {
            counts.executions += 1;
            counts.errors += u64::from(!ok);
            *counts.duration_sum_ns.as_mut().expect("predicted") += nanos;
            *counts.buckets.as_mut().expect("predicted").entry(histogram::bucket_index(nanos)).or_default() += 1;
        };
        match op {
            Op::Record { coordinator: index, nanos, ok } => execution(coordinator(self, *index), *nanos, *ok),
            Op::Failure { coordinator: index, nanos, message } => {
                execution(coordinator(self, *index), *nanos, false);
                let name = COORDINATORS[*index].to_owned();
                self.messages.push((name, message.clone()));
            }
            Op::CacheHit { coordinator: index, .. } => coordinator(self, *index).cache_hits += 1,
            Op::CacheMiss { coordinator: index, .. } => coordinator(self, *index).cache_misses += 1,
            Op::Event { event, count, .. } => {
                *self.events.get_mut(EVENTS[*event]).expect("registered") += count;
            }
            Op::Track { message, .. } => {
                let tracked = self.coordinators.get_mut(TRACKED).expect("registered");
                tracked.executions += 1;
                if let Some(message) = message {
                    tracked.errors += 1;
                    self.messages.push((TRACKED.to_owned(), message.clone()));
                }
            }
        }
    }

    /// What `snapshot` shows, in the same terms as [`Workload::expected`].
    pub fn of(snapshot: &Snapshot) -> Self {
        let coordinators = snapshot
            .coordinators
            .iter()
            .map(|c| {
                let predicted = c.name != TRACKED;
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

/// Asserts that `snapshot` shows exactly `expected`, listing every difference otherwise.
#[track_caller]
pub fn assert_totals(snapshot: &Snapshot, expected: &Totals) {
    let differences = Totals::of(snapshot).differences(expected);
    assert!(differences.is_empty(), "the snapshot differs from what was recorded:\n  {}", differences.join("\n  "));
}

/// Resolved handles for every name of the workload: the fast path, resolved once per process.
#[derive(Clone, Debug)]
pub struct Handles {
    collector: Collector,
    coordinators: Vec<Coordinator>,
    tracked: Coordinator,
    events: Vec<AnalyticsEvent>,
}

impl Handles {
    /// Registers every name of the workload in `collector`'s segment.
    pub fn resolve(collector: &Collector) -> Self {
        Self {
            collector: collector.clone(),
            coordinators: COORDINATORS.iter().map(|name| collector.coordinator(name)).collect(),
            tracked: collector.coordinator(TRACKED),
            events: EVENTS.iter().map(|name| collector.event(name)).collect(),
        }
    }

    /// The handle of [`TRACKED`].
    pub fn tracked(&self) -> &Coordinator {
        &self.tracked
    }

    /// The handle of `COORDINATORS[index]`.
    pub fn coordinator(&self, index: usize) -> &Coordinator {
        &self.coordinators[index]
    }

    /// Records every operation of `thread` of `process` on the calling thread.
    pub fn run(&self, workload: &Workload, process: u32, thread: u32) {
        workload.ops(process, thread).for_each(|op| self.apply(&op));
    }

    /// Records one operation.
    pub fn apply(&self, op: &Op) {
        match op {
            Op::Record { coordinator, nanos, ok } => {
                self.coordinators[*coordinator].record(Duration::from_nanos(*nanos), *ok)
            }
            Op::Failure { coordinator, nanos, message } => {
                self.coordinators[*coordinator].record_failure(Duration::from_nanos(*nanos), message)
            }
            Op::CacheHit { coordinator, by_name: false } => self.coordinators[*coordinator].cache_hit(),
            Op::CacheHit { coordinator, by_name: true } => self.collector.record_cache_hit(COORDINATORS[*coordinator]),
            Op::CacheMiss { coordinator, by_name: false } => self.coordinators[*coordinator].cache_miss(),
            Op::CacheMiss { coordinator, by_name: true } => {
                self.collector.record_cache_miss(COORDINATORS[*coordinator])
            }
            Op::Event { event, count, by_name: false } => self.events[*event].record(*count),
            Op::Event { event, count, by_name: true } => self.collector.record_analytics_event(EVENTS[*event], *count),
            Op::Track { by_name: false, message } => {
                let tracker = self.tracked.track();
                if let Some(message) = message {
                    tracker.fail(message);
                }
            }
            Op::Track { by_name: true, message } => {
                let tracker = self.collector.track_coordinator(TRACKED);
                if let Some(message) = message {
                    tracker.fail(message);
                }
            }
        }
    }
}
