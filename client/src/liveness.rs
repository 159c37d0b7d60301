//! Whether the owner of a writer slot, or the writer of a name, is alive: the one liveness
//! check of coordmetrics.
//!
//! An owner holds an open-file-description lock on the first byte of what it owns (a writer
//! slot, or a name slot while it writes the name). The kernel keeps the lock exactly as long as
//! the open file description lives, which for a process that opened the segment means until it
//! closes it or dies (a `SIGKILL` included), and shows it to every process that opens the same
//! file, in any pid namespace or container. A pid, by contrast, means nothing in another pid
//! namespace (every container's first process is pid 1) and can be reused.
//!
//! Two threads of one process share its open file description and so its locks: the kernel
//! arbitrates between processes, and each process arbitrates between its own threads with
//! atomics in its own memory (`collector.rs`). Unit tests under Miri and loom, which have no
//! files, use an emulation with the same semantics: a lock belongs to an owner id, taking it
//! again is allowed, and only other owners see it.

use std::io;
#[cfg(any(test, loom))]
use std::sync::Arc;

use crate::raw::ByteLocks;
#[cfg(any(test, loom))]
use crate::sync::{AtomicU64, Ordering};

/// The byte locks of one open file description of a segment.
#[derive(Debug)]
pub(crate) enum Locks {
    /// The kernel's open-file-description locks: every real process.
    Kernel(ByteLocks),
    /// In-memory locks for tests without files: one owner id per word of the segment.
    #[cfg(any(test, loom))]
    Emulated { table: Arc<[AtomicU64]>, owner: u64 },
}

impl Locks {
    /// A new, distinct open file description of the segment `file` is open on.
    pub(crate) fn open(file: &std::fs::File) -> io::Result<Self> {
        ByteLocks::open_beside(file).map(Self::Kernel)
    }

    /// Locks of the open file description `file` is open on, for asking about others' locks
    /// only: a description that takes no lock sees every other description's.
    pub(crate) fn open_probe(file: std::fs::File) -> io::Result<Self> {
        Ok(Self::Kernel(ByteLocks::from(file)))
    }

    /// Emulated locks on a segment of `len` bytes, for owner `owner` (not zero).
    #[cfg(any(test, loom))]
    pub(crate) fn emulated(table: &Arc<[AtomicU64]>, owner: u64) -> Self {
        Self::Emulated { table: Arc::clone(table), owner }
    }

    /// A lock table for [`Locks::emulated`] covering `len` bytes.
    #[cfg(any(test, loom))]
    pub(crate) fn emulated_table(len: usize) -> Arc<[AtomicU64]> {
        (0..len / 8).map(|_| AtomicU64::new(0)).collect()
    }

    /// Lets an inherited set of locks go in a forked child (see `ByteLocks::close_in_child`):
    /// the parent's locks must die with the parent, not live on in the child.
    pub(crate) fn retire_in_child(&self) {
        match self {
            Self::Kernel(locks) => locks.close_in_child(),
            #[cfg(any(test, loom))]
            Self::Emulated { .. } => {}
        }
    }

    /// Takes the lock on byte `offset`; false if another owner holds it (or the kernel
    /// refused, which then costs a claim, never a live owner's slot).
    pub(crate) fn try_lock(&self, offset: usize) -> bool {
        match self {
            Self::Kernel(locks) => locks.try_lock(offset).unwrap_or(false),
            #[cfg(any(test, loom))]
            Self::Emulated { table, owner } => {
                let word = &table[offset / 8];
                match word.compare_exchange(0, *owner, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => true,
                    Err(holder) => holder == *owner,
                }
            }
        }
    }

    /// Releases the lock on byte `offset`, if this owner holds it.
    pub(crate) fn unlock(&self, offset: usize) {
        match self {
            Self::Kernel(locks) => locks.unlock(offset),
            #[cfg(any(test, loom))]
            Self::Emulated { table, owner } => {
                let _ = table[offset / 8].compare_exchange(*owner, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Whether another owner, alive, holds the lock on byte `offset`.
    pub(crate) fn is_held_elsewhere(&self, offset: usize) -> bool {
        match self {
            Self::Kernel(locks) => locks.is_held_elsewhere(offset),
            #[cfg(any(test, loom))]
            Self::Emulated { table, owner } => {
                let holder = table[offset / 8].load(Ordering::Acquire);
                holder != 0 && holder != *owner
            }
        }
    }
}
