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
//! | writer directory | `writers` x [`WriterHeader`] (64 bytes) |
//! | writer slots | `writers` x [`Layout::writer_stride`] |
//!
//! A writer slot's header (its owner) is in the directory, where a reader finds every owner in
//! a few pages; the slot itself is one [`CoordinatorBlock`] (counters and the fine latency
//! histogram) per coordinator, then one `u64` counter per analytics event.
#![forbid(unsafe_code)]

pub mod histogram;
mod layout;

pub use layout::{
    Capacities, CoordinatorBlock, ErrorEntry, Header, Layout, LayoutError, NameSlot, WriterHeader, ERROR_MESSAGE_BYTES,
    HEADER_SIZE, LAYOUT_VERSION, MAGIC, MAX_CAPACITY, NAME_BYTES,
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

/// Encoding of [`WriterHeader::owner`]: the owning pid in the low 32 bits and state flags above.
pub mod owner {
    /// The slot has never been claimed.
    pub const FREE: u64 = 0;
    /// The owner is initialising the slot (start time, gauges) and has not published it yet.
    pub const CLAIMING: u64 = 1 << 32;
    /// The owning process is alive but no thread of it uses the slot: it may take it back
    /// without resetting anything.
    pub const PARKED: u64 = 1 << 33;
    const FLAGS: u64 = CLAIMING | PARKED;

    /// The word for a slot owned by `pid` with the given flags.
    pub const fn encode(pid: u32, flags: u64) -> u64 {
        pid as u64 | (flags & FLAGS)
    }

    /// The pid in an owner word (0 for a free slot).
    pub const fn pid(word: u64) -> u32 {
        (word & 0xffff_ffff) as u32
    }

    /// Whether the owner word carries `flag`.
    pub const fn has(word: u64, flag: u64) -> bool {
        word & flag != 0
    }
}
