//! Writer slots: each recording thread of each process uses one slot at a time, so its
//! counters have exactly one writer.
//!
//! A process owns a slot while its open file description holds the kernel's lock on the
//! slot's first byte (see `liveness.rs`); within the process, the collector's [`Holdings`] say
//! which of its threads uses which slot. Claiming, in order of preference:
//! 1. a slot this collector holds but parked (a thread of it exited): taken back as it is;
//! 2. a slot never claimed;
//! 3. a slot whose owner is dead (nobody holds its lock): taken over, its counters kept (they
//!    only add, so totals never go backwards) and its gauges reset.
//!
//! A live slot is never taken over: taking its lock fails while its owner lives, in any pid
//! namespace. Two threads of one process are kept apart by a compare-and-swap on the
//! collector's holding word before either asks for the lock, so the lock (which both would be
//! granted, sharing one open file description) is only ever asked for by one of them.
//!
//! Memory ordering: the claimer stores the slot's process token, pid and gauges, then
//! release-stores `ACTIVE`; a reader acquire-loads the token before reading the rest. Counters
//! need no ordering with the owner: a slot's counters are correct totals whoever owns it. The
//! handover from a dead process is ordered by the kernel, which releases the lock only after
//! the process is gone.

use std::time::SystemTime;

use coordmetrics_proto::{slot_state, Layout};

use crate::liveness::Locks;
use crate::raw::{self, Mapping};
use crate::segment::unix_nanos;
use crate::sync::{AtomicU64, Ordering};
use crate::view::{BlockRef, SlotRef};

/// The process that claims: its token (new in every forked child) and its pid as it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claimant {
    pub(crate) process: u64,
    pub(crate) pid: u32,
}

/// What the exporter sees of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterState {
    /// Never claimed.
    Free,
    /// Owned by a live process, in use by one of its threads (or being claimed).
    Active {
        /// The owner's pid in its own pid namespace.
        pid: u32,
    },
    /// Owned by a live process, no thread of it uses it now.
    Parked {
        /// The owner's pid in its own pid namespace.
        pid: u32,
    },
    /// The last owner is gone; its counters stay in the totals.
    Dead {
        /// The last owner's pid in its own pid namespace.
        pid: u32,
    },
}

impl WriterState {
    /// The pid of a live owner (in the owner's pid namespace).
    pub fn live_pid(&self) -> Option<u32> {
        match *self {
            Self::Active { pid } | Self::Parked { pid } => Some(pid),
            Self::Free | Self::Dead { .. } => None,
        }
    }
}

/// Which slots one collector (one open file description, one set of locks) holds, and which of
/// them a thread uses: one word per slot, in the collector's own memory.
#[derive(Debug)]
pub(crate) struct Holdings {
    words: Box<[AtomicU64]>,
}

/// A holding word: the fork generation it was made in (plus one, so that zero is "not held")
/// above the parked flag.
fn holding(generation: u64, parked: bool) -> u64 {
    ((generation + 1) << 1) | u64::from(parked)
}

impl Holdings {
    pub(crate) fn new(slots: u32) -> Self {
        Self { words: (0..slots).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Slots held in fork generation `generation` (a child holds none of its parent's).
    pub(crate) fn held(&self, generation: u64) -> impl Iterator<Item = u32> + '_ {
        (0u32..)
            .zip(self.words.iter())
            .filter_map(move |(slot, word)| (word.load(Ordering::Relaxed) >> 1 == generation + 1).then_some(slot))
    }

    /// Forgets `slot` (the collector has let its lock go).
    pub(crate) fn forget(&self, slot: u32) {
        self.words[slot as usize].store(0, Ordering::Relaxed);
    }
}

/// The segment a claim works on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots<'a> {
    pub(crate) mapping: &'a Mapping,
    pub(crate) layout: &'a Layout,
    pub(crate) locks: &'a Locks,
    pub(crate) holdings: &'a Holdings,
    pub(crate) generation: u64,
}

impl Slots<'_> {
    fn slot(&self, slot: u32) -> SlotRef<'_> {
        SlotRef::at(self.mapping, self.layout.writer_slot(slot))
    }

    /// Claims a slot for a thread of `me`; `None` when every slot belongs to a live process.
    pub(crate) fn claim(&self, me: Claimant) -> Option<u32> {
        let slots = 0..self.layout.capacities.writers;
        let parked = holding(self.generation, true);
        for slot in slots.clone() {
            let word = &self.holdings.words[slot as usize];
            if word.load(Ordering::Relaxed) == parked
                && word
                    .compare_exchange(parked, holding(self.generation, false), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                self.slot(slot).state().store(slot_state::ACTIVE, Ordering::Release);
                return Some(slot);
            }
        }
        let never_claimed = |slot: &u32| self.slot(*slot).process().load(Ordering::Acquire) == 0;
        let first_choice = slots.clone().filter(never_claimed);
        let then = slots.filter(|slot| !never_claimed(slot));
        first_choice.chain(then).find(|&slot| self.take(slot, me))
    }

    /// Takes `slot` if no thread of this collector holds it and no other owner lives.
    fn take(&self, slot: u32, me: Claimant) -> bool {
        let word = &self.holdings.words[slot as usize];
        let current = word.load(Ordering::Relaxed);
        if current >> 1 == self.generation + 1
            || word
                .compare_exchange(current, holding(self.generation, false), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false; // another thread of this collector uses or is taking it
        }
        let view = self.slot(slot);
        if !self.locks.try_lock(view.offset) {
            word.store(0, Ordering::Relaxed);
            return false; // a live owner, maybe in another pid namespace
        }
        view.state().store(slot_state::CLAIMING, Ordering::Relaxed);
        let previous = view.process().load(Ordering::Relaxed);
        if previous != 0 && previous != me.process {
            // Gauges describe their owner; the dead owner's no longer apply. Counters stay.
            self.reset_gauges(slot);
        }
        view.pid().store(me.pid, Ordering::Relaxed);
        view.claimed_unix_ns().store(unix_nanos(SystemTime::now()), Ordering::Relaxed);
        view.process().store(me.process, Ordering::Release);
        publish_gauges(view);
        view.state().store(slot_state::ACTIVE, Ordering::Release);
        true
    }

    fn reset_gauges(&self, slot: u32) {
        for view in blocks_of(self.mapping, self.layout, slot) {
            view.in_flight().store(0, Ordering::Relaxed);
            view.memory_bytes_plus_one().store(0, Ordering::Relaxed);
        }
        let view = self.slot(slot);
        for gauge in [view.rss_bytes(), view.cpu_time_ns(), view.gauges_unix_ns()] {
            gauge.store(0, Ordering::Relaxed);
        }
    }

    /// Gives `slot` back to this collector's pool: a later thread of the process takes it as
    /// it is. The process keeps the lock: the slot stays its own.
    pub(crate) fn park(&self, slot: u32) {
        let word = &self.holdings.words[slot as usize];
        let active = holding(self.generation, false);
        if word.compare_exchange(active, holding(self.generation, true), Ordering::Release, Ordering::Relaxed).is_ok() {
            self.slot(slot).state().store(slot_state::PARKED, Ordering::Release);
        }
    }

    /// Gives up every slot this collector holds (it is closing): their owners are then dead
    /// to every reader, and their counters stay.
    pub(crate) fn release_all(&self) {
        for slot in self.holdings.held(self.generation).collect::<Vec<_>>() {
            self.locks.unlock(self.layout.writer_slot(slot));
            self.holdings.forget(slot);
        }
    }
}

/// The blocks writer slot `slot` has taken, with their coordinator indices.
pub(crate) fn blocks_of<'a>(
    mapping: &'a Mapping,
    layout: &'a Layout,
    slot: u32,
) -> impl Iterator<Item = BlockRef<'a>> + 'a {
    indexed_blocks_of(mapping, layout, slot).map(|(_, block)| block)
}

/// The blocks writer slot `slot` has taken, each with its coordinator's index.
pub(crate) fn indexed_blocks_of<'a>(
    mapping: &'a Mapping,
    layout: &'a Layout,
    slot: u32,
) -> impl Iterator<Item = (u32, BlockRef<'a>)> + 'a {
    (0..layout.capacities.coordinators).filter_map(move |index| Some((index, block_of(mapping, layout, slot, index)?)))
}

/// Writer slot `slot`'s block for coordinator `index`, if it has taken one.
pub(crate) fn block_of<'a>(mapping: &'a Mapping, layout: &Layout, slot: u32, index: u32) -> Option<BlockRef<'a>> {
    let entry = Layout::block_table_entry(layout.block_table(slot), index);
    // Acquire: pairs with the release store that published the block.
    let reference = mapping.u32_at(entry).load(Ordering::Acquire);
    Some(BlockRef::at(mapping, layout.block_at_reference(reference)?))
}

/// Publishes the calling process's resident memory and CPU time into its slot `view`: the
/// exporter reads them there and never needs another process's `/proc`, which a container
/// does not share.
pub(crate) fn publish_gauges(view: SlotRef<'_>) {
    view.rss_bytes().store(resident_bytes().unwrap_or(0), Ordering::Relaxed);
    view.cpu_time_ns().store(raw::process_cpu_time_ns(), Ordering::Relaxed);
    view.gauges_unix_ns().store(unix_nanos(SystemTime::now()), Ordering::Release);
}

/// The calling process's resident set size, from `/proc/self/statm` (its own, which every
/// container has).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(raw::page_size()))
}

/// The state of every slot: one question to the kernel per claimed slot, through `probe`, an
/// open file description that holds no lock itself.
pub(crate) fn states(mapping: &Mapping, layout: &Layout, probe: &Locks) -> Vec<WriterState> {
    (0..layout.capacities.writers)
        .map(|slot| {
            let view = SlotRef::at(mapping, layout.writer_slot(slot));
            if view.process().load(Ordering::Acquire) == 0 {
                return WriterState::Free;
            }
            let pid = view.pid().load(Ordering::Relaxed);
            if !probe.is_held_elsewhere(view.offset) {
                WriterState::Dead { pid }
            } else if view.state().load(Ordering::Acquire) == slot_state::PARKED {
                WriterState::Parked { pid }
            } else {
                WriterState::Active { pid }
            }
        })
        .collect()
}
