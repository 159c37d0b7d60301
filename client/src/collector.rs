//! The recording API: [`Collector`], [`Coordinator`], [`Tracker`], [`AnalyticsEvent`].

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use coordmetrics_proto::{histogram, Header};

use crate::binding;
use crate::names::{truncate_name, NameError, NameTable};
use crate::ring;
use crate::segment::{OpenError, Segment, SegmentInfo, SegmentOptions, DEFAULT_SEGMENT_PATH, SEGMENT_ENV};
use crate::writers::{self, Claimant};

const DROPPED_UPDATES: usize = core::mem::offset_of!(Header, dropped_updates);
const DROPPED_COORDINATORS: usize = core::mem::offset_of!(Header, dropped_coordinators);
const DROPPED_EVENTS: usize = core::mem::offset_of!(Header, dropped_events);
const DROPPED_WRITERS: usize = core::mem::offset_of!(Header, dropped_writers);

/// Updates dropped by collectors that have no segment at all (it could not be opened).
static DETACHED_DROPS: AtomicU64 = AtomicU64::new(0);
static NEXT_COLLECTOR_ID: AtomicU64 = AtomicU64::new(1);

/// Adds `n` to a counter that only the current thread writes.
///
/// A relaxed load and store instead of `fetch_add`: the slot has a single writer (its owning
/// thread), so no update can be lost, and the store avoids a locked instruction. Readers in
/// other processes see each value atomically, never a torn one.
#[inline(always)]
fn add_owned(cell: &crate::sync::AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// An open segment, shared by every handle of one collector.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) segment: Segment,
    coordinators: NameTable,
    events: NameTable,
    /// Per writer slot: fork generation + 1 if a thread of this process claimed it through
    /// this collector, else 0. Lets the collector park its slots when it is dropped, without
    /// a lock that a fork could leave held.
    claimed: Box<[AtomicU64]>,
    /// The slot holding this process's memory gauges: slot + 1 in the low 32 bits, fork
    /// generation in the high 32; 0 before the first gauge is set.
    gauge_slot: AtomicU64,
}

impl Shared {
    fn new(segment: Segment) -> Self {
        let layout = segment.layout;
        let coordinators = NameTable { first: layout.coordinator_name(0), capacity: layout.capacities.coordinators };
        let events = NameTable { first: layout.event_name(0), capacity: layout.capacities.events };
        let claimed = (0..layout.capacities.writers).map(|_| AtomicU64::new(0)).collect();
        Self {
            id: NEXT_COLLECTOR_ID.fetch_add(1, Ordering::Relaxed),
            segment,
            coordinators,
            events,
            claimed,
            gauge_slot: AtomicU64::new(0),
        }
    }

    fn mapping(&self) -> &crate::raw::Mapping {
        &self.segment.mapping
    }

    pub(crate) fn slot_offset(&self, slot: u32) -> usize {
        self.segment.layout.writer(slot)
    }

    pub(crate) fn claim_slot(&self, claimant: Claimant, generation: u64) -> Option<u32> {
        let slot = writers::claim(self.mapping(), &self.segment.layout, claimant);
        match slot {
            Some(slot) => self.claimed[slot as usize].store(generation + 1, Ordering::Relaxed),
            None => {
                self.mapping().u64_at(DROPPED_WRITERS).fetch_add(1, Ordering::Relaxed);
            }
        }
        slot
    }

    pub(crate) fn release_slot(&self, slot: u32, claimant: Claimant, generation: u64) {
        let mark = &self.claimed[slot as usize];
        if mark.compare_exchange(generation + 1, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            writers::park(self.mapping(), &self.segment.layout, slot, claimant);
        }
    }

    fn drop_update(&self) {
        self.mapping().u64_at(DROPPED_UPDATES).fetch_add(1, Ordering::Relaxed);
    }

    fn resolve(&self, table: &NameTable, name: &str, full_counter: usize) -> Option<u32> {
        match table.find_or_insert(self.mapping(), truncate_name(name)) {
            Ok(index) => Some(index),
            Err(NameError::Full) => {
                self.mapping().u64_at(full_counter).fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(NameError::Empty) => None,
        }
    }

    /// The slot that holds this process's gauges, claiming the current thread's if none yet.
    fn gauge_slot_offset(self: &Arc<Self>) -> Option<usize> {
        let generation = crate::raw::fork_generation() as u32;
        let current = self.gauge_slot.load(Ordering::Acquire);
        if current as u32 != 0 && (current >> 32) as u32 == generation {
            return Some(self.slot_offset(current as u32 - 1));
        }
        let offset = binding::current_slot(self)?;
        let slot = ((offset - self.slot_offset(0)) / self.segment.layout.writer_stride()) as u32;
        let proposed = (u64::from(generation) << 32) | u64::from(slot + 1);
        match self.gauge_slot.compare_exchange(current, proposed, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(offset),
            Err(winner) => Some(self.slot_offset(winner as u32 - 1)),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let generation = crate::raw::fork_generation();
        let layout = self.segment.layout;
        let gauges = self.gauge_slot.load(Ordering::Relaxed);
        if gauges as u32 != 0 && (gauges >> 32) as u32 == generation as u32 {
            // A closed collector reports no memory any more.
            let base = layout.writer(gauges as u32 - 1);
            for index in 0..layout.capacities.coordinators {
                let block = base + layout.coordinator_block_in_slot(index);
                self.segment.mapping.u64_at(block + writers::MEMORY).store(0, Ordering::Relaxed);
            }
        }
        let claimant = Claimant::current();
        for slot in 0..layout.capacities.writers {
            self.release_slot(slot, claimant, generation);
        }
    }
}

/// A handle on a segment: resolves coordinators and records analytics events.
///
/// Cheap to clone; every clone records into the same segment. A collector whose segment could
/// not be opened records nothing and counts every update as dropped
/// ([`Collector::dropped_updates`]): the host program never fails because of metrics.
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("segment");
/// let metrics = coordmetrics::Collector::open(&path)?;
/// let chat = metrics.coordinator("ChatCoordinator");
/// {
///     let _timer = chat.track(); // one execution, timed until the end of the block
/// }
/// chat.cache_hit();
/// metrics.record_analytics_event("tool_call", 5);
/// # Ok::<(), coordmetrics::OpenError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Collector {
    shared: Option<Arc<Shared>>,
}

impl Collector {
    /// Opens the segment at `path`, creating it with default capacities and mode 0660 if it
    /// does not exist.
    ///
    /// # Errors
    /// The segment cannot be created or opened, or is not a valid segment of this version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, &SegmentOptions::default())
    }

    /// Opens or creates the segment at `path` with the given options.
    ///
    /// # Errors
    /// As [`Collector::open`].
    pub fn open_with(path: impl AsRef<Path>, options: &SegmentOptions) -> Result<Self, OpenError> {
        let segment = Segment::open(path.as_ref(), options, true)?;
        Ok(Self { shared: Some(Arc::new(Shared::new(segment))) })
    }

    /// The process-wide collector on the segment named by `COORDMETRICS_SEGMENT` (default
    /// `/dev/shm/coordmetrics`). If it cannot be opened, the reason is printed once to stderr
    /// and the collector records nothing.
    pub fn global() -> &'static Collector {
        static GLOBAL: OnceLock<Collector> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let path = std::env::var_os(SEGMENT_ENV).unwrap_or_else(|| DEFAULT_SEGMENT_PATH.into());
            Self::open(&path).unwrap_or_else(|error| {
                eprintln!("coordmetrics: metrics disabled: {error}");
                Self::disabled()
            })
        })
    }

    /// A collector that records nothing (every update counts as dropped).
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    /// Whether this collector writes into a segment.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// What the segment's header says, if there is a segment.
    pub fn segment_info(&self) -> Option<&SegmentInfo> {
        self.shared.as_ref().map(|s| &s.segment.info)
    }

    /// Resolves a coordinator by name: do this once and keep the handle, it is the fast path.
    ///
    /// Names longer than 120 bytes are cut at a character boundary. An empty name, or a name
    /// that no longer fits in a full table, gives a handle whose updates are counted as dropped.
    pub fn coordinator(&self, name: &str) -> Coordinator {
        // A refused name is counted in `dropped_coordinators`; each update through the
        // handle is then counted once, as a dropped update, when it is attempted.
        let index =
            self.shared.as_ref().and_then(|shared| shared.resolve(&shared.coordinators, name, DROPPED_COORDINATORS));
        let target = match (&self.shared, index) {
            (Some(shared), Some(index)) => Target::Resolved {
                block: shared.segment.layout.coordinator_block_in_slot(index),
                index,
                shared: Arc::clone(shared),
            },
            _ => Target::Refused { counted_in: self.shared.clone() },
        };
        Coordinator { target }
    }

    /// Resolves an analytics event by name, for repeated recording.
    pub fn event(&self, name: &str) -> AnalyticsEvent {
        let resolved = self.shared.as_ref().and_then(|shared| {
            let index = shared.resolve(&shared.events, name, DROPPED_EVENTS)?;
            Some(shared.segment.layout.event_counter_in_slot(index))
        });
        AnalyticsEvent { shared: self.shared.clone(), counter: resolved }
    }

    /// Adds `count` occurrences of analytics event `event`.
    pub fn record_analytics_event(&self, event: &str, count: u64) {
        self.event(event).record(count);
    }

    /// Starts timing one execution of coordinator `name` (the original collector's
    /// `track_coordinator`). Prefer [`Collector::coordinator`] + [`Coordinator::track`] in loops.
    pub fn track_coordinator(&self, name: &str) -> Tracker<'static> {
        self.coordinator(name).track_owned()
    }

    /// Records a cache hit for coordinator `name`. Prefer a [`Coordinator`] handle in loops:
    /// this looks the name up every time.
    pub fn record_cache_hit(&self, name: &str) {
        self.add_by_name(name, writers::CACHE_HITS);
    }

    /// Records a cache miss for coordinator `name`.
    pub fn record_cache_miss(&self, name: &str) {
        self.add_by_name(name, writers::CACHE_MISSES);
    }

    /// Adds one to counter `field` of coordinator `name`, as its handle would, without making
    /// a handle (whose reference count two locked instructions would change).
    fn add_by_name(&self, name: &str, field: usize) {
        let Some(shared) = &self.shared else {
            DETACHED_DROPS.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let index = shared.resolve(&shared.coordinators, name, DROPPED_COORDINATORS);
        match (index, binding::current_slot(shared)) {
            (Some(index), Some(slot)) => {
                let block = shared.segment.layout.coordinator_block_in_slot(index);
                add_owned(shared.mapping().u64_at(slot + block + field), 1);
            }
            _ => shared.drop_update(),
        }
    }

    /// Updates that could not be recorded: the segment's count (full tables, no writer slot),
    /// or this process's count when there is no segment.
    pub fn dropped_updates(&self) -> u64 {
        match &self.shared {
            Some(shared) => shared.mapping().u64_at(DROPPED_UPDATES).load(Ordering::Relaxed),
            None => DETACHED_DROPS.load(Ordering::Relaxed),
        }
    }
}

/// A resolved coordinator: records executions, latency, errors, cache traffic and memory.
///
/// `Clone + Send + Sync`. Every method is wait-free: a thread-local lookup and a few relaxed
/// atomic loads and stores into the calling thread's own writer slot.
#[derive(Clone, Debug)]
pub struct Coordinator {
    target: Target,
}

/// Where a coordinator's updates go.
#[derive(Clone, Debug)]
enum Target {
    /// Into the coordinator's block of the calling thread's writer slot.
    Resolved {
        shared: Arc<Shared>,
        /// Offset of the coordinator's block within a writer slot.
        block: usize,
        /// Index in the coordinator table.
        index: u32,
    },
    /// Nowhere: the name was refused (empty, or the table was full), or there is no segment.
    /// Updates are counted as dropped in the collector's segment, if it has one.
    Refused { counted_in: Option<Arc<Shared>> },
}

impl Coordinator {
    /// The calling thread's block for this coordinator, or `None` after counting a drop.
    ///
    /// The fast path is one match, one thread-local compare and an add; everything else is
    /// out of line so that callers stay small enough to inline.
    #[inline(always)]
    fn block(&self) -> Option<(&Shared, usize)> {
        if let Target::Resolved { shared, block, .. } = &self.target {
            if let Some(slot) = binding::current_slot(shared) {
                return Some((shared, slot + block));
            }
        }
        self.count_drop();
        None
    }

    /// Counts one update that could not be recorded.
    #[cold]
    #[inline(never)]
    fn count_drop(&self) {
        match &self.target {
            Target::Resolved { shared, .. } | Target::Refused { counted_in: Some(shared) } => shared.drop_update(),
            Target::Refused { counted_in: None } => {
                DETACHED_DROPS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The segment this handle belongs to, resolved or not.
    fn segment(&self) -> Option<&Arc<Shared>> {
        match &self.target {
            Target::Resolved { shared, .. } => Some(shared),
            Target::Refused { counted_in } => counted_in.as_ref(),
        }
    }

    /// Starts timing one execution; it is recorded when the returned tracker is dropped
    /// (as failed if the thread is panicking), or by [`Tracker::fail`].
    #[inline]
    pub fn track(&self) -> Tracker<'_> {
        self.add_in_flight(1);
        Tracker { coordinator: Handle::Borrowed(self), start: Some(Instant::now()) }
    }

    /// Like [`Coordinator::track`], with a tracker that owns a clone of the handle: for
    /// executions that outlive the borrow (language bindings, callbacks). Costs a reference
    /// count increment more than `track`.
    pub fn track_owned(&self) -> OwnedTracker {
        self.add_in_flight(1);
        Tracker { coordinator: Handle::Owned(self.clone()), start: Some(Instant::now()) }
    }

    /// Times `future` as one execution: recorded when it completes, or as failed with the
    /// message "cancelled" if it is dropped before completing.
    pub async fn track_async<F: Future>(&self, future: F) -> F::Output {
        let guard = CancelGuard(Some(self.track()));
        let output = future.await;
        guard.finish();
        output
    }

    /// Times `future` as one execution that fails when it returns `Err`, with the error's
    /// text as the message.
    pub async fn track_result_async<T, E, F>(&self, future: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: Future<Output = Result<T, E>>,
    {
        let mut guard = CancelGuard(Some(self.track()));
        let output = future.await;
        if let (Err(error), Some(tracker)) = (&output, guard.0.take()) {
            tracker.fail(&error.to_string());
        }
        guard.finish();
        output
    }

    /// Records one execution that took `duration`, successful or not.
    #[inline]
    pub fn record(&self, duration: Duration, success: bool) {
        if let Some((shared, block)) = self.block() {
            record_into(shared, block, duration, success);
        }
    }

    /// Records one failed execution with its message in the error ring.
    pub fn record_failure(&self, duration: Duration, message: &str) {
        self.record(duration, false);
        if let Some(shared) = self.segment() {
            let index = match self.target {
                Target::Resolved { index, .. } => Some(index),
                Target::Refused { .. } => None,
            };
            ring::push(shared.mapping(), &shared.segment.layout, index, std::process::id(), message);
        }
    }

    /// Records a cache hit.
    #[inline]
    pub fn cache_hit(&self) {
        if let Some((shared, block)) = self.block() {
            add_owned(shared.mapping().u64_at(block + writers::CACHE_HITS), 1);
        }
    }

    /// Records a cache miss.
    #[inline]
    pub fn cache_miss(&self) {
        if let Some((shared, block)) = self.block() {
            add_owned(shared.mapping().u64_at(block + writers::CACHE_MISSES), 1);
        }
    }

    /// Sets this process's memory gauge for the coordinator, replacing the exporter's
    /// estimate from the resident memory of the processes that host it.
    pub fn set_memory_bytes(&self, bytes: u64) {
        let Target::Resolved { shared, block, .. } = &self.target else { return };
        if let Some(slot) = shared.gauge_slot_offset() {
            // Any thread of the process may store the gauge: it is a plain store, never a
            // read-modify-write, so the last value set wins.
            shared.mapping().u64_at(slot + block + writers::MEMORY).store(bytes.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// Whether updates through this handle reach a segment.
    pub fn is_recording(&self) -> bool {
        matches!(self.target, Target::Resolved { .. })
    }

    #[inline]
    fn add_in_flight(&self, delta: u64) {
        if let Some((shared, block)) = self.block_quiet() {
            add_owned(shared.mapping().u64_at(block + writers::IN_FLIGHT), delta);
        }
    }

    /// Like `block`, without counting a drop: in-flight bookkeeping is not an update.
    #[inline]
    fn block_quiet(&self) -> Option<(&Shared, usize)> {
        let Target::Resolved { shared, block, .. } = &self.target else { return None };
        Some((shared, binding::current_slot(shared)? + block))
    }
}

#[inline(always)]
fn record_into(shared: &Shared, block: usize, duration: Duration, success: bool) {
    // In 64 bits (saturating after 584 years) rather than `as_nanos`'s 128-bit product.
    let nanos = duration.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(duration.subsec_nanos()));
    let mapping = shared.mapping();
    add_owned(mapping.u64_at(block + writers::BUCKETS + 8 * histogram::bucket_index(nanos)), 1);
    add_owned(mapping.u64_at(block + writers::DURATION_SUM), nanos);
    if !success {
        // Release after the bucket: a reader that acquire-loads `errors` first never sees
        // more errors than executions.
        let errors = mapping.u64_at(block + writers::ERRORS);
        errors.store(errors.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }
}

/// Times one execution of a [`Coordinator`]; records it when dropped.
///
/// `Tracker<'_>` borrows its coordinator (the fast path, [`Coordinator::track`]);
/// [`OwnedTracker`] owns a clone of the handle ([`Coordinator::track_owned`],
/// [`Collector::track_coordinator`]) for executions that outlive the borrow.
#[derive(Debug)]
#[must_use = "a tracker records when it is dropped: bind it to a variable (`let _t = ...`)"]
pub struct Tracker<'a> {
    coordinator: Handle<'a>,
    start: Option<Instant>,
}

/// A tracker that owns its coordinator handle.
pub type OwnedTracker = Tracker<'static>;

/// The coordinator a tracker records into.
#[derive(Debug)]
enum Handle<'a> {
    Borrowed(&'a Coordinator),
    Owned(Coordinator),
}

impl std::ops::Deref for Handle<'_> {
    type Target = Coordinator;

    #[inline]
    fn deref(&self) -> &Coordinator {
        match self {
            Self::Borrowed(coordinator) => coordinator,
            Self::Owned(coordinator) => coordinator,
        }
    }
}

impl Tracker<'_> {
    /// Records the execution as failed, with `message` in the error ring.
    pub fn fail(mut self, message: &str) {
        if let Some(start) = self.start.take() {
            self.coordinator.add_in_flight(u64::MAX);
            self.coordinator.record_failure(start.elapsed(), message);
        }
    }

    /// Records the execution now, successful or not.
    pub fn finish(mut self, success: bool) {
        self.complete(success);
    }

    /// Time since the tracker started.
    pub fn elapsed(&self) -> Duration {
        self.start.map_or(Duration::ZERO, |s| s.elapsed())
    }

    #[inline]
    fn complete(&mut self, success: bool) {
        if let Some(start) = self.start.take() {
            let elapsed = start.elapsed();
            if let Some((shared, block)) = self.coordinator.block() {
                let mapping = shared.mapping();
                add_owned(mapping.u64_at(block + writers::IN_FLIGHT), u64::MAX);
                record_into(shared, block, elapsed, success);
            }
        }
    }
}

impl Drop for Tracker<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.start.is_some() {
            if std::thread::panicking() {
                if let Some(start) = self.start.take() {
                    self.coordinator.add_in_flight(u64::MAX);
                    self.coordinator.record_failure(start.elapsed(), "panicked");
                }
            } else {
                self.complete(true);
            }
        }
    }
}

/// Fails the tracker it holds with "cancelled" if dropped before [`CancelGuard::finish`]
/// ("panicked" if dropped while the thread unwinds).
struct CancelGuard<'a>(Option<Tracker<'a>>);

impl CancelGuard<'_> {
    fn finish(mut self) {
        if let Some(tracker) = self.0.take() {
            tracker.finish(true);
        }
    }
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        // While unwinding, dropping the tracker records the panic ("panicked"), which is what
        // ended the future: it was not cancelled.
        if let Some(tracker) = self.0.take().filter(|_| !std::thread::panicking()) {
            tracker.fail("cancelled");
        }
    }
}

/// A resolved analytics event.
#[derive(Clone, Debug)]
pub struct AnalyticsEvent {
    shared: Option<Arc<Shared>>,
    /// Offset of the event's counter within a writer slot.
    counter: Option<usize>,
}

impl AnalyticsEvent {
    /// Adds `count` occurrences.
    #[inline]
    pub fn record(&self, count: u64) {
        let Some(shared) = &self.shared else {
            DETACHED_DROPS.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match (self.counter, binding::current_slot(shared)) {
            (Some(counter), Some(slot)) => add_owned(shared.mapping().u64_at(slot + counter), count),
            _ => shared.drop_update(),
        }
    }
}

pub(crate) fn shared_of(collector: &Collector) -> Option<&Arc<Shared>> {
    collector.shared.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_threads() {
        fn thread_safe<T: Clone + Send + Sync>() {}
        thread_safe::<Collector>();
        thread_safe::<Coordinator>();
        thread_safe::<AnalyticsEvent>();
        fn sendable<T: Send>() {}
        sendable::<Tracker<'static>>();
    }
}
