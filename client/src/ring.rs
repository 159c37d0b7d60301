//! The error ring: the most recent errors with their messages, written lock-free.
//!
//! A writer takes entry number `n` with a `fetch_add` on the header's head counter and writes
//! ring slot `n % capacity` under a seqlock made only of atomics:
//! `seq = 2n+1` (odd: being written), a release fence, the fields with relaxed stores, then
//! `seq = 2n+2` with release ordering. A reader acquire-loads `seq`, skips odd values, loads the
//! fields, issues an acquire fence and loads `seq` again: if it changed, the entry was being
//! overwritten and is skipped. A writer that dies mid-entry leaves `seq` odd, which costs that
//! one entry until the ring wraps around to it.

use crate::sync::{fence, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coordmetrics_proto::{Layout, ERROR_MESSAGE_BYTES};

use crate::names::truncate_utf8;
use crate::raw::Mapping;
use crate::view::{bytes_of, words_of, ErrorEntryRef, HeaderRef};

/// One error read from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedError {
    /// Entry number: higher is newer.
    pub number: u64,
    /// When it was recorded.
    pub time: SystemTime,
    /// Coordinator table index, if known.
    pub coordinator: Option<u32>,
    /// Coordinator name, if known.
    pub coordinator_name: Option<String>,
    /// The recording process's pid, in its own pid namespace.
    pub pid: u32,
    /// The message (cut to the entry's size, invalid UTF-8 replaced).
    pub message: String,
}

/// Appends an error for coordinator `coordinator` (table index) from process `pid`.
pub(crate) fn push(mapping: &Mapping, layout: &Layout, coordinator: Option<u32>, pid: u32, message: &str) {
    let number = HeaderRef::at(mapping, 0).error_ring_head().fetch_add(1, Ordering::Relaxed);
    let entry = ErrorEntryRef::at(mapping, layout.error_entry((number % u64::from(layout.capacities.errors)) as u32));
    let seq = entry.seq();
    seq.store(number.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    let message = truncate_utf8(message, ERROR_MESSAGE_BYTES).as_bytes();
    let now = crate::segment::unix_nanos(SystemTime::now());
    entry.unix_ns().store(now, Ordering::Relaxed);
    entry.coordinator().store(coordinator.map_or(0, |i| i + 1), Ordering::Relaxed);
    entry.pid().store(pid, Ordering::Relaxed);
    entry.len().store(message.len() as u32, Ordering::Relaxed);
    // Only the words that hold the message: readers read no further than `len`.
    for (w, word) in words_of(message).enumerate() {
        entry.message_word(w).store(word, Ordering::Relaxed);
    }
    seq.store(number.wrapping_mul(2).wrapping_add(2), Ordering::Release);
}

/// Every complete entry of the ring, newest first.
pub(crate) fn read_all(mapping: &Mapping, layout: &Layout) -> Vec<RecordedError> {
    let mut errors: Vec<RecordedError> =
        (0..layout.capacities.errors).filter_map(|index| read(mapping, layout.error_entry(index))).collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.number));
    errors
}

fn read(mapping: &Mapping, entry: usize) -> Option<RecordedError> {
    let entry = ErrorEntryRef::at(mapping, entry);
    let seq = entry.seq();
    let before = seq.load(Ordering::Acquire);
    if before == 0 || before % 2 == 1 {
        return None;
    }
    let unix_ns = entry.unix_ns().load(Ordering::Relaxed);
    let coordinator = entry.coordinator().load(Ordering::Relaxed);
    let pid = entry.pid().load(Ordering::Relaxed);
    let len = (entry.len().load(Ordering::Relaxed) as usize).min(ERROR_MESSAGE_BYTES);
    let bytes = bytes_of((0..).map(|w| entry.message_word(w)), len);
    fence(Ordering::Acquire);
    if seq.load(Ordering::Relaxed) != before {
        return None;
    }
    Some(RecordedError {
        number: before / 2 - 1,
        time: UNIX_EPOCH + Duration::from_nanos(unix_ns),
        coordinator: coordinator.checked_sub(1),
        coordinator_name: None,
        pid,
        message: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use coordmetrics_proto::Capacities;

    use super::*;

    fn ring(errors: u32) -> (Mapping, Layout) {
        let layout = Layout::new(Capacities { coordinators: 1, events: 1, writers: 1, errors }).unwrap();
        (Mapping::anonymous(layout.total_size()), layout)
    }

    #[test]
    fn keeps_the_newest_entries_newest_first() {
        let (mapping, layout) = ring(3);
        for n in 0..5 {
            push(&mapping, &layout, Some(0), 7, &format!("error {n}"));
        }
        let errors = read_all(&mapping, &layout);
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["error 4", "error 3", "error 2"]);
        assert_eq!(errors[0].number, 4);
        assert_eq!((errors[0].coordinator, errors[0].pid), (Some(0), 7));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let (mapping, layout) = ring(1);
        let message = "é".repeat(ERROR_MESSAGE_BYTES);
        push(&mapping, &layout, None, 1, &message);
        let read = read_all(&mapping, &layout).remove(0).message;
        assert_eq!(read.len(), ERROR_MESSAGE_BYTES);
        assert!(message.starts_with(&read));
    }

    #[test]
    fn a_reader_never_sees_a_torn_entry() {
        let (mapping, layout) = ring(2);
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 0..rounds {
                    push(&mapping, &layout, Some(0), n, &format!("message number {n}").repeat(1 + n as usize % 7));
                }
            });
            for _ in 0..rounds {
                for error in read_all(&mapping, &layout) {
                    let expected = format!("message number {}", error.pid).repeat(1 + error.pid as usize % 7);
                    assert_eq!(error.message, expected);
                    assert_eq!(error.number, u64::from(error.pid));
                }
            }
        });
    }
}
