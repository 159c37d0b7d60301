//! Reading a whole segment into plain values: what the exporter formats.
//!
//! A snapshot sums every writer slot. Each counter only grows, so each sum read later is at
//! least the sum read earlier: totals never go backwards between snapshots. Within a block the
//! error counter is acquire-loaded before the buckets (see `record_into`), so a snapshot never
//! shows more errors than executions.

use crate::sync::Ordering;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use coordmetrics_proto::{histogram, Header};

use crate::collector::{shared_of, Collector};
use crate::names::NameTable;
use crate::ring::{self, RecordedError};
use crate::segment::{OpenError, Segment, SegmentInfo, SegmentOptions};
use crate::writers::{self, WriterState};

/// Totals of one coordinator over every writer slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorTotals {
    /// The name as registered.
    pub name: String,
    /// Executions (the sum of the histogram buckets).
    pub executions: u64,
    /// Failed executions.
    pub errors: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
    /// Sum of durations in nanoseconds.
    pub duration_sum_ns: u64,
    /// Fine histogram buckets ([`histogram::BUCKETS`] of them).
    pub buckets: Vec<u64>,
    /// Executions in progress in live processes.
    pub in_flight: i64,
    /// Sum over live processes of the explicit memory gauge, if any process set one.
    pub explicit_memory_bytes: Option<u64>,
    /// Live processes that recorded anything for this coordinator.
    pub hosts: Vec<u32>,
}

impl CoordinatorTotals {
    /// A coordinator with nothing recorded.
    pub fn empty(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            executions: 0,
            errors: 0,
            cache_hits: 0,
            cache_misses: 0,
            duration_sum_ns: 0,
            buckets: vec![0; histogram::BUCKETS],
            in_flight: 0,
            explicit_memory_bytes: None,
            hosts: Vec::new(),
        }
    }
}

/// One writer slot as the snapshot saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterSummary {
    /// Slot number.
    pub slot: u32,
    /// Its state.
    pub state: WriterState,
}

/// Counts of what the clients could not record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Updates dropped (segment full, no writer slot, unusable name).
    pub updates: u64,
    /// Coordinator names refused by a full table.
    pub coordinators: u64,
    /// Event names refused by a full table.
    pub events: u64,
    /// Writer slot claims refused because every slot was taken.
    pub writers: u64,
}

/// A plain copy of every counter in a segment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was taken.
    pub taken_at: SystemTime,
    /// The segment's header.
    pub info: SegmentInfo,
    /// Per coordinator, sorted by name.
    pub coordinators: Vec<CoordinatorTotals>,
    /// Analytics events and their counts, sorted by name.
    pub events: Vec<(String, u64)>,
    /// Every slot that was ever claimed.
    pub writers: Vec<WriterSummary>,
    /// What could not be recorded.
    pub dropped: Dropped,
    /// Recent errors, newest first.
    pub errors: Vec<RecordedError>,
}

impl Snapshot {
    /// Slots owned by live processes.
    pub fn live_writers(&self) -> usize {
        self.writers.iter().filter(|w| w.state.live_pid().is_some()).count()
    }

    /// Distinct live processes.
    pub fn live_processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.writers.iter().filter_map(|w| w.state.live_pid()).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// A read-only view of an existing segment, for the exporter and `inspect`.
#[derive(Debug)]
pub struct SegmentReader {
    segment: Segment,
    identity: (u64, u64),
}

impl SegmentReader {
    /// Opens the existing segment at `path`; never creates one.
    ///
    /// # Errors
    /// Missing, truncated, foreign, newer-version, half-initialised or corrupt segments.
    pub fn open(path: impl AsRef<Path>, options: &SegmentOptions) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let segment = Segment::open(path, options, false)?;
        let identity = file_identity(path).unwrap_or_default();
        Ok(Self { segment, identity })
    }

    /// What the header says.
    pub fn info(&self) -> &SegmentInfo {
        &self.segment.info
    }

    /// Whether the path now names another file (recreated) or nothing (removed), or the file
    /// shrank below the mapped size (reading it could fault): reopen before the next snapshot.
    pub fn is_stale(&self) -> bool {
        let path = &self.segment.info.path;
        match std::fs::symlink_metadata(path) {
            Ok(metadata) => {
                (metadata.dev(), metadata.ino()) != self.identity || metadata.len() < self.segment.info.size
            }
            Err(_) => true,
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        take(&self.segment)
    }
}

impl Collector {
    /// Reads every counter of this collector's segment (`None` for a disabled collector).
    pub fn snapshot(&self) -> Option<Snapshot> {
        shared_of(self).map(|shared| take(&shared.segment))
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

fn take(segment: &Segment) -> Snapshot {
    let mapping = &segment.mapping;
    let layout = &segment.layout;
    let taken_at = SystemTime::now();
    let table = |first, capacity| NameTable { first, capacity };
    let coordinator_names = table(layout.coordinator_name(0), layout.capacities.coordinators).read_all(mapping);
    let event_names = table(layout.event_name(0), layout.capacities.events).read_all(mapping);
    let writers: Vec<WriterSummary> = (0u32..)
        .zip(writers::states(mapping, layout))
        .filter(|(_, state)| *state != WriterState::Free)
        .map(|(slot, state)| WriterSummary { slot, state })
        .collect();

    let mut coordinators: Vec<CoordinatorTotals> = coordinator_names
        .iter()
        .map(|(index, name)| {
            let mut totals = CoordinatorTotals::empty(name);
            let mut memory_by_process: HashMap<u32, u64> = HashMap::new();
            for writer in &writers {
                let block = layout.writer(writer.slot) + layout.coordinator_block_in_slot(*index);
                let load = |offset: usize| mapping.u64_at(block + offset).load(Ordering::Relaxed);
                // Errors first, with acquire: pairs with the writer's release store after the
                // bucket increment, so errors <= executions in what this snapshot sees.
                let errors = mapping.u64_at(block + writers::ERRORS).load(Ordering::Acquire);
                let mut executions = 0u64;
                for (bucket, total) in totals.buckets.iter_mut().enumerate() {
                    let count = load(writers::BUCKETS + bucket * 8);
                    *total = total.wrapping_add(count);
                    executions = executions.wrapping_add(count);
                }
                let (hits, misses) = (load(writers::CACHE_HITS), load(writers::CACHE_MISSES));
                totals.errors = totals.errors.wrapping_add(errors);
                totals.cache_hits = totals.cache_hits.wrapping_add(hits);
                totals.cache_misses = totals.cache_misses.wrapping_add(misses);
                totals.duration_sum_ns = totals.duration_sum_ns.wrapping_add(load(writers::DURATION_SUM));
                totals.executions = totals.executions.wrapping_add(executions);
                let Some(pid) = writer.state.live_pid() else {
                    continue;
                };
                let in_flight = load(writers::IN_FLIGHT) as i64;
                totals.in_flight = totals.in_flight.wrapping_add(in_flight);
                let memory = load(writers::MEMORY);
                if memory != 0 {
                    let entry = memory_by_process.entry(pid).or_default();
                    *entry = (*entry).max(memory - 1);
                }
                // Garbage counters must not overflow a sum (a panic in debug builds).
                if executions != 0 || hits != 0 || misses != 0 || in_flight != 0 || memory != 0 {
                    totals.hosts.push(pid);
                }
            }
            totals.in_flight = totals.in_flight.max(0);
            if !memory_by_process.is_empty() {
                totals.explicit_memory_bytes =
                    Some(memory_by_process.values().fold(0, |sum, m| sum.saturating_add(*m)));
            }
            totals.hosts.sort_unstable();
            totals.hosts.dedup();
            totals
        })
        .collect();
    coordinators.sort_by(|a, b| a.name.cmp(&b.name));

    let mut events: Vec<(String, u64)> = event_names
        .into_iter()
        .map(|(index, name)| {
            let offset = layout.event_counter_in_slot(index);
            let count = writers.iter().fold(0u64, |sum, w| {
                sum.wrapping_add(mapping.u64_at(layout.writer(w.slot) + offset).load(Ordering::Relaxed))
            });
            (name, count)
        })
        .collect();
    events.sort();

    let header = |field: usize| mapping.u64_at(field).load(Ordering::Relaxed);
    let dropped = Dropped {
        updates: header(core::mem::offset_of!(Header, dropped_updates)),
        coordinators: header(core::mem::offset_of!(Header, dropped_coordinators)),
        events: header(core::mem::offset_of!(Header, dropped_events)),
        writers: header(core::mem::offset_of!(Header, dropped_writers)),
    };
    let mut errors = ring::read_all(mapping, layout);
    for error in &mut errors {
        error.coordinator_name = error
            .coordinator
            .and_then(|index| coordinator_names.iter().find(|(i, _)| *i == index))
            .map(|(_, name)| name.clone());
    }

    Snapshot { taken_at, info: segment.info.clone(), coordinators, events, writers, dropped, errors }
}
