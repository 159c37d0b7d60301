//! Which writer slot the current thread writes for each open collector.
//!
//! A thread claims a slot the first time it records into a collector and keeps it until it
//! exits, when the slot is parked for the next thread of the same process. The lookup on the
//! hot path is a thread-local read and two integer compares: no lock, no allocation, no
//! syscall. A forked child sees a new fork generation and claims slots of its own.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

use crate::collector::Shared;
use crate::raw;
use crate::writers::Claimant;

/// After a failed claim (every slot taken), how many updates are dropped before trying again:
/// a full segment must not turn every update into a scan of `/proc`.
const RETRY_AFTER_DROPS: u32 = 4096;

struct Binding {
    collector: u64,
    generation: u64,
    /// Offset of the slot in the segment, or `None` while the segment has no free slot.
    slot_offset: Option<usize>,
    slot: u32,
    claimant: Claimant,
    retry_countdown: Cell<u32>,
    shared: Weak<Shared>,
}

impl Drop for Binding {
    fn drop(&mut self) {
        if self.slot_offset.is_some() && self.generation == raw::fork_generation() {
            if let Some(shared) = self.shared.upgrade() {
                shared.release_slot(self.slot, self.claimant, self.generation);
            }
        }
    }
}

thread_local! {
    static BINDINGS: RefCell<Vec<Binding>> = const { RefCell::new(Vec::new()) };
}

/// Offset of the current thread's slot in `shared`'s segment, claiming one if needed;
/// `None` when the segment has no slot for it (the caller counts a drop).
#[inline]
pub(crate) fn current_slot(shared: &Arc<Shared>) -> Option<usize> {
    let generation = raw::fork_generation();
    BINDINGS
        .try_with(|cell| {
            if let Ok(bindings) = cell.try_borrow() {
                if let Some(binding) = bindings.iter().find(|b| b.collector == shared.id && b.generation == generation)
                {
                    if binding.slot_offset.is_some() {
                        return binding.slot_offset;
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
fn bind(cell: &RefCell<Vec<Binding>>, shared: &Arc<Shared>, generation: u64) -> Option<usize> {
    let Ok(mut bindings) = cell.try_borrow_mut() else {
        return None;
    };
    // Bindings of an earlier fork generation belong to the parent; bindings of collectors
    // that are gone are dead weight. Dropping them parks nothing that is not ours.
    bindings.retain(|b| b.generation == generation && b.collector != shared.id && b.shared.strong_count() > 0);
    let claimant = Claimant::current();
    let slot = shared.claim_slot(claimant, generation);
    let slot_offset = slot.map(|slot| shared.slot_offset(slot));
    bindings.push(Binding {
        collector: shared.id,
        generation,
        slot_offset,
        slot: slot.unwrap_or(0),
        claimant,
        retry_countdown: Cell::new(RETRY_AFTER_DROPS),
        shared: Arc::downgrade(shared),
    });
    slot_offset
}
