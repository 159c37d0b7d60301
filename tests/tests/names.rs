//! Hostile names and messages are stored as given (cut at a character boundary where they are
//! too long) and read back exactly; escaping is the formatters' business, not the segment's.

use std::collections::BTreeMap;
use std::time::Duration;

use coordmetrics_proto::{name_state, Layout, ERROR_MESSAGE_BYTES, NAME_BYTES};
use coordmetrics_tests::cm_writer;
use coordmetrics_tests::process::Writer;
use coordmetrics_tests::segment::{capacities, patch, TempSegment};

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len())).rev().find(|&end| text.is_char_boundary(end)).unwrap_or(0);
    &text[..end]
}

/// Names that break naive formatters, names that differ only in what an escaper might
/// conflate, and names too long for a slot.
fn hostile() -> Vec<String> {
    let mut names: Vec<String> = [
        "Quote\"Coordinator",
        "a\"b",
        "a\\\"b",
        "a\\b",
        "a\\\\b",
        "line\nbreak",
        "line\\nbreak",
        "carriage\rreturn",
        "tab\tbell\u{7}escape\u{1b}[31m",
        "nul\0inside",
        "trailing nul\0",
        "trailing nul",
        "</script><script>alert(1)</script>",
        "name=\"x\",other=\"y\"}",
        "{{template}} ${shell} %s %n",
        "Ünïcödé 协调器 🚀",
        "\u{202e}right-to-left override",
        "\u{feff}byte order mark",
        " leading and trailing spaces ",
    ]
    .map(String::from)
    .to_vec();
    // 10 KB, two bytes per character after an odd first byte: the cut must step back one byte.
    names.push(format!("a{}", "é".repeat(5000)));
    // Equal in their first 120 bytes: kept apart by the hash in their stored form.
    names.push(format!("b{}", "€".repeat(3400)));
    names.push(format!("b{}x", "€".repeat(3400)));
    names
}

#[test]
fn hostile_names_are_stored_exactly_or_cut_at_a_character_boundary() {
    let segment = TempSegment::new();
    let collector = segment.collector(capacities(64, 64, 4, 16));
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (index, name) in hostile().iter().enumerate() {
        let count = index as u64 + 1;
        let coordinator = collector.coordinator(name);
        for _ in 0..count {
            coordinator.record(Duration::from_millis(1), true);
        }
        collector.record_analytics_event(name, count);
        let stored = coordmetrics::stored_name(name);
        assert!(stored.len() <= NAME_BYTES && name.starts_with(stored.split('~').next().unwrap()));
        *expected.entry(stored.into_owned()).or_default() += count;
    }
    assert_eq!(expected.len(), hostile().len(), "different names, different series");

    let snapshot = collector.snapshot().expect("enabled");
    let coordinators: BTreeMap<String, u64> =
        snapshot.coordinators.iter().map(|c| (c.name.clone(), c.executions)).collect();
    let events: BTreeMap<String, u64> = snapshot.events.iter().cloned().collect();
    assert_eq!(coordinators, expected);
    assert_eq!(events, expected);
}

#[test]
fn empty_names_record_nothing_and_count_drops() {
    let segment = TempSegment::new();
    let collector = segment.collector(capacities(4, 4, 2, 4));
    let nameless = collector.coordinator("");
    assert!(!nameless.is_recording());
    nameless.record(Duration::from_millis(1), true);
    nameless.cache_hit();
    collector.record_analytics_event("", 3);
    let snapshot = collector.snapshot().expect("enabled");
    assert!(snapshot.coordinators.is_empty() && snapshot.events.is_empty());
    assert_eq!(snapshot.dropped.updates, 3);
}

#[test]
fn a_name_slot_left_half_written_by_a_dead_process_is_reused() {
    let segment = TempSegment::new();
    let small = capacities(1, 1, 2, 4);
    drop(segment.collector(small));
    // A process that has exited, as a claimer that died between claiming the only name slot
    // and publishing its name.
    let mut gone = std::process::Command::new("true").spawn().expect("spawn true");
    let dead_pid = gone.id();
    gone.wait().expect("reap");
    let slot = Layout::new(small).expect("valid capacities").coordinator_name(0);
    patch(segment.path(), slot, &name_state::claiming(dead_pid).to_le_bytes());

    let collector = segment.collector(small);
    let chat = collector.coordinator("ChatCoordinator");
    assert!(chat.is_recording(), "the abandoned slot is taken over, not lost");
    chat.cache_hit();
    let snapshot = collector.snapshot().expect("enabled");
    assert_eq!(snapshot.coordinators.len(), 1);
    assert_eq!((snapshot.coordinators[0].name.as_str(), snapshot.coordinators[0].cache_hits), ("ChatCoordinator", 1));
    assert_eq!(snapshot.dropped.coordinators, 0);
}

#[test]
fn a_name_slot_being_written_by_a_live_process_is_not_taken() {
    let segment = TempSegment::new();
    let small = capacities(1, 1, 2, 4);
    drop(segment.collector(small));
    // A live process is writing the only slot: it claimed it (with a pid that, in its own pid
    // namespace, may be anything: here this process's, which judging by pid would call ours)
    // and holds the slot's lock. It must be waited for, then skipped.
    let slot = Layout::new(small).expect("valid capacities").coordinator_name(0);
    let mut claimer =
        Writer::spawn(cm_writer!(), &["lock-byte".into(), segment.path().display().to_string(), slot.to_string()]);
    claimer.expect_line("locked");
    patch(segment.path(), slot, &name_state::claiming(std::process::id()).to_le_bytes());
    let collector = segment.collector(small);
    assert!(!collector.coordinator("ChatCoordinator").is_recording());
    assert_eq!(collector.snapshot().expect("enabled").dropped.coordinators, 1);

    // Once the claimer is gone, its lock is too: the slot is reclaimed.
    claimer.kill();
    assert!(collector.coordinator("ChatCoordinator").is_recording(), "a dead claimer's slot is taken over");
}

#[test]
fn a_claim_with_this_pid_but_no_claim_in_progress_was_left_by_another_namespace() {
    let segment = TempSegment::new();
    let small = capacities(1, 1, 2, 4);
    drop(segment.collector(small));
    // A process with this process's pid in another pid namespace died mid-write: nobody holds
    // the lock and no thread of this process is claiming, so the slot is free again.
    let slot = Layout::new(small).expect("valid capacities").coordinator_name(0);
    patch(segment.path(), slot, &name_state::claiming(std::process::id()).to_le_bytes());
    let collector = segment.collector(small);
    assert!(collector.coordinator("ChatCoordinator").is_recording());
}

#[test]
fn hostile_error_messages_are_read_back_exactly_or_cut() {
    let segment = TempSegment::new();
    let collector = segment.collector(capacities(4, 1, 2, 64));
    let coordinator = collector.coordinator("Tool\"Coordinator\n");
    let mut messages = hostile();
    // 10 KB of three-byte characters after one byte: cut to 223 bytes, not 224.
    messages.push(format!("x{}", "€".repeat(3400)));
    messages.push("y".repeat(10_000));
    for (index, message) in messages.iter().enumerate() {
        if index % 2 == 0 {
            coordinator.record_failure(Duration::from_millis(2), message);
        } else {
            coordinator.track().fail(message);
        }
    }

    let snapshot = collector.snapshot().expect("enabled");
    let read: Vec<(&str, &str)> = snapshot
        .errors
        .iter()
        .rev() // newest first in the snapshot
        .map(|e| (e.coordinator_name.as_deref().unwrap_or("?"), e.message.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> =
        messages.iter().map(|m| ("Tool\"Coordinator\n", cut(m, ERROR_MESSAGE_BYTES))).collect();
    assert_eq!(read, expected);
    assert_eq!(read[read.len() - 2].1.len(), ERROR_MESSAGE_BYTES - 1);
    assert_eq!(read[read.len() - 1].1.len(), ERROR_MESSAGE_BYTES);
    assert!(snapshot.errors.iter().all(|e| e.pid == std::process::id()));
    let totals = &snapshot.coordinators[0];
    assert_eq!((totals.executions, totals.errors), (messages.len() as u64, messages.len() as u64));
}
