//! The shared-memory layout of a coordmetrics segment.
//!
//! This crate only describes bytes: `#[repr(C)]` plain-old-data structs with explicit padding,
//! the constants that name them, and the arithmetic that places every table in the segment.
//! It performs no I/O and contains no unsafe code; the `coordmetrics` client crate maps the
//! segment and reaches these fields through raw pointers to atomics.
//!
//! A segment is, in order:
//!
//! | region | size |
//! | --- | --- |
//! | [`Header`] | 256 bytes |
//! | coordinator name table | `coordinators` x [`NameSlot`] (128 bytes) |
//! | event name table | `events` x [`NameSlot`] |
//! | error ring | `errors` x [`ErrorEntry`] (256 bytes) |
//! | writer directory | `writers` x [`WriterSlot`] (64 bytes) |
//! | block tables | `writers` x `coordinators` x `u32`, each slot's on whole cache lines |
//! | event counters | `writers` x `events` x `u64`, each slot's on whole cache lines |
//! | baselines | `coordinators` x `u32` block references, `events` x `u64` counts |
//! | block pool (sparse) | `writers` x `coordinators` x [`BLOCK_SIZE`] (1856 bytes) |
//!
//! Every region before the pool is allocated at creation. A writer slot's counters for a
//! coordinator (a [`CoordinatorBlock`]: counters and the fine latency histogram) live in a
//! block that the slot's owner takes from the pool the first time it records for that
//! coordinator, and whose reference it stores in its block table. Blocks are never given back:
//! a dead writer's slot, taken over by a new process, keeps its blocks and their totals.
#![forbid(unsafe_code)]

pub mod histogram;
mod layout;

pub use layout::{
    Capacities, CoordinatorBlock, ErrorEntry, Header, Layout, LayoutError, NameSlot, WriterSlot, BLOCK_REFERENCE_UNIT,
    BLOCK_SIZE, ERROR_MESSAGE_BYTES, HEADER_SIZE, LAYOUT_VERSION, MAGIC, MAX_CAPACITY, NAME_BYTES,
};

/// Values of [`NameSlot::state`].
pub mod name_state {
    /// Never claimed.
    pub const EMPTY: u32 = 0;
    /// The name is complete and never changes again.
    pub const PUBLISHED: u32 = 2;
    const CLAIMING_TAG: u32 = 1;

    /// A writer, process `pid`, is copying a name in; others wait for it, or take the slot
    /// over if that process is gone.
    pub const fn claiming(pid: u32) -> u32 {
        (pid << 2) | CLAIMING_TAG
    }

    /// The claiming process, if `state` is a claim.
    pub const fn claimer(state: u32) -> Option<u32> {
        if state & 3 == CLAIMING_TAG {
            Some(state >> 2)
        } else {
            None
        }
    }
}

/// Values of [`WriterSlot::state`]. Whether the owner is alive is not part of the state: it is
/// the kernel's lock on the slot's first byte.
pub mod slot_state {
    /// Never claimed.
    pub const FREE: u32 = 0;
    /// A thread of the owner is taking the slot (resetting the previous owner's gauges).
    pub const CLAIMING: u32 = 1;
    /// A thread of the owner records into the slot.
    pub const ACTIVE: u32 = 2;
    /// The owner holds the slot but none of its threads uses it now: it takes it back first.
    pub const PARKED: u32 = 3;
}
