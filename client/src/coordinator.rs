//! [`Coordinator`]: a resolved coordinator's recording methods, the hot path, and where its
//! updates go when it has no block.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coordmetrics_proto::histogram;

use crate::binding;
use crate::collector::count_detached_drop;
use crate::ring;
use crate::shared::{DropReason, Shared};
use crate::sync::Ordering;
use crate::tracker::{CancelGuard, Handle, OwnedTracker, Tracker};
use crate::view::BlockRef;

/// Adds `n` to a counter that only the current thread writes.
///
/// A relaxed load and store instead of `fetch_add`: the slot has a single writer (its owning
/// thread), so no update can be lost, and the store avoids a locked instruction. Readers in
/// other processes see each value atomically, never a torn one.
#[inline(always)]
pub(crate) fn add_owned(cell: &crate::sync::AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
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
pub(crate) enum Target {
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
    pub(crate) fn new(target: Target) -> Self {
        Self { target }
    }

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
            Target::Refused { counted_in: None } => count_detached_drop(),
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
