//! loom models of the lock-free protocols: every interleaving of two threads, with every
//! outcome the memory orderings allow. Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p coordmetrics --lib --release loom_models
//! ```

use loom::sync::Arc;
use loom::thread;

use coordmetrics_proto::{Capacities, Layout};

use crate::names::NameTable;
use crate::raw::Mapping;
use crate::ring;
use crate::writers::{self, Claimant};

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounding preemptions keeps the search finite and CI-sized; bugs in protocols of this
    // size show up within two preemptions.
    builder.preemption_bound = Some(2);
    builder.check(test);
}

fn segment(capacities: Capacities) -> (Arc<Mapping>, Layout) {
    let layout = Layout::new(capacities).unwrap();
    (Arc::new(Mapping::anonymous(layout.total_size())), layout)
}

const TINY: Capacities = Capacities { coordinators: 2, events: 1, writers: 1, errors: 1 };

/// Two threads registering the same name get the same slot; the name reads back whole.
#[test]
fn a_name_registered_twice_at_once_gets_one_slot() {
    model(|| {
        let (mapping, layout) = segment(TINY);
        let table = NameTable { first: layout.coordinator_name(0), capacity: 2 };
        let other = Arc::clone(&mapping);
        let racer = thread::spawn(move || table.find_or_insert(&other, "chat").unwrap());
        let mine = table.find_or_insert(&mapping, "chat").unwrap();
        assert_eq!(racer.join().unwrap(), mine);
        assert_eq!(table.read(&mapping, mine).as_deref(), Some("chat"));
        assert_eq!(table.read_all(&mapping).len(), 1);
    });
}

/// Two different names registered at once get different slots, and a reader that sees a
/// slot published sees its whole name.
#[test]
fn different_names_never_share_a_slot() {
    model(|| {
        let (mapping, layout) = segment(TINY);
        let table = NameTable { first: layout.coordinator_name(0), capacity: 2 };
        let other = Arc::clone(&mapping);
        let racer = thread::spawn(move || table.find_or_insert(&other, "tool").unwrap());
        let chat = table.find_or_insert(&mapping, "chat").unwrap();
        for (_, name) in table.read_all(&mapping) {
            assert!(name == "chat" || name == "tool", "torn name {name:?}");
        }
        let tool = racer.join().unwrap();
        assert_ne!(chat, tool);
    });
}

/// Of two threads claiming the only writer slot, exactly one wins; once it parks the slot,
/// the other takes it.
#[test]
fn a_writer_slot_has_one_owner() {
    let me = Claimant::current();
    model(move || {
        let (mapping, layout) = segment(TINY);
        let other = Arc::clone(&mapping);
        let racer = thread::spawn(move || writers::claim(&other, &layout, me));
        let mine = writers::claim(&mapping, &layout, me);
        let theirs = racer.join().unwrap();
        assert!(mine.is_some() != theirs.is_some(), "exactly one claim wins: {mine:?} {theirs:?}");
        writers::park(&mapping, &layout, 0, me);
        assert_eq!(writers::claim(&mapping, &layout, me), Some(0), "a parked slot is taken back");
    });
}

/// A reader racing with a writer that wraps the one-entry ring never returns a torn entry.
#[test]
fn the_error_ring_never_shows_a_torn_entry() {
    model(|| {
        let (mapping, layout) = segment(TINY);
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
