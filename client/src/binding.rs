//! Which writer slot the current thread writes for each open collector.
//!
//! A thread claims a slot the first time it records into a collector and keeps it until it
//! exits, when the slot is parked for the next thread of the same process. The lookup on the
//! hot path is a read of a plain thread-local and one integer compare: no lock, no
//! allocation, no syscall. A forked child forgets the fast path's answer in the fork hook,
//! sees a new fork generation in the list of bindings, and claims slots of its own.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

use crate::raw;
use crate::shared::Shared;

/// After a failed claim (every slot taken), how many updates are dropped before trying again:
/// a full segment must not turn every update into a scan of `/proc`.
const RETRY_AFTER_DROPS: u32 = 4096;

struct Binding {
    collector: u64,
    generation: u64,
    /// The slot, or `None` while the segment has no free slot.
    slot: Option<Bound>,
    retry_countdown: Cell<u32>,
    shared: Weak<Shared>,
}

/// The writer slot a thread records into, and where its block table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    pub(crate) slot: u32,
    /// Offset of the slot's block table in the segment.
    pub(crate) table: usize,
}

impl Drop for Binding {
    fn drop(&mut self) {
        // The slot is about to be parked (another thread may then take it): the fast path must
        // not hand it out any more, not even to code running in later thread-local destructors.
        RECENT.with(|recent| {
            if recent.get().collector == self.collector {
                recent.set(Recent::NONE);
            }
        });
        if let Some(bound) = self.slot.filter(|_| self.generation == raw::fork_generation()) {
            if let Some(shared) = self.shared.upgrade() {
                shared.park_slot(bound.slot);
            }
        }
    }
}

/// The binding the current thread used last, as plain values: the hot path checks it with one
/// compare and no borrow. Collector ids start at 1 and are never reused, so [`Recent::NONE`]
/// never matches and an entry can only match the collector it was made for.
///
/// It holds no fork generation: the fork hook clears it in the child ([`forget_recent`]), the
/// one thread a child has being the thread that called `fork`.
#[derive(Clone, Copy)]
struct Recent {
    collector: u64,
    bound: Bound,
}

impl Recent {
    const NONE: Self = Self { collector: 0, bound: Bound { slot: 0, table: 0 } };
}

thread_local! {
    // No destructor and a const initialiser: the cheapest kind of thread-local to reach.
    static RECENT: Cell<Recent> = const { Cell::new(Recent::NONE) };
    static BINDINGS: RefCell<Vec<Binding>> = const { RefCell::new(Vec::new()) };
}

/// Makes `bound` the fast path's answer for `shared` on this thread.
fn remember(shared: &Shared, bound: Bound) {
    RECENT.with(|recent| recent.set(Recent { collector: shared.id, bound }));
}

/// Clears the fast path's answer of the calling thread. Called by the fork hook in a new
/// child, whose only thread is the one that forked: its cached slot is the parent's.
///
/// Async-signal-safe, as a fork hook must be: `RECENT` has a const initialiser and no
/// destructor, so reaching it is a plain thread-local memory access, never an allocation.
pub(crate) fn forget_recent() {
    let _ = RECENT.try_with(|recent| recent.set(Recent::NONE));
}

/// The current thread's slot in `shared`'s segment, claiming one if needed; `None` when the
/// segment has no slot for it (the caller counts a drop).
#[inline(always)]
pub(crate) fn current_slot(shared: &Arc<Shared>) -> Option<Bound> {
    let recent = RECENT.with(Cell::get);
    if recent.collector == shared.id {
        return Some(recent.bound);
    }
    lookup(shared, raw::fork_generation())
}

/// The current thread's binding for `shared`, from the list, or a new one.
#[cold]
fn lookup(shared: &Arc<Shared>, generation: u64) -> Option<Bound> {
    BINDINGS
        .try_with(|cell| {
            if let Ok(bindings) = cell.try_borrow() {
                if let Some(binding) = bindings.iter().find(|b| b.collector == shared.id && b.generation == generation)
                {
                    if let Some(bound) = binding.slot {
                        remember(shared, bound);
                        return Some(bound);
                    }
                    let countdown = binding.retry_countdown.get();
                    if countdown > 0 {
                        binding.retry_countdown.set(countdown - 1);
                        return None;
                    }
                }
            }
            bind(cell, shared, generation)
        })
        // During thread teardown the thread-local is gone: count a drop rather than panic.
        .unwrap_or(None)
}

#[cold]
fn bind(cell: &RefCell<Vec<Binding>>, shared: &Arc<Shared>, generation: u64) -> Option<Bound> {
    let Ok(mut bindings) = cell.try_borrow_mut() else {
        return None;
    };
    // Bindings of an earlier fork generation belong to the parent; bindings of collectors
    // that are gone are dead weight. Dropping them parks nothing that is not ours.
    bindings.retain(|b| b.generation == generation && b.collector != shared.id && b.shared.strong_count() > 0);
    let slot = shared.claim_slot().map(|slot| Bound { slot, table: shared.segment.layout.block_table(slot) });
    if let Some(bound) = slot {
        remember(shared, bound);
    }
    bindings.push(Binding {
        collector: shared.id,
        generation,
        slot,
        retry_countdown: Cell::new(RETRY_AFTER_DROPS),
        shared: Arc::downgrade(shared),
    });
    slot
}
