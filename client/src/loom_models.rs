//! loom models of the lock-free protocols: every interleaving of two threads, with every
//! outcome the memory orderings allow. Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p coordmetrics --lib --release loom_models
//! ```
//!
//! The kernel's byte locks are modelled by `liveness.rs`'s emulation (an owner id per word,
//! taken by compare-and-swap): two lock owners are two processes, one owner's two threads are
//! threads of one process.

use std::sync::Arc as StdArc;

use loom::sync::Arc;
use loom::thread;

use coordmetrics_proto::{Capacities, Layout};

use crate::liveness::Locks;
use crate::names::NameTable;
use crate::raw::Mapping;
use crate::ring;
use crate::sync::AtomicU64;
use crate::writers::{Claimant, Holdings, Slots};

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounding preemptions keeps the search finite and CI-sized; bugs in protocols of this
    // size show up within two preemptions.
    builder.preemption_bound = Some(2);
    builder.check(test);
}

fn segment(capacities: Capacities) -> (Arc<Mapping>, Layout, StdArc<[AtomicU64]>) {
    let layout = Layout::new(capacities).unwrap();
    let locks = Locks::emulated_table(layout.fixed_size());
    (Arc::new(Mapping::anonymous(layout.fixed_size())), layout, locks)
}

const TINY: Capacities = Capacities { coordinators: 2, events: 1, writers: 1, errors: 1 };

/// Two threads registering the same name get the same slot; the name reads back whole.
#[test]
fn a_name_registered_twice_at_once_gets_one_slot() {
    model(|| {
        let (mapping, layout, table) = segment(TINY);
        let names = NameTable { first: layout.coordinator_name(0), capacity: 2 };
        let other = Arc::clone(&mapping);
        let their_locks = Locks::emulated(&table, 2);
        let racer = thread::spawn(move || names.find_or_insert(&other, &their_locks, "chat").unwrap());
        let mine = names.find_or_insert(&mapping, &Locks::emulated(&table, 1), "chat").unwrap();
        assert_eq!(racer.join().unwrap(), mine);
        assert_eq!(names.read(&mapping, mine).as_deref(), Some("chat"));
        assert_eq!(names.read_all(&mapping).len(), 1);
    });
}

/// Two different names registered at once get different slots, and a reader that sees a
/// slot published sees its whole name.
#[test]
fn different_names_never_share_a_slot() {
    model(|| {
        let (mapping, layout, table) = segment(TINY);
        let names = NameTable { first: layout.coordinator_name(0), capacity: 2 };
        let other = Arc::clone(&mapping);
        let their_locks = Locks::emulated(&table, 2);
        let racer = thread::spawn(move || names.find_or_insert(&other, &their_locks, "tool").unwrap());
        let chat = names.find_or_insert(&mapping, &Locks::emulated(&table, 1), "chat").unwrap();
        for (_, name) in names.read_all(&mapping) {
            assert!(name == "chat" || name == "tool", "torn name {name:?}");
        }
        let tool = racer.join().unwrap();
        assert_ne!(chat, tool);
    });
}

/// One process's view of a segment: its locks and holdings.
struct Process {
    locks: Locks,
    holdings: Holdings,
    me: Claimant,
}

impl Process {
    fn new(table: &StdArc<[AtomicU64]>, token: u64, slots: u32) -> Self {
        Self {
            locks: Locks::emulated(table, token),
            holdings: Holdings::new(slots),
            me: Claimant { process: token, pid: 1 },
        }
    }

    fn slots<'a>(&'a self, mapping: &'a Mapping, layout: &'a Layout) -> Slots<'a> {
        Slots { mapping, layout, locks: &self.locks, holdings: &self.holdings, generation: 0 }
    }
}

/// Of two processes (both pid 1, as in two containers) claiming the only writer slot, exactly
/// one wins; the loser gets it once the winner's locks are gone (it died).
#[test]
fn a_writer_slot_has_one_owning_process() {
    model(|| {
        let (mapping, layout, table) = segment(TINY);
        let other = Arc::clone(&mapping);
        let their_table = StdArc::clone(&table);
        let racer = thread::spawn(move || {
            let them = Process::new(&their_table, 2, 1);
            let won = them.slots(&other, &layout).claim(them.me);
            (them, won)
        });
        let us = Process::new(&table, 1, 1);
        let mine = us.slots(&mapping, &layout).claim(us.me);
        let (them, theirs) = racer.join().unwrap();
        assert!(mine.is_some() != theirs.is_some(), "exactly one process owns the slot: {mine:?} {theirs:?}");
        if mine.is_none() {
            them.slots(&mapping, &layout).release_all(); // the owner dies
            assert_eq!(us.slots(&mapping, &layout).claim(us.me), Some(0), "a dead owner's slot is taken over");
        }
    });
}

/// Of two threads of one process claiming the only writer slot, exactly one wins; once it
/// parks the slot, the other takes it back.
#[test]
fn a_writer_slot_has_one_thread() {
    model(|| {
        let (mapping, layout, table) = segment(TINY);
        let process = Arc::new(Process::new(&table, 1, 1));
        let (other, theirs_process) = (Arc::clone(&mapping), Arc::clone(&process));
        let racer = thread::spawn(move || theirs_process.slots(&other, &layout).claim(theirs_process.me));
        let mine = process.slots(&mapping, &layout).claim(process.me);
        let theirs = racer.join().unwrap();
        assert!(mine.is_some() != theirs.is_some(), "exactly one claim wins: {mine:?} {theirs:?}");
        process.slots(&mapping, &layout).park(0);
        assert_eq!(process.slots(&mapping, &layout).claim(process.me), Some(0), "a parked slot is taken back");
    });
}

/// A reader racing with a writer that wraps the one-entry ring never returns a torn entry.
#[test]
fn the_error_ring_never_shows_a_torn_entry() {
    model(|| {
        let (mapping, layout, _) = segment(TINY);
        let other = Arc::clone(&mapping);
        let writer = thread::spawn(move || {
            ring::push(&other, &layout, Some(0), 1, "first failure");
            ring::push(&other, &layout, Some(1), 2, "second");
        });
        for error in ring::read_all(&mapping, &layout) {
            let expected = match error.number {
                0 => (Some(0), 1, "first failure"),
                1 => (Some(1), 2, "second"),
                n => panic!("entry number {n} was never written"),
            };
            assert_eq!((error.coordinator, error.pid, error.message.as_str()), expected);
        }
        writer.join().unwrap();
    });
}
