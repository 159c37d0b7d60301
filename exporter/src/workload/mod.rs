//! Deterministic workloads, recorded through the real client and predicted exactly: the
//! integration tests' seeded mix ([`Workload`]) and the operations of `coordmetrics bench` are
//! both sequences of [`Op`]s over a set of [`Names`].
//!
//! This module owns the vocabulary of operations, their recording ([`Handles`]) and the
//! integration tests' mix; [`totals`] owns the one predictor of what a snapshot must show
//! once a sequence of operations has been recorded.

use std::ops::Range;
use std::time::Duration;

use coordmetrics::{AnalyticsEvent, Collector, Coordinator};

use coordmetrics_report::sample::Rng;

pub mod totals;

pub use totals::{Counts, Totals};

/// The names that the indices of a workload's [`Op`]s refer to.
#[derive(Clone, Copy, Debug)]
pub struct Names {
    /// Coordinators that receive durations known in advance: their duration sums and
    /// histogram buckets are predicted exactly.
    pub coordinators: &'static [&'static str],
    /// The coordinator timed by real trackers ([`Op::Track`]), if the workload has one: its
    /// executions and errors are exact, its durations are whatever the clock measured.
    pub tracked: Option<&'static str>,
    /// Analytics events.
    pub events: &'static [&'static str],
}

/// Coordinators of [`Workload`] that receive durations known in advance.
pub const COORDINATORS: [&str; 5] =
    ["ChatCoordinator", "ToolCoordinator", "ContextCoordinator", "ProviderCoordinator", "SessionCoordinator"];
/// The coordinator of [`Workload`] timed by real trackers.
pub const TRACKED: &str = "WorkflowCoordinator";
/// Analytics events of [`Workload`].
pub const EVENTS: [&str; 3] = ["tool_call", "session_start", "cache_evict"];
/// Every name of [`Workload`].
pub const NAMES: Names = Names { coordinators: &COORDINATORS, tracked: Some(TRACKED), events: &EVENTS };

/// One thing a writer thread records; indices refer to the workload's [`Names`].
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
    /// A tracker on the tracked coordinator (by handle or by name), failed with `message` if
    /// there is one.
    Track { by_name: bool, message: Option<String> },
}

/// The integration tests' mix: `processes` x `threads`, each recording `iterations`
/// operations drawn from a PRNG seeded by its indices, over [`NAMES`]. It uses every
/// recording call of the client, error messages and trackers included.
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
        let ops = processes.flat_map(|process| (0..self.threads).flat_map(move |thread| self.ops(process, thread)));
        Totals::predict(&NAMES, ops)
    }

    /// Runs every thread of `process` with `handles` (resolved for [`NAMES`]): thread 0 on the
    /// calling thread, the others on scoped threads that have all exited when this returns.
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

/// Resolved handles for every name of a workload: the fast path, resolved once per process.
#[derive(Clone, Debug)]
pub struct Handles {
    collector: Collector,
    names: Names,
    coordinators: Vec<Coordinator>,
    tracked: Option<Coordinator>,
    events: Vec<AnalyticsEvent>,
}

impl Handles {
    /// Registers every name of `names` in `collector`'s segment, in order: coordinators, the
    /// tracked coordinator, events.
    pub fn resolve(collector: &Collector, names: &Names) -> Self {
        Self {
            collector: collector.clone(),
            names: *names,
            coordinators: names.coordinators.iter().map(|name| collector.coordinator(name)).collect(),
            tracked: names.tracked.map(|name| collector.coordinator(name)),
            events: names.events.iter().map(|name| collector.event(name)).collect(),
        }
    }

    /// The handle of the tracked coordinator.
    ///
    /// # Panics
    ///
    /// If the workload's [`Names`] have none.
    pub fn tracked(&self) -> &Coordinator {
        self.tracked.as_ref().expect("the workload has no tracked coordinator")
    }

    /// The handle of coordinator `index`.
    pub fn coordinator(&self, index: usize) -> &Coordinator {
        &self.coordinators[index]
    }

    /// Records every operation of `thread` of `process` of `workload` on the calling thread.
    pub fn run(&self, workload: &Workload, process: u32, thread: u32) {
        workload.ops(process, thread).for_each(|op| self.apply(&op));
    }

    /// Records one operation.
    #[inline]
    pub fn apply(&self, op: &Op) {
        let names = &self.names;
        match op {
            Op::Record { coordinator, nanos, ok } => {
                self.coordinators[*coordinator].record(Duration::from_nanos(*nanos), *ok)
            }
            Op::Failure { coordinator, nanos, message } => {
                self.coordinators[*coordinator].record_failure(Duration::from_nanos(*nanos), message)
            }
            Op::CacheHit { coordinator, by_name: false } => self.coordinators[*coordinator].cache_hit(),
            Op::CacheHit { coordinator, by_name: true } => {
                self.collector.record_cache_hit(names.coordinators[*coordinator])
            }
            Op::CacheMiss { coordinator, by_name: false } => self.coordinators[*coordinator].cache_miss(),
            Op::CacheMiss { coordinator, by_name: true } => {
                self.collector.record_cache_miss(names.coordinators[*coordinator])
            }
            Op::Event { event, count, by_name: false } => self.events[*event].record(*count),
            Op::Event { event, count, by_name: true } => {
                self.collector.record_analytics_event(names.events[*event], *count)
            }
            Op::Track { by_name, message } => {
                let tracker = match by_name {
                    false => self.tracked().track(),
                    true => self
                        .collector
                        .track_coordinator(names.tracked.expect("the workload has no tracked coordinator")),
                };
                if let Some(message) = message {
                    tracker.fail(message);
                }
            }
        }
    }
}
