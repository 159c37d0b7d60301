//! The recording API: [`Collector`], [`Coordinator`], [`Tracker`], [`AnalyticsEvent`].

use std::future::Future;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coordmetrics_proto::histogram;

use crate::binding;
use crate::ring;
use crate::segment::{OpenError, Segment, SegmentInfo, SegmentOptions, DEFAULT_SEGMENT_PATH, SEGMENT_ENV};
use crate::shared::{DropReason, Names, Shared};
use crate::sync::Ordering;
use crate::tracker::{CancelGuard, Handle};
use crate::view::BlockRef;

pub use crate::tracker::{OwnedTracker, Tracker};

/// Updates dropped by collectors that have no segment at all (it could not be opened).
static DETACHED_DROPS: AtomicU64 = AtomicU64::new(0);

/// Adds `n` to a counter that only the current thread writes.
///
/// A relaxed load and store instead of `fetch_add`: the slot has a single writer (its owning
/// thread), so no update can be lost, and the store avoids a locked instruction. Readers in
/// other processes see each value atomically, never a torn one.
#[inline(always)]
pub(crate) fn add_owned(cell: &crate::sync::AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
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
        let index = self.shared.as_ref().and_then(|shared| shared.resolve(Names::Coordinators, name));
        let target = match (&self.shared, index) {
            (Some(shared), Some(index)) => Target::Resolved { index, shared: Arc::clone(shared) },
            _ => Target::Refused { counted_in: self.shared.clone() },
        };
        Coordinator { target }
    }

    /// Resolves an analytics event by name, for repeated recording.
    pub fn event(&self, name: &str) -> AnalyticsEvent {
        let index = self.shared.as_ref().and_then(|shared| shared.resolve(Names::Events, name));
        AnalyticsEvent { shared: self.shared.clone(), index }
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
        self.add_by_name(name, |block| block.cache_hits());
    }

    /// Records a cache miss for coordinator `name`.
    pub fn record_cache_miss(&self, name: &str) {
        self.add_by_name(name, |block| block.cache_misses());
    }

    /// Adds one to counter `field` of coordinator `name`, as its handle would, without making
    /// a handle (whose reference count two locked instructions would change).
    fn add_by_name(&self, name: &str, field: impl for<'m> Fn(&BlockRef<'m>) -> &'m crate::sync::AtomicU64) {
        let Some(shared) = &self.shared else {
            DETACHED_DROPS.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(index) = shared.resolve(Names::Coordinators, name) else {
            return shared.drop_update(DropReason::Name);
        };
        let Some(bound) = binding::current_slot(shared) else {
            return shared.drop_update(DropReason::NoWriter);
        };
        if let Some(block) = shared.block(bound, index, true) {
            add_owned(field(&BlockRef::at(shared.mapping(), block)), 1);
        }
    }

    /// Makes every reader of the segment, in every process, count coordinator `name` from zero
    /// again (a per-coordinator baseline that readers subtract: Prometheus sees a counter
    /// reset). Other coordinators and their counts are untouched. False if the coordinator was
    /// never registered, or no block could be had for the baseline.
    pub fn reset_coordinator(&self, name: &str) -> bool {
        let Some(shared) = &self.shared else { return false };
        shared.reset_coordinator(name)
    }

    /// Resets every coordinator and every analytics event of the segment, as
    /// [`Collector::reset_coordinator`] does one.
    pub fn reset_all(&self) {
        if let Some(shared) = &self.shared {
            shared.reset_all();
        }
    }

    /// Updates that could not be recorded: the segment's count (full tables, no writer slot),
    /// or this process's count when there is no segment.
    pub fn dropped_updates(&self) -> u64 {
        match &self.shared {
            Some(shared) => shared.dropped_updates(),
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
    pub(crate) fn block(&self) -> Option<(&Shared, BlockRef<'_>)> {
        if let Target::Resolved { shared, index } = &self.target {
            match binding::current_block(shared, *index, true) {
                Ok(block) => return Some((shared, block)),
                Err(binding::NoBlock::Block) => return None, // the pool counted it
                Err(binding::NoBlock::Slot) => {}
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
            Target::Resolved { shared, .. } => shared.drop_update(DropReason::NoWriter),
            Target::Refused { counted_in: Some(shared) } => shared.drop_update(DropReason::Name),
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
        self.start_execution();
        Tracker::start(Handle::Borrowed(self))
    }

    /// Like [`Coordinator::track`], with a tracker that owns a clone of the handle: for
    /// executions that outlive the borrow (language bindings, callbacks). Costs a reference
    /// count increment more than `track`.
    pub fn track_owned(&self) -> OwnedTracker {
        self.start_execution();
        Tracker::start(Handle::Owned(self.clone()))
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
        if let Some((_, block)) = self.block() {
            record_into(block, duration, success);
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
        if let Some((_, block)) = self.block() {
            add_owned(block.cache_hits(), 1);
        }
    }

    /// Records a cache miss.
    #[inline]
    pub fn cache_miss(&self) {
        if let Some((_, block)) = self.block() {
            add_owned(block.cache_misses(), 1);
        }
    }

    /// Sets this process's memory gauge for the coordinator, replacing the exporter's
    /// estimate from the resident memory of the processes that host it. Of the values the
    /// threads of a process set, the last one set counts.
    pub fn set_memory_bytes(&self, bytes: u64) {
        let Target::Resolved { shared, index } = &self.target else { return };
        if let Some(bound) = binding::current_slot(shared) {
            shared.set_memory_bytes(bound, *index, bytes);
        }
    }

    /// Whether updates through this handle reach a segment.
    pub fn is_recording(&self) -> bool {
        matches!(self.target, Target::Resolved { .. })
    }

    /// Counts one more execution in flight in the calling thread's block. Not an update: a
    /// block that cannot be had is not counted as a drop here (the execution's end is).
    #[inline]
    fn start_execution(&self) {
        if let Some(block) = self.block_quiet() {
            add_owned(block.in_flight(), 1);
        }
    }

    /// Counts one execution fewer in flight (it ended without being recorded here).
    #[inline]
    pub(crate) fn abandon_execution(&self) {
        if let Some(block) = self.block_quiet() {
            add_owned(block.in_flight(), 1u64.wrapping_neg());
        }
    }

    /// Like `block`, without counting a drop: in-flight bookkeeping is not an update.
    #[inline]
    fn block_quiet(&self) -> Option<BlockRef<'_>> {
        let Target::Resolved { shared, index } = &self.target else { return None };
        binding::current_block(shared, *index, false).ok()
    }

    /// Publishes the process's gauges if the calling thread's slot is due for it.
    #[cold]
    #[inline(never)]
    pub(crate) fn refresh_gauges(&self) {
        if let Target::Resolved { shared, .. } = &self.target {
            if let Some(bound) = binding::current_slot(shared) {
                shared.refresh_gauges(bound.slot);
            }
        }
    }
}

/// Records one execution into `block`.
#[inline(always)]
pub(crate) fn record_into(block: BlockRef<'_>, duration: Duration, success: bool) {
    // In 64 bits (saturating after 584 years) rather than `as_nanos`'s 128-bit product.
    let nanos = duration.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(duration.subsec_nanos()));
    add_owned(block.bucket(histogram::bucket_index(nanos)), 1);
    add_owned(block.duration_sum_ns(), nanos);
    if !success {
        // Release after the bucket: a reader that acquire-loads `errors` first never sees
        // more errors than executions.
        let errors = block.errors();
        errors.store(errors.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }
}

/// A resolved analytics event.
#[derive(Clone, Debug)]
pub struct AnalyticsEvent {
    shared: Option<Arc<Shared>>,
    /// Index in the event table, if the name was accepted.
    index: Option<u32>,
}

impl AnalyticsEvent {
    /// Adds `count` occurrences.
    #[inline]
    pub fn record(&self, count: u64) {
        let Some(shared) = &self.shared else {
            DETACHED_DROPS.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(index) = self.index else {
            return shared.drop_update(DropReason::Name);
        };
        match binding::current_slot(shared) {
            // A lost segment's counters are private zero pages: count the update as dropped.
            Some(_) if shared.mapping().is_lost() => shared.drop_update(DropReason::NoWriter),
            Some(bound) => {
                let counter = shared.segment.layout.event_counter(bound.slot, index);
                add_owned(shared.mapping().u64_at(counter), count);
            }
            None => shared.drop_update(DropReason::NoWriter),
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
