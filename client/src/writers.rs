//! Writer slots: each recording thread of each process owns one slot at a time, so its
//! counters have exactly one writer.
//!
//! Claiming, in order of preference:
//! 1. a slot this process parked (a thread of it exited): taken back as it is;
//! 2. a FREE slot;
//! 3. a slot whose owner is dead (pid gone, or reused by a process with another start time):
//!    taken over, its counters kept (they only add, so totals never go backwards) and its
//!    gauges reset.
//!
//! Memory ordering: the owner word moves by compare-and-swap, so two claimers never both win a
//! slot. The winner stores the start time and resets the gauges, then release-stores its pid
//! without the CLAIMING flag; the exporter acquire-loads the owner word before reading the
//! start time. Counters need no ordering with the owner word: a slot's counters are correct
//! totals whoever owns it. The handover from a dead process is ordered by the process's exit.

use crate::sync::Ordering;

use coordmetrics_proto::{owner, CoordinatorBlock, Layout, WriterHeader};

use crate::process;
use crate::raw::Mapping;
use crate::segment::unix_nanos;

const OWNER: usize = core::mem::offset_of!(WriterHeader, owner);
const START_TIME: usize = core::mem::offset_of!(WriterHeader, start_time);
const CLAIMED_AT: usize = core::mem::offset_of!(WriterHeader, claimed_unix_ns);
// Offsets of the fields of a coordinator's block within it: the client writes them, the
// snapshot reads them.
pub(crate) const ERRORS: usize = core::mem::offset_of!(CoordinatorBlock, errors);
pub(crate) const CACHE_HITS: usize = core::mem::offset_of!(CoordinatorBlock, cache_hits);
pub(crate) const CACHE_MISSES: usize = core::mem::offset_of!(CoordinatorBlock, cache_misses);
pub(crate) const DURATION_SUM: usize = core::mem::offset_of!(CoordinatorBlock, duration_sum_ns);
pub(crate) const BUCKETS: usize = core::mem::offset_of!(CoordinatorBlock, buckets);
pub(crate) const IN_FLIGHT: usize = core::mem::offset_of!(CoordinatorBlock, in_flight);
pub(crate) const MEMORY: usize = core::mem::offset_of!(CoordinatorBlock, memory_bytes_plus_one);

/// The process that claims: its pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claimant {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
}

impl Claimant {
    /// The calling process.
    pub(crate) fn current() -> Self {
        let pid = std::process::id();
        let start_time = process::ProcessStat::read(pid).map_or(0, |s| s.start_time);
        Self { pid, start_time }
    }
}

/// What the exporter sees of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterState {
    /// Never claimed.
    Free,
    /// Owned by a live process, in use by one of its threads (or being claimed).
    Active {
        /// The owner.
        pid: u32,
    },
    /// Owned by a live process, no thread of it uses it now.
    Parked {
        /// The owner.
        pid: u32,
    },
    /// The last owner is dead; its counters stay in the totals.
    Dead {
        /// The last owner.
        pid: u32,
    },
}

impl WriterState {
    /// The pid of a live owner.
    pub fn live_pid(&self) -> Option<u32> {
        match *self {
            Self::Active { pid } | Self::Parked { pid } => Some(pid),
            Self::Free | Self::Dead { .. } => None,
        }
    }
}

/// Claims a slot for a thread of `me`; `None` when every slot belongs to a live process.
pub(crate) fn claim(mapping: &Mapping, layout: &Layout, me: Claimant) -> Option<u32> {
    let slots = 0..layout.capacities.writers;
    let owner_at = |slot: u32| mapping.u64_at(layout.writer_header(slot) + OWNER);
    let start_at = |slot: u32| mapping.u64_at(layout.writer_header(slot) + START_TIME);
    let mine = owner::encode(me.pid, 0);
    let parked = owner::encode(me.pid, owner::PARKED);
    for slot in slots.clone() {
        if owner_at(slot).load(Ordering::Acquire) == parked
            && start_at(slot).load(Ordering::Relaxed) == me.start_time
            && owner_at(slot).compare_exchange(parked, mine, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            return Some(slot);
        }
    }
    for slot in slots.clone() {
        if owner_at(slot).load(Ordering::Relaxed) == owner::FREE && take_over(mapping, layout, slot, owner::FREE, me) {
            return Some(slot);
        }
    }
    for slot in slots {
        let word = owner_at(slot).load(Ordering::Acquire);
        if word != owner::FREE
            && is_dead(word, start_at(slot).load(Ordering::Relaxed))
            && take_over(mapping, layout, slot, word, me)
        {
            return Some(slot);
        }
    }
    None
}

fn take_over(mapping: &Mapping, layout: &Layout, slot: u32, expected: u64, me: Claimant) -> bool {
    let header = layout.writer_header(slot);
    let claiming = owner::encode(me.pid, owner::CLAIMING);
    if mapping
        .u64_at(header + OWNER)
        .compare_exchange(expected, claiming, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    mapping.u64_at(header + START_TIME).store(me.start_time, Ordering::Relaxed);
    mapping.u64_at(header + CLAIMED_AT).store(unix_nanos(std::time::SystemTime::now()), Ordering::Relaxed);
    if expected != owner::FREE {
        // Gauges describe the owner; the dead owner's no longer apply. Counters stay.
        let counters = layout.writer(slot);
        for index in 0..layout.capacities.coordinators {
            let block = counters + layout.coordinator_block_in_slot(index);
            mapping.u64_at(block + IN_FLIGHT).store(0, Ordering::Relaxed);
            mapping.u64_at(block + MEMORY).store(0, Ordering::Relaxed);
        }
    }
    mapping.u64_at(header + OWNER).store(owner::encode(me.pid, 0), Ordering::Release);
    true
}

/// Whether the owner recorded in `word` (with the slot's start time) is gone.
fn is_dead(word: u64, start_time: u64) -> bool {
    let pid = owner::pid(word);
    if owner::has(word, owner::CLAIMING) {
        // The start time may still be the previous owner's: judge by the pid alone.
        return !process::pid_exists(pid);
    }
    !process::is_alive(pid, start_time)
}

/// Gives `slot` back to its process's pool: a later thread of `me` takes it as it is.
pub(crate) fn park(mapping: &Mapping, layout: &Layout, slot: u32, me: Claimant) {
    let _ = mapping.u64_at(layout.writer_header(slot) + OWNER).compare_exchange(
        owner::encode(me.pid, 0),
        owner::encode(me.pid, owner::PARKED),
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// The state of every slot, checking `/proc` once per distinct owner (a process with many
/// threads owns many slots).
pub(crate) fn states(mapping: &Mapping, layout: &Layout) -> Vec<WriterState> {
    let mut dead_by_owner = std::collections::HashMap::new();
    (0..layout.capacities.writers)
        .map(|slot| {
            let header = layout.writer_header(slot);
            let word = mapping.u64_at(header + OWNER).load(Ordering::Acquire);
            let start_time = mapping.u64_at(header + START_TIME).load(Ordering::Relaxed);
            let pid = owner::pid(word);
            if word == owner::FREE {
                return WriterState::Free;
            }
            let claiming = owner::has(word, owner::CLAIMING);
            let dead = *dead_by_owner.entry((pid, start_time, claiming)).or_insert_with(|| is_dead(word, start_time));
            if dead {
                WriterState::Dead { pid }
            } else if owner::has(word, owner::PARKED) {
                WriterState::Parked { pid }
            } else {
                WriterState::Active { pid }
            }
        })
        .collect()
}
