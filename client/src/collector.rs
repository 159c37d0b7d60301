//! [`Collector`]: the handle on a segment that resolves coordinators and events, records by
//! name, resets, and counts the updates of collectors that have no segment.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use crate::binding;
use crate::coordinator::{add_owned, Target};
use crate::segment::{OpenError, Segment, SegmentInfo, SegmentOptions, DEFAULT_SEGMENT_PATH, SEGMENT_ENV};
use crate::shared::{DropReason, Names, Shared};
use crate::sync::Ordering;
use crate::tracker::Tracker;
use crate::view::BlockRef;
use crate::{AnalyticsEvent, Coordinator};

/// Updates dropped by collectors that have no segment at all (it could not be opened).
static DETACHED_DROPS: AtomicU64 = AtomicU64::new(0);

/// Counts one update of a collector that has no segment.
#[cold]
pub(crate) fn count_detached_drop() {
    DETACHED_DROPS.fetch_add(1, Ordering::Relaxed);
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
        Coordinator::new(target)
    }

    /// Resolves an analytics event by name, for repeated recording.
    pub fn event(&self, name: &str) -> AnalyticsEvent {
        let index = self.shared.as_ref().and_then(|shared| shared.resolve(Names::Events, name));
        AnalyticsEvent::new(self.shared.clone(), index)
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
            return count_detached_drop();
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
