//! One open segment and what this process owns in it: its locks, the writer slots its threads
//! hold, the names it resolved; shared by every handle of one collector.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::SystemTime;

use coordmetrics_proto::{Layout, BLOCK_REFERENCE_UNIT};

use crate::binding::Bound;
use crate::liveness::Locks;
use crate::names::{stored_name, NameError, NameTable};
use crate::pool::{self, NoBlock};
use crate::raw::{self, ForkLocal, Mapping};
use crate::reset;
use crate::segment::Segment;
use crate::sync::Ordering;
use crate::view::{BlockRef, HeaderRef, SlotRef};
use crate::writers::{self, Claimant, Holdings, Slots};

static NEXT_COLLECTOR_ID: AtomicU64 = AtomicU64::new(1);

/// Why an update could not be recorded: each reason has its counter in the segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Every writer slot belongs to a live process.
    NoWriter,
    /// No block could be had from the pool.
    NoBlock,
    /// The coordinator or event name was refused.
    Name,
}

/// Which name table a name goes to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Names {
    Coordinators,
    Events,
}

/// An open segment, shared by every handle of one collector.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) segment: Segment,
    coordinators: NameTable,
    events: NameTable,
    /// Which slots this collector's threads hold.
    holdings: Holdings,
    /// This collector's own open file description and its locks: a forked child makes its
    /// own, so that the parent's locks die with the parent.
    locks: ForkLocal<Locks>,
    /// Orders the explicit memory gauges this process sets (see `memory_set_order`).
    memory_settings: AtomicU64,
    /// Updates dropped since the segment was lost (it is gone: nowhere else to count them).
    lost_drops: AtomicU64,
    lost_reported: AtomicBool,
}

impl Shared {
    pub(crate) fn new(segment: Segment) -> Self {
        let layout = segment.layout;
        Self {
            id: NEXT_COLLECTOR_ID.fetch_add(1, Ordering::Relaxed),
            coordinators: NameTable { first: layout.coordinator_name(0), capacity: layout.capacities.coordinators },
            events: NameTable { first: layout.event_name(0), capacity: layout.capacities.events },
            holdings: Holdings::new(layout.capacities.writers),
            locks: ForkLocal::new(),
            memory_settings: AtomicU64::new(0),
            lost_drops: AtomicU64::new(0),
            lost_reported: AtomicBool::new(false),
            segment,
        }
    }

    #[inline(always)]
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.segment.mapping
    }

    fn header(&self) -> HeaderRef<'_> {
        HeaderRef::at(self.mapping(), 0)
    }

    /// This fork generation's locks, opening them the first time; `None` if the file cannot
    /// be opened again (then nothing can be claimed, and updates are counted as dropped).
    fn locks(&self) -> Option<&Locks> {
        self.locks.get_or_make(|| self.segment.new_locks(), Locks::retire_in_child)
    }

    fn slots(&self) -> Option<Slots<'_>> {
        Some(Slots {
            mapping: self.mapping(),
            layout: &self.segment.layout,
            locks: self.locks()?,
            holdings: &self.holdings,
            generation: raw::fork_generation(),
        })
    }

    /// Claims a writer slot for the calling thread.
    pub(crate) fn claim_slot(&self) -> Option<u32> {
        let claimant = Claimant { process: process_token(), pid: std::process::id() };
        let slot = self.slots().and_then(|slots| slots.claim(claimant));
        if slot.is_none() {
            self.header().dropped_writers().fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    /// Parks `slot` (its thread is exiting) for the next thread of this process.
    pub(crate) fn park_slot(&self, slot: u32) {
        if let Some(slots) = self.slots() {
            slots.park(slot);
        }
    }

    /// Counts one update that could not be recorded.
    pub(crate) fn drop_update(&self, reason: DropReason) {
        if self.mapping().is_lost() {
            self.count_lost_update();
            return;
        }
        let header = self.header();
        header.dropped_updates().fetch_add(1, Ordering::Relaxed);
        let by_reason = match reason {
            DropReason::NoWriter => header.dropped_no_writer(),
            DropReason::NoBlock => header.dropped_no_block(),
            DropReason::Name => header.dropped_name(),
        };
        by_reason.fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn count_lost_update(&self) {
        self.lost_drops.fetch_add(1, Ordering::Relaxed);
        if !self.lost_reported.swap(true, Ordering::Relaxed) {
            eprintln!(
                "coordmetrics: segment {} was truncated or removed while in use: metrics from this process are \
                 dropped until it restarts",
                self.segment.info.path.display()
            );
        }
    }

    /// Updates that could not be recorded: the segment's count, plus this collector's since the
    /// segment was lost.
    pub(crate) fn dropped_updates(&self) -> u64 {
        let in_segment =
            if self.mapping().is_lost() { 0 } else { self.header().dropped_updates().load(Ordering::Relaxed) };
        in_segment + self.lost_drops.load(Ordering::Relaxed)
    }

    /// The index of `name` in its table, registering it; `None` (counted) if refused.
    pub(crate) fn resolve(&self, names: Names, name: &str) -> Option<u32> {
        let (table, refused) = match names {
            Names::Coordinators => (&self.coordinators, self.header().dropped_coordinators()),
            Names::Events => (&self.events, self.header().dropped_events()),
        };
        if self.mapping().is_lost() {
            return None;
        }
        let stored = stored_name(name);
        if stored.len() < name.len() {
            warn_once_about_long_name(name, &stored);
        }
        match table.find_or_insert(self.mapping(), self.locks()?, &stored) {
            Ok(index) => Some(index),
            Err(NameError::Full) => {
                refused.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(NameError::Empty) => None,
        }
    }

    /// Resets coordinator `name` for every reader (see `reset.rs`); false if it is unknown or
    /// no block could be had.
    pub(crate) fn reset_coordinator(&self, name: &str) -> bool {
        self.find_coordinator(name)
            .is_some_and(|(index, name)| reset::reset_coordinator(&self.segment, &name, index).is_ok())
    }

    /// The index and stored name of coordinator `name`, if some process registered it (a
    /// query registers nothing).
    pub(crate) fn find_coordinator(&self, name: &str) -> Option<(u32, String)> {
        let stored = stored_name(name);
        let index = self.coordinators.find(self.mapping(), &stored)?;
        Some((index, stored.into_owned()))
    }

    /// Resets every coordinator and event for every reader.
    pub(crate) fn reset_all(&self) {
        for (index, name) in self.coordinators.read_all(self.mapping()) {
            // A coordinator whose baseline finds no block keeps counting; the refusal is in
            // the segment's dropped block claims.
            let _ = reset::reset_coordinator(&self.segment, &name, index);
        }
        for (index, _) in self.events.read_all(self.mapping()) {
            reset::reset_event(&self.segment, index);
        }
    }

    /// The block of coordinator `index` in the calling thread's slot, when its table has none
    /// yet (or the segment was lost, which leaves every table zero): takes one from the pool.
    /// A refusal is counted as a dropped update if `counted`.
    #[cold]
    #[inline(never)]
    fn first_block(&self, bound: Bound, index: u32, counted: bool) -> Option<usize> {
        if self.mapping().is_lost() {
            if counted {
                self.count_lost_update();
            }
            return None;
        }
        let segment = &self.segment;
        match pool::block_for(self.mapping(), &segment.layout, &segment.file, bound.slot, index) {
            Ok(block) => Some(block),
            Err(NoBlock::Exhausted | NoBlock::Corrupt) => {
                if counted {
                    self.drop_update(DropReason::NoBlock);
                }
                None
            }
        }
    }

    /// The block of coordinator `index` in the calling thread's slot, as the hot path finds it:
    /// one load from the slot's block table. A refusal is counted as a dropped update if
    /// `counted`.
    #[inline(always)]
    pub(crate) fn block(&self, bound: Bound, index: u32, counted: bool) -> Option<usize> {
        let reference = self.mapping().u32_at(Layout::block_table_entry(bound.table, index)).load(Ordering::Relaxed);
        if reference != 0 {
            // An offset from a corrupt table is caught by the mapping's bounds check.
            return Some(reference as usize * BLOCK_REFERENCE_UNIT);
        }
        self.first_block(bound, index, counted)
    }

    /// Sets the explicit memory gauge of coordinator `index` in the calling thread's block;
    /// of the values this process's threads set, readers take the last one set.
    pub(crate) fn set_memory_bytes(&self, bound: Bound, index: u32, bytes: u64) {
        if let Some(block) = self.block(bound, index, true) {
            let block = BlockRef::at(self.mapping(), block);
            let order = self.memory_settings.fetch_add(1, Ordering::Relaxed) + 1;
            block.memory_bytes_plus_one().store(bytes.saturating_add(1), Ordering::Relaxed);
            block.memory_set_order().store(order, Ordering::Release);
        }
    }

    /// Publishes this process's resident memory and CPU time into `slot`, after checking
    /// that the segment is still there: a file shrunk or removed under this process is given
    /// up before an access past its end could fault.
    #[cold]
    pub(crate) fn refresh_gauges(&self, slot: u32) {
        if self.mapping().is_lost() {
            return;
        }
        if self.segment.file_is_gone() {
            self.mapping().abandon();
            return;
        }
        writers::publish_gauges(SlotRef::at(self.mapping(), self.segment.layout.writer_slot(slot)));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A closed collector's slots become dead to every reader: their counters stay, their
        // gauges stop counting.
        if self.locks.get().is_some() {
            if let Some(slots) = self.slots() {
                slots.release_all();
            }
        }
    }
}

/// Tells the user, once per process, that a name was too long to store as it is.
#[cold]
fn warn_once_about_long_name(name: &str, stored: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "coordmetrics: a name of {} bytes is longer than the {} a segment stores: recorded as {stored:?} (a \
             cut and a hash of the whole name; further long names are shortened alike without a word)",
            name.len(),
            coordmetrics_proto::NAME_BYTES
        );
    }
}

/// A random token for this process, new in every forked child: tells processes apart where
/// pids do not (every container's first process is pid 1).
fn process_token() -> u64 {
    static TOKEN: ForkLocal<u64> = ForkLocal::new();
    *TOKEN.get_or_make(|| Ok::<_, std::convert::Infallible>(random_token()), |_| {}).unwrap_or(&1)
}

fn random_token() -> u64 {
    crate::segment::random_id().unwrap_or_else(|_| {
        // No /dev/urandom: the pid, the time and an address of this process's stack.
        let nanos = crate::segment::unix_nanos(SystemTime::now());
        let here = 0u8;
        (u64::from(std::process::id()).rotate_left(32) ^ nanos ^ (&here as *const u8 as u64)).max(1)
    })
}
