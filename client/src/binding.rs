//! Which writer slot the current thread writes for each open collector.
//!
//! A thread claims a slot the first time it records into a collector and keeps it until it
//! exits, when the slot is parked for the next thread of the same process. The lookup on the
//! hot path is a read of a plain thread-local and one integer compare: no lock, no
//! allocation, no syscall. A forked child forgets the fast path's answer in the fork hook,
//! sees a new fork generation in the list of bindings, and claims slots of its own.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

use coordmetrics_proto::CoordinatorBlock;

use crate::raw::{self, KeptWindow};
use crate::shared::Shared;
use crate::view::BlockRef;

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
        let _ = RECENT_BLOCK.try_with(|recent| {
            if recent.get().collector == self.collector {
                recent.set(RecentBlock::NONE);
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

/// The block the current thread used last: recording for the same coordinator again (the
/// common case: an execution's cache traffic, its timing) goes straight to it, without reading
/// the slot's block table or checking the block's place against the mapping's length again.
/// Taken up only while no mapping was lost since ([`raw::KeptWindow`]): after a loss every
/// update takes the path that counts it as dropped.
#[derive(Clone, Copy)]
struct RecentBlock {
    /// The block's window, kept under the coordinator's index.
    window: KeptWindow<CoordinatorBlock>,
    /// The block's offset in the segment.
    block: usize,
    /// The collector, for forgetting the entry when the collector's binding goes.
    collector: u64,
}

impl RecentBlock {
    const NONE: Self = Self { window: KeptWindow::NONE, block: 0, collector: 0 };
}

/// Why the current thread has no block for a coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBlock {
    /// It has no writer slot (the caller counts the drop).
    Slot,
    /// The pool had none (counted there, if asked).
    Block,
}

thread_local! {
    // No destructor and a const initialiser: the cheapest kind of thread-local to reach.
    static RECENT: Cell<Recent> = const { Cell::new(Recent::NONE) };
    static RECENT_BLOCK: Cell<RecentBlock> = const { Cell::new(RecentBlock::NONE) };
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
    let _ = RECENT_BLOCK.try_with(|recent| recent.set(RecentBlock::NONE));
}

/// The current thread's block for coordinator `index` of `shared`: the last one it used if it
/// is that coordinator's, else from its slot's block table (taking one from the pool the first
/// time; a refusal is counted as dropped if `counted`).
#[inline(always)]
pub(crate) fn current_block(shared: &Arc<Shared>, index: u32, counted: bool) -> Result<BlockRef<'_>, NoBlock> {
    let recent = RECENT_BLOCK.with(Cell::get);
    if let Some(window) = recent.window.recall(shared.mapping(), index) {
        return Ok(BlockRef { window, offset: recent.block });
    }
    find_block(shared, index, counted)
}

#[inline(never)]
fn find_block(shared: &Arc<Shared>, index: u32, counted: bool) -> Result<BlockRef<'_>, NoBlock> {
    let bound = current_slot(shared).ok_or(NoBlock::Slot)?;
    let block = shared.block(bound, index, counted).ok_or(NoBlock::Block)?;
    let window = KeptWindow::keep(shared.mapping(), block, index);
    RECENT_BLOCK.with(|recent| recent.set(RecentBlock { window, block, collector: shared.id }));
    Ok(BlockRef::at(shared.mapping(), block))
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
