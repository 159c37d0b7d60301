//! The atomics that reach shared memory, switchable to loom's for model checking.
//!
//! `cargo test` and real builds use `std`'s atomics on the mapped segment. Under
//! `RUSTFLAGS="--cfg loom"` the protocols (name registration, writer slot claims, the error
//! ring's seqlock) run on loom's atomics over a heap [`crate::raw::Mapping`], and loom explores
//! every interleaving and every weak-memory outcome the orderings allow (see `loom_models.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

/// Lets other threads run while waiting for one that is publishing something.
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
