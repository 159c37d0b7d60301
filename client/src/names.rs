//! The lock-free name tables (coordinators and analytics events).
//!
//! An open-addressing hash table without deletion. A name's probe sequence starts at the hash
//! of its zero-padded 64-bit words ([`hash_name`], part of the layout: every process must place
//! a name alike) and walks forward; since slots are never freed, a name that exists is always
//! found before the first EMPTY slot of its sequence.
//!
//! Memory ordering: a claimer moves `state` EMPTY -> claiming(its pid) with a compare-and-swap
//! (only one process wins a slot), takes the kernel's lock on the slot's first byte (see
//! `liveness.rs`), stores `len` and the name words with relaxed stores, stores PUBLISHED with
//! release ordering and lets the lock go. A reader acquire-loads `state`; if it sees PUBLISHED,
//! the release/acquire pair makes `len` and the words visible, and they never change again. A
//! slot still claimed after a grace period (a name is written in microseconds) whose lock
//! nobody holds was left by a claimer that died mid-write: it is set back to EMPTY (by
//! compare-and-swap, so only once) and reused, so a crash costs one 50 ms wait, not the slot.
//! The pid in the claim only tells this process's own claims apart (its lock is invisible to
//! itself): a claim with our pid is ours while one of our threads is claiming.

use crate::sync::{yield_now, Ordering};
use std::borrow::Cow;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use coordmetrics_proto::{name_state, NameSlot, NAME_BYTES};

use crate::liveness::Locks;
use crate::raw::Mapping;
use crate::view::{bytes_of, words_of, NameSlotRef};

/// Names this process is writing right now: a claim with this process's pid and no claim in
/// progress was left by another process with the same pid (in another pid namespace) that died.
static CLAIMS_IN_PROGRESS: AtomicU32 = AtomicU32::new(0);

/// How long to wait for another process to publish a name it is writing before checking whether
/// it is still alive.
#[cfg(not(any(loom, miri)))]
const CLAIM_WAIT: Duration = Duration::from_millis(50);
/// Under loom and Miri no claimer dies, and the scheduler guarantees it progresses: wait for it
/// (Miri's slow clock and emulated pids would otherwise make a live claimer look dead).
#[cfg(any(loom, miri))]
const CLAIM_WAIT: Duration = Duration::MAX;
const WORDS: usize = NAME_BYTES / 8;

/// Which table: the offsets of its slots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameTable {
    pub(crate) first: usize,
    pub(crate) capacity: u32,
}

/// Why a name could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameError {
    /// The name is empty.
    Empty,
    /// Every slot holds another name.
    Full,
}

impl NameTable {
    fn slot(&self, index: u32) -> usize {
        self.first + index as usize * core::mem::size_of::<NameSlot>()
    }

    /// The index of `name`, registering it if it is not there yet. `name` must already be
    /// fitted to [`NAME_BYTES`] (see [`stored_name`]); `locks` are the caller's.
    pub(crate) fn find_or_insert(&self, mapping: &Mapping, locks: &Locks, name: &str) -> Result<u32, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        debug_assert!(name.len() <= NAME_BYTES);
        let words = encode(name.as_bytes());
        let used = &words[..name.len().div_ceil(8)];
        let start = (hash_name(used, name.len()) % u64::from(self.capacity)) as u32;
        for step in 0..self.capacity {
            let index = (start + step) % self.capacity;
            let slot = NameSlotRef::at(mapping, self.slot(index));
            let mut waited_since = None;
            loop {
                match slot.state().load(Ordering::Acquire) {
                    name_state::PUBLISHED => {
                        if matches(slot, name.len(), used) {
                            return Ok(index);
                        }
                        break;
                    }
                    name_state::EMPTY => {
                        if claim_and_publish(slot, locks, name.len(), &words) {
                            return Ok(index);
                        }
                        // Someone else claimed it first: look at what they wrote.
                    }
                    other => {
                        let Some(claimer) = name_state::claimer(other) else { break }; // garbage: not a name
                        let since = *waited_since.get_or_insert_with(Instant::now);
                        if since.elapsed() <= CLAIM_WAIT {
                            // Writing a name takes microseconds: wait for it.
                            yield_now();
                            continue;
                        }
                        let ours_in_progress =
                            claimer == std::process::id() && CLAIMS_IN_PROGRESS.load(Ordering::Acquire) > 0;
                        if ours_in_progress || locks.is_held_elsewhere(slot.offset) {
                            break; // alive but slow: skip it
                        }
                        // The claimer died mid-write: free the slot (one of the processes that
                        // notice wins) and look at it again.
                        let _ = slot.state().compare_exchange(
                            other,
                            name_state::EMPTY,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
        }
        Err(NameError::Full)
    }

    /// The published name at `index`, if any, with invalid UTF-8 replaced.
    pub(crate) fn read(&self, mapping: &Mapping, index: u32) -> Option<String> {
        let slot = NameSlotRef::at(mapping, self.slot(index));
        if slot.state().load(Ordering::Acquire) != name_state::PUBLISHED {
            return None;
        }
        let len = (slot.len().load(Ordering::Relaxed) as usize).min(NAME_BYTES);
        Some(String::from_utf8_lossy(&bytes_of((0..WORDS).map(|w| slot.word(w)), len)).into_owned())
    }

    /// The index of the published `name` (fitted as for [`NameTable::find_or_insert`]),
    /// registering nothing. Every slot is looked at, starting where the name's probe sequence
    /// starts: a slot freed after its claimer died can break that sequence, and a query must
    /// not miss a name. Compares words in place; builds no string.
    pub(crate) fn find(&self, mapping: &Mapping, name: &str) -> Option<u32> {
        let words = encode(name.as_bytes());
        let used = &words[..name.len().div_ceil(8)];
        let start = (hash_name(used, name.len()) % u64::from(self.capacity)) as u32;
        (0..self.capacity).map(|step| (start + step) % self.capacity).find(|&index| {
            let slot = NameSlotRef::at(mapping, self.slot(index));
            slot.state().load(Ordering::Acquire) == name_state::PUBLISHED && matches(slot, name.len(), used)
        })
    }

    /// Every published name with its index.
    pub(crate) fn read_all(&self, mapping: &Mapping) -> Vec<(u32, String)> {
        (0..self.capacity).filter_map(|index| Some((index, self.read(mapping, index)?))).collect()
    }
}

/// Claims the EMPTY `slot` and writes the name into it, holding the slot's lock meanwhile;
/// false if another writer claimed it first.
fn claim_and_publish(slot: NameSlotRef<'_>, locks: &Locks, len: usize, words: &[u64; WORDS]) -> bool {
    CLAIMS_IN_PROGRESS.fetch_add(1, Ordering::AcqRel);
    let claim = name_state::claiming(std::process::id());
    let won = slot.state().compare_exchange(name_state::EMPTY, claim, Ordering::Acquire, Ordering::Acquire).is_ok();
    if won {
        // A lock that cannot be had leaves a claim that others may take for abandoned after
        // the grace period: the name is then written twice, never lost.
        locks.try_lock(slot.offset);
        publish(slot, len, words);
        locks.unlock(slot.offset);
    }
    CLAIMS_IN_PROGRESS.fetch_sub(1, Ordering::AcqRel);
    won
}

/// Whether `slot` holds the name of `len` bytes whose words (up to the last that holds a
/// byte of it) are `used`: equal lengths and equal bytes mean equal names, whatever a corrupt
/// segment may hold past the name.
fn matches(slot: NameSlotRef<'_>, len: usize, used: &[u64]) -> bool {
    slot.len().load(Ordering::Relaxed) as usize == len
        && used.iter().enumerate().all(|(w, &word)| slot.word(w).load(Ordering::Relaxed) == word)
}

fn publish(slot: NameSlotRef<'_>, len: usize, words: &[u64; WORDS]) {
    slot.len().store(len as u32, Ordering::Relaxed);
    for (w, &word) in words.iter().enumerate() {
        slot.word(w).store(word, Ordering::Relaxed);
    }
    slot.state().store(name_state::PUBLISHED, Ordering::Release);
}

fn encode(bytes: &[u8]) -> [u64; WORDS] {
    let mut words = [0u64; WORDS];
    for (word, packed) in words.iter_mut().zip(words_of(bytes)) {
        *word = packed;
    }
    words
}

/// Where a name's probe sequence starts (modulo the capacity): a multiply-rotate over its
/// words, eight bytes per step rather than one, then the splitmix64 finaliser so that the low
/// bits depend on every byte.
fn hash_name(words: &[u64], len: usize) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = words.iter().fold(len as u64, |hash, &word| (hash.rotate_left(5) ^ word).wrapping_mul(K));
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The name as a name slot stores it: as given if it fits; otherwise a prefix cut at a
/// character boundary, `~` and 16 hex digits of a hash of the whole name, so that two
/// different long names never become one series.
pub fn stored_name(name: &str) -> Cow<'_, str> {
    if name.len() <= NAME_BYTES {
        return Cow::Borrowed(name);
    }
    let words: Vec<u64> = words_of(name.as_bytes()).collect();
    let suffix = format!("~{:016x}", hash_name(&words, name.len()));
    Cow::Owned(format!("{}{suffix}", truncate_utf8(name, NAME_BYTES - suffix.len())))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn table(capacity: u32) -> (Mapping, NameTable, Locks) {
        let len = capacity as usize * core::mem::size_of::<NameSlot>();
        let locks = Locks::emulated(&Locks::emulated_table(len), 1);
        (Mapping::anonymous(len), NameTable { first: 0, capacity }, locks)
    }

    #[test]
    fn names_are_registered_once_and_read_back_exactly() {
        let (mapping, table, locks) = table(4);
        let hostile = "quote\" back\\slash\nnew line </script> ünï";
        let a = table.find_or_insert(&mapping, &locks, "ChatCoordinator").unwrap();
        let b = table.find_or_insert(&mapping, &locks, hostile).unwrap();
        assert_ne!(a, b);
        assert_eq!(table.find_or_insert(&mapping, &locks, "ChatCoordinator"), Ok(a));
        assert_eq!(table.read(&mapping, b).as_deref(), Some(hostile));
        assert_eq!(table.find_or_insert(&mapping, &locks, ""), Err(NameError::Empty));
        let longest = "x".repeat(NAME_BYTES);
        let c = table.find_or_insert(&mapping, &locks, &longest).unwrap();
        assert_eq!(table.read(&mapping, c).as_deref(), Some(longest.as_str()));
        table.find_or_insert(&mapping, &locks, "fourth").unwrap();
        assert_eq!(table.find_or_insert(&mapping, &locks, "fifth"), Err(NameError::Full));
        assert_eq!(table.read_all(&mapping).len(), 4);
    }

    #[test]
    fn finding_a_name_registers_nothing_and_misses_none() {
        let (mapping, table, locks) = table(4);
        let chat = table.find_or_insert(&mapping, &locks, "ChatCoordinator").unwrap();
        assert_eq!(table.find(&mapping, "ChatCoordinator"), Some(chat));
        assert_eq!(table.find(&mapping, "ChatCoordinato"), None, "a prefix is another name");
        assert_eq!(table.find(&mapping, ""), None);
        assert_eq!(table.read_all(&mapping).len(), 1, "finding registered nothing");
        // A name published past an empty slot of its probe sequence, as it stays when the slot
        // before it is freed after its claimer died, is still found.
        let words = encode(b"tool");
        let start = (hash_name(&words[..1], 4) % 4) as u32;
        assert!(table.read(&mapping, start).is_none(), "the start of its sequence is free");
        let past = (start..start + 4).map(|i| i % 4).find(|&i| i != chat && i != start).unwrap();
        publish(NameSlotRef::at(&mapping, table.slot(past)), 4, &words);
        assert_eq!(table.find(&mapping, "tool"), Some(past));
    }

    #[test]
    fn threads_racing_for_names_agree() {
        let (mapping, table, locks) = table(8);
        let names = ["a", "b", "c", "d"];
        let results: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| names.iter().map(|n| table.find_or_insert(&mapping, &locks, n).unwrap()).collect())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        for (name, index) in names.iter().zip(&results[0]) {
            assert_eq!(table.read(&mapping, *index).as_deref(), Some(*name));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "statistics of a pure function: nothing for Miri to check, and slow there")]
    fn names_spread_evenly_over_the_table() {
        // Similar names (a shared prefix, a counter at the end) must not pile up on a few
        // probe starts: 10,000 of them over 256 slots average 39 per slot.
        let names = 10_000;
        let mut per_start = [0u32; 256];
        for i in 0..names {
            let name = format!("Coordinator{i}");
            let words = encode(name.as_bytes());
            per_start[(hash_name(&words[..name.len().div_ceil(8)], name.len()) % 256) as usize] += 1;
        }
        let expected = names / 256;
        let (min, max) = (per_start.iter().min().unwrap(), per_start.iter().max().unwrap());
        assert!(*min >= expected / 3 && *max <= expected * 2 + 8, "probe starts per slot: {min}..{max}");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(stored_name("short"), "short");
        let long = "€".repeat(100);
        let stored = stored_name(&long);
        assert!(stored.len() <= NAME_BYTES && stored.starts_with("€€€") && stored.contains('~'), "{stored}");
        let other = format!("{long}x");
        assert_ne!(stored_name(&other), stored, "long names that share a prefix stay distinct");
        assert_eq!(stored_name(&long), stored, "the same name is stored the same way");
    }
}
