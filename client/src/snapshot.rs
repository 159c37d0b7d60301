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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coordmetrics_proto::histogram;

use crate::collector::{shared_of, Collector};
use crate::names::NameTable;
use crate::pool;
use crate::reset;
use crate::ring::{self, RecordedError};
use crate::segment::{OpenError, Segment, SegmentInfo, SegmentOptions};
use crate::view::{BlockRef, HeaderRef, SlotRef};
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
    /// Live processes (their [`WriterSummary::process`] tokens) that recorded anything for
    /// this coordinator.
    pub hosts: Vec<u64>,
}

impl CoordinatorTotals {
    /// Adds the counters of `block` (errors first, with acquire: it pairs with the writer's
    /// release store after the bucket increment, so errors <= executions in the sums); returns
    /// the block's executions, hits and misses.
    pub(crate) fn add_block(&mut self, block: BlockRef<'_>) -> (u64, u64, u64) {
        let errors = block.errors().load(Ordering::Acquire);
        let mut executions = 0u64;
        for (total, bucket) in self.buckets.iter_mut().zip(block.buckets()) {
            let count = bucket.load(Ordering::Relaxed);
            *total = total.wrapping_add(count);
            executions = executions.wrapping_add(count);
        }
        let hits = block.cache_hits().load(Ordering::Relaxed);
        let misses = block.cache_misses().load(Ordering::Relaxed);
        self.errors = self.errors.wrapping_add(errors);
        self.cache_hits = self.cache_hits.wrapping_add(hits);
        self.cache_misses = self.cache_misses.wrapping_add(misses);
        self.duration_sum_ns = self.duration_sum_ns.wrapping_add(block.duration_sum_ns().load(Ordering::Relaxed));
        self.executions = self.executions.wrapping_add(executions);
        (executions, hits, misses)
    }

    /// Stores these counters into the (new, private) block `block`: a reset's baseline.
    pub(crate) fn store_into(&self, block: BlockRef<'_>) {
        for (bucket, count) in block.buckets().zip(&self.buckets) {
            bucket.store(*count, Ordering::Relaxed);
        }
        block.cache_hits().store(self.cache_hits, Ordering::Relaxed);
        block.cache_misses().store(self.cache_misses, Ordering::Relaxed);
        block.duration_sum_ns().store(self.duration_sum_ns, Ordering::Relaxed);
        block.errors().store(self.errors, Ordering::Relaxed);
    }

    /// Subtracts a reset's baseline (what was counted before the reset).
    fn subtract(&mut self, baseline: &Self) {
        for (total, before) in self.buckets.iter_mut().zip(&baseline.buckets) {
            *total = total.saturating_sub(*before);
        }
        self.executions = self.buckets.iter().fold(0, |sum, count| sum.saturating_add(*count));
        self.errors = self.errors.saturating_sub(baseline.errors).min(self.executions);
        self.cache_hits = self.cache_hits.saturating_sub(baseline.cache_hits);
        self.cache_misses = self.cache_misses.saturating_sub(baseline.cache_misses);
        self.duration_sum_ns = self.duration_sum_ns.saturating_sub(baseline.duration_sum_ns);
    }

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
    /// Random token of its (last) owning process: tells processes apart where pids do not.
    pub process: u64,
}

/// What a live process published about itself in its writer slots (the newest publication).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessGauges {
    /// The process's token.
    pub process: u64,
    /// Its pid, in its own pid namespace.
    pub pid: u32,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// CPU time used so far (user and system).
    pub cpu_time: Duration,
    /// When it published them.
    pub published: SystemTime,
}

/// Counts of what the clients could not record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Updates dropped, all reasons together.
    pub updates: u64,
    /// Updates dropped because every writer slot belonged to a live process.
    pub no_writer: u64,
    /// Updates dropped because no block could be had (pool exhausted, file system full).
    pub no_block: u64,
    /// Updates dropped because their coordinator or event name was refused.
    pub name: u64,
    /// Block claims refused (pool exhausted, file system full).
    pub blocks: u64,
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
    /// The gauges of every live process that published them.
    pub processes: Vec<ProcessGauges>,
    /// Blocks taken from the pool, and its capacity.
    pub blocks_in_use: (u32, u32),
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

    /// The pids of the distinct live processes (told apart by their tokens: two processes
    /// in different pid namespaces may have the same pid).
    pub fn live_processes(&self) -> Vec<u32> {
        let mut processes: Vec<(u32, u64)> =
            self.writers.iter().filter_map(|w| Some((w.state.live_pid()?, w.process))).collect();
        processes.sort_unstable();
        processes.dedup();
        processes.into_iter().map(|(pid, _)| pid).collect()
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
    /// shrank below the mapped size (reading it could fault), or it was lost under this
    /// reader: reopen before the next snapshot.
    pub fn is_stale(&self) -> bool {
        let path = &self.segment.info.path;
        let changed = match std::fs::symlink_metadata(path) {
            Ok(metadata) => {
                (metadata.dev(), metadata.ino()) != self.identity || metadata.len() < self.segment.info.size
            }
            Err(_) => true,
        };
        changed || self.segment.mapping.is_lost()
    }

    /// Reads every counter. If the segment is truncated meanwhile, what could not be read
    /// reads as zero: use [`SegmentReader::try_snapshot`] where that matters.
    pub fn snapshot(&self) -> Snapshot {
        take(&self.segment)
    }

    /// Reads every counter, or says the segment was truncated under this reader (the
    /// snapshot would then be partly zero, so it is not returned).
    ///
    /// # Errors
    /// [`OpenError::Lost`] when the file shrank before or during the read.
    pub fn try_snapshot(&self) -> Result<Snapshot, OpenError> {
        let lost = || OpenError::Lost(self.segment.info.path.clone());
        if self.segment.file_is_gone() {
            self.segment.mapping.abandon();
            return Err(lost());
        }
        let snapshot = take(&self.segment);
        if self.segment.mapping.is_lost() {
            return Err(lost());
        }
        Ok(snapshot)
    }
}

impl Collector {
    /// Reads every counter of this collector's segment (`None` for a disabled collector).
    pub fn snapshot(&self) -> Option<Snapshot> {
        shared_of(self).map(|shared| take(&shared.segment))
    }

    /// The counters of coordinator `name` (executions, errors, latency buckets and sum, cache
    /// hits and misses), summed over every writer slot as a [`Snapshot`] sums them, without
    /// reading the rest of the segment or asking which writers are alive: for a query about one
    /// coordinator. The gauges (in flight, memory, hosts), which need that, are left empty.
    /// `None` for a disabled collector or a name no process registered.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let metrics = coordmetrics::Collector::open(dir.path().join("segment"))?;
    /// metrics.coordinator("ChatCoordinator").cache_hit();
    /// assert_eq!(metrics.coordinator_totals("ChatCoordinator").unwrap().cache_hits, 1);
    /// assert!(metrics.coordinator_totals("NeverUsed").is_none());
    /// # Ok::<(), coordmetrics::OpenError>(())
    /// ```
    pub fn coordinator_totals(&self, name: &str) -> Option<CoordinatorTotals> {
        let shared = shared_of(self)?;
        let (index, name) = shared.find_coordinator(name)?;
        let (mapping, layout) = (&shared.segment.mapping, &shared.segment.layout);
        let mut totals = counters_of(&shared.segment, name, index);
        if let Some(baseline) = reset::coordinator_baseline(mapping, layout, index) {
            totals.subtract(&baseline);
        }
        Some(totals)
    }
}

/// The counters of coordinator `index` summed over every writer slot, before any reset's
/// baseline is subtracted.
pub(crate) fn counters_of(segment: &Segment, name: String, index: u32) -> CoordinatorTotals {
    let (mapping, layout) = (&segment.mapping, &segment.layout);
    let mut totals = CoordinatorTotals::empty(name);
    for block in (0..layout.capacities.writers).filter_map(|slot| writers::block_of(mapping, layout, slot, index)) {
        totals.add_block(block);
    }
    totals
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
        .zip(writers::states(mapping, layout, &segment.probe))
        .filter(|(_, state)| *state != WriterState::Free)
        .map(|(slot, state)| {
            let process = SlotRef::at(mapping, layout.writer_slot(slot)).process().load(Ordering::Relaxed);
            WriterSummary { slot, state, process }
        })
        .collect();

    let mut totals_by_index: HashMap<u32, CoordinatorTotals> =
        coordinator_names.iter().map(|(index, name)| (*index, CoordinatorTotals::empty(name))).collect();
    // Per coordinator and live process: the explicit memory gauge set last, with its order.
    let mut memory: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for writer in &writers {
        let live = writer.state.live_pid().is_some();
        for (index, block) in writers::indexed_blocks_of(mapping, layout, writer.slot) {
            let Some(totals) = totals_by_index.get_mut(&index) else { continue };
            let (executions, hits, misses) = totals.add_block(block);
            if !live {
                continue; // gauges count live processes only
            }
            let in_flight = block.in_flight().load(Ordering::Relaxed) as i64;
            totals.in_flight = totals.in_flight.wrapping_add(in_flight);
            let order = block.memory_set_order().load(Ordering::Acquire);
            let set = block.memory_bytes_plus_one().load(Ordering::Relaxed);
            if set != 0 {
                let latest = memory.entry((index, writer.process)).or_insert((0, 0));
                if order >= latest.0 {
                    *latest = (order, set - 1);
                }
            }
            if executions != 0 || hits != 0 || misses != 0 || in_flight != 0 || set != 0 {
                totals.hosts.push(writer.process);
            }
        }
    }
    for ((index, _), (_, bytes)) in memory {
        if let Some(totals) = totals_by_index.get_mut(&index) {
            // Saturating: garbage counters must not overflow a sum (a panic in debug builds).
            totals.explicit_memory_bytes = Some(totals.explicit_memory_bytes.unwrap_or(0).saturating_add(bytes));
        }
    }
    for (index, totals) in &mut totals_by_index {
        if let Some(baseline) = reset::coordinator_baseline(mapping, layout, *index) {
            totals.subtract(&baseline);
        }
    }
    let mut coordinators: Vec<CoordinatorTotals> = totals_by_index
        .into_values()
        .map(|mut totals| {
            totals.in_flight = totals.in_flight.max(0);
            totals.hosts.sort_unstable();
            totals.hosts.dedup();
            totals
        })
        .collect();
    coordinators.sort_by(|a, b| a.name.cmp(&b.name));

    let mut events: Vec<(String, u64)> = event_names
        .into_iter()
        .map(|(index, name)| {
            let baseline = reset::event_baseline(mapping, layout, index);
            let slots = writers.iter().map(|w| w.slot);
            (name, reset::event_total(mapping, layout, slots, index).saturating_sub(baseline))
        })
        .collect();
    events.sort();

    let header = HeaderRef::at(mapping, 0);
    let load = |counter: &crate::sync::AtomicU64| counter.load(Ordering::Relaxed);
    let dropped = Dropped {
        updates: load(header.dropped_updates()),
        no_writer: load(header.dropped_no_writer()),
        no_block: load(header.dropped_no_block()),
        name: load(header.dropped_name()),
        blocks: load(header.dropped_blocks()),
        coordinators: load(header.dropped_coordinators()),
        events: load(header.dropped_events()),
        writers: load(header.dropped_writers()),
    };
    let mut errors = ring::read_all(mapping, layout);
    for error in &mut errors {
        error.coordinator_name = error
            .coordinator
            .and_then(|index| coordinator_names.iter().find(|(i, _)| *i == index))
            .map(|(_, name)| name.clone());
    }

    Snapshot {
        taken_at,
        info: segment.info.clone(),
        coordinators,
        events,
        processes: process_gauges(segment, &writers),
        blocks_in_use: (pool::blocks_in_use(mapping, layout), layout.blocks()),
        writers,
        dropped,
        errors,
    }
}

/// The newest gauges each live process published in any of its slots.
fn process_gauges(segment: &Segment, writers: &[WriterSummary]) -> Vec<ProcessGauges> {
    let mut newest: HashMap<u64, ProcessGauges> = HashMap::new();
    for writer in writers {
        let Some(pid) = writer.state.live_pid() else { continue };
        let slot = SlotRef::at(&segment.mapping, segment.layout.writer_slot(writer.slot));
        let published_ns = slot.gauges_unix_ns().load(Ordering::Acquire);
        if published_ns == 0 {
            continue;
        }
        let gauges = ProcessGauges {
            process: writer.process,
            pid,
            rss_bytes: slot.rss_bytes().load(Ordering::Relaxed),
            cpu_time: Duration::from_nanos(slot.cpu_time_ns().load(Ordering::Relaxed)),
            published: UNIX_EPOCH + Duration::from_nanos(published_ns),
        };
        let entry = newest.entry(writer.process).or_insert(gauges);
        if gauges.published > entry.published {
            *entry = gauges;
        }
    }
    let mut processes: Vec<ProcessGauges> = newest.into_values().collect();
    processes.sort_by_key(|p| (p.pid, p.process));
    processes
}
