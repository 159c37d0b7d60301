//! Missing, truncated, foreign, newer, half-made, inconsistent, symlinked, world-writable and
//! random segments: a typed error with one clear line, never a panic.

use std::mem::offset_of;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use coordmetrics::{Capacities, Collector, OpenError, OwnerPolicy, SegmentOptions, SegmentReader};
use coordmetrics_proto::{CoordinatorBlock, ErrorEntry, Header, Layout, NameSlot, WriterSlot, LAYOUT_VERSION};
use coordmetrics_tests::process::within_deadline;
use coordmetrics_tests::rng::Rng;
use coordmetrics_tests::segment::{capacities, options, patch, TempSegment};
use coordmetrics_tests::workload::{Handles, Workload, NAMES};

fn small() -> Capacities {
    capacities(8, 4, 2, 8)
}

/// Gives up on a segment that is still being created after 50 ms.
fn impatient() -> SegmentOptions {
    options(small(), Duration::from_millis(50))
}

/// A valid segment with names, counters, gauges and errors in it.
fn valid_segment() -> TempSegment {
    let segment = TempSegment::new();
    let collector = segment.collector(small());
    let workload = Workload { processes: 1, threads: 2, iterations: 200 };
    let handles = Handles::resolve(&collector, &NAMES);
    workload.run_process(&handles, 0);
    handles.coordinator(0).set_memory_bytes(4096);
    segment
}

fn total_size() -> usize {
    Layout::new(small()).expect("valid capacities").total_size()
}

/// Asserts that both the reader and a collector refuse `path` with an error that `expected`
/// accepts, whose message is one line naming the path.
fn assert_refused(path: &Path, expected: impl Fn(&OpenError) -> bool) {
    let reader = SegmentReader::open(path, &impatient()).map(|_| ()).expect_err("the reader must refuse it");
    let collector = Collector::open_with(path, &impatient()).map(|_| ()).expect_err("a collector must refuse it");
    for error in [reader, collector] {
        assert!(expected(&error), "unexpected error: {error:?}");
        let message = error.to_string();
        assert!(!message.contains('\n') && message.contains(&path.display().to_string()), "{message}");
    }
}

#[test]
fn missing_segment_is_not_found_for_the_reader_and_created_by_a_collector() {
    let segment = TempSegment::new();
    let error = SegmentReader::open(segment.path(), &impatient()).expect_err("nothing to read");
    assert!(matches!(&error, OpenError::NotFound(p) if p == segment.path()), "{error:?}");
    assert!(!segment.path().exists(), "the reader must not create a segment");
    assert!(Collector::open_with(segment.path(), &impatient()).is_ok());
    let mode = std::fs::metadata(segment.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn empty_file_is_truncated() {
    let segment = TempSegment::new();
    std::fs::write(segment.path(), b"").unwrap();
    assert_refused(segment.path(), |e| matches!(e, OpenError::Truncated { size: 0, expected: 256, .. }));
}

#[test]
fn file_shorter_than_its_header_says_is_truncated() {
    let segment = valid_segment();
    let half = total_size() as u64 / 2;
    std::fs::OpenOptions::new().write(true).open(segment.path()).unwrap().set_len(half).unwrap();
    let total = total_size() as u64;
    assert_refused(
        segment.path(),
        |e| matches!(e, OpenError::Truncated { size, expected, .. } if *size == half && *expected == total),
    );
}

#[test]
fn foreign_magic_is_refused() {
    let segment = valid_segment();
    patch(segment.path(), offset_of!(Header, magic), b"PNG\r\n\x1a\n\0");
    let found = u64::from_le_bytes(*b"PNG\r\n\x1a\n\0");
    assert_refused(segment.path(), |e| matches!(e, OpenError::BadMagic { found: f, .. } if *f == found));
}

#[test]
fn newer_layout_version_is_a_version_mismatch() {
    let segment = valid_segment();
    patch(segment.path(), offset_of!(Header, layout_version), &(LAYOUT_VERSION + 1).to_le_bytes());
    assert_refused(segment.path(), |e| {
        matches!(e, OpenError::VersionMismatch { found, expected, .. }
            if *found == LAYOUT_VERSION + 1 && *expected == LAYOUT_VERSION)
    });
}

#[test]
fn half_initialised_segment_is_uninitialised_after_the_timeout() {
    let segment = valid_segment();
    patch(segment.path(), offset_of!(Header, layout_version), &0u32.to_le_bytes());
    assert_refused(segment.path(), |e| matches!(e, OpenError::Uninitialised(_)));
}

#[test]
fn sized_but_unwritten_segment_is_uninitialised_after_the_timeout() {
    // What a creator that died between sizing the file and writing the header leaves behind.
    let segment = TempSegment::new();
    std::fs::write(segment.path(), vec![0u8; total_size()]).unwrap();
    assert_refused(segment.path(), |e| matches!(e, OpenError::Uninitialised(_)));
}

#[test]
fn inconsistent_header_fields_are_corrupt() {
    let patches: [(&str, usize, u64, usize); 6] = [
        ("more coordinators than the size allows", offset_of!(Header, coordinators), 9, 4),
        ("zero writers", offset_of!(Header, writers), 0, 4),
        ("huge error ring", offset_of!(Header, errors), u32::MAX.into(), 4),
        ("total size", offset_of!(Header, total_size), total_size() as u64 - 64, 8),
        ("histogram schema", offset_of!(Header, histogram_schema), 4, 4),
        ("name size", offset_of!(Header, name_bytes), 64, 4),
    ];
    for (what, offset, value, width) in patches {
        let segment = valid_segment();
        patch(segment.path(), offset, &value.to_le_bytes()[..width]);
        assert_refused(segment.path(), |e| matches!(e, OpenError::Corrupt { .. }));
        eprintln!("{what}: refused as corrupt");
    }
}

#[test]
fn symlink_to_a_valid_segment_is_refused() {
    let segment = valid_segment();
    let link = segment.dir().join("link");
    std::os::unix::fs::symlink(segment.path(), &link).unwrap();
    assert_refused(&link, |e| matches!(e, OpenError::Symlink(p) if *p == link));
}

#[test]
fn world_writable_segment_is_untrusted() {
    let segment = valid_segment();
    std::fs::set_permissions(segment.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_refused(segment.path(), |e| matches!(e, OpenError::Untrusted { .. }));
}

#[test]
fn segment_of_an_untrusted_owner_is_refused_unless_accepted() {
    let segment = valid_segment();
    // As root this test can give the file away; as anyone else chown fails and the case is
    // the owner's own file, which is trusted.
    let nobody = 65534;
    if std::os::unix::fs::chown(segment.path(), Some(nobody), None).is_err() {
        eprintln!("*** not root: cannot hand the segment to another user, nothing to check ***");
        return;
    }
    assert_refused(segment.path(), |e| matches!(e, OpenError::Untrusted { why, .. } if why.contains("uid 65534")));
    for accepting in [OwnerPolicy::Any, OwnerPolicy::Users(vec![nobody])] {
        let options = SegmentOptions { owners: accepting, ..impatient() };
        assert!(SegmentReader::open(segment.path(), &options).is_ok());
    }
}

/// Offsets and widths of every field that a reader interprets, so that random writes hit
/// them far more often than uniformly random offsets would.
fn fields(layout: &Layout) -> Vec<(usize, usize)> {
    let caps = layout.capacities;
    let mut fields: Vec<(usize, usize)> = vec![
        (offset_of!(Header, magic), 8),
        (offset_of!(Header, layout_version), 4),
        (offset_of!(Header, header_size), 4),
        (offset_of!(Header, total_size), 8),
        (offset_of!(Header, coordinators), 4),
        (offset_of!(Header, events), 4),
        (offset_of!(Header, writers), 4),
        (offset_of!(Header, errors), 4),
        (offset_of!(Header, histogram_schema), 4),
        (offset_of!(Header, histogram_min_index), 4),
        (offset_of!(Header, histogram_buckets), 4),
        (offset_of!(Header, name_bytes), 4),
        (offset_of!(Header, message_bytes), 4),
        (offset_of!(Header, dropped_updates), 8),
        (offset_of!(Header, error_ring_head), 8),
    ];
    let names = (0..caps.coordinators)
        .map(|i| layout.coordinator_name(i))
        .chain((0..caps.events).map(|i| layout.event_name(i)));
    for name in names {
        fields.extend([(name + offset_of!(NameSlot, state), 4), (name + offset_of!(NameSlot, len), 4)]);
        fields.push((name + offset_of!(NameSlot, bytes), 1));
    }
    for entry in (0..caps.errors).map(|i| layout.error_entry(i)) {
        for (offset, width) in [
            (offset_of!(ErrorEntry, seq), 8),
            (offset_of!(ErrorEntry, coordinator), 4),
            (offset_of!(ErrorEntry, len), 4),
            (offset_of!(ErrorEntry, message), 1),
        ] {
            fields.push((entry + offset, width));
        }
    }
    for slot in 0..caps.writers {
        let entry = layout.writer_slot(slot);
        for (offset, width) in [
            (offset_of!(WriterSlot, state), 4),
            (offset_of!(WriterSlot, process), 8),
            (offset_of!(WriterSlot, rss_bytes), 8),
            (offset_of!(WriterSlot, gauges_unix_ns), 8),
        ] {
            fields.push((entry + offset, width));
        }
        fields.extend((0..caps.coordinators).map(|c| (layout.block_table(slot) + 4 * c as usize, 4)));
        fields.extend((0..caps.events).map(|e| (layout.event_counters(slot) + 8 * e as usize, 8)));
    }
    for block in (0..layout.blocks().min(8)).map(|b| layout.block(b)) {
        for offset in [
            offset_of!(CoordinatorBlock, errors),
            offset_of!(CoordinatorBlock, cache_hits),
            offset_of!(CoordinatorBlock, cache_misses),
            offset_of!(CoordinatorBlock, duration_sum_ns),
            offset_of!(CoordinatorBlock, in_flight),
            offset_of!(CoordinatorBlock, memory_bytes_plus_one),
            offset_of!(CoordinatorBlock, memory_set_order),
            offset_of!(CoordinatorBlock, buckets),
            offset_of!(CoordinatorBlock, buckets) + 8 * 100,
        ] {
            fields.push((block + offset, 8));
        }
    }
    fields.push((offset_of!(Header, blocks_claimed), 8));
    fields.push((offset_of!(Header, blocks), 4));
    fields
}

fn random_value(rng: &mut Rng) -> u64 {
    const SPECIAL: [u64; 10] = [0, 1, 2, 3, 0xff, 0x8000_0000, u32::MAX as u64, i64::MAX as u64, 1 << 63, u64::MAX];
    match rng.below(3) {
        0 => SPECIAL[rng.below(SPECIAL.len() as u64) as usize],
        1 => rng.below(1 << 17),
        _ => rng.next_u64(),
    }
}

/// Overwrites a few fields (or random bytes, or the length) of `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, fields: &[(usize, usize)]) {
    for _ in 0..1 + rng.below(6) {
        match rng.below(10) {
            0 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            1..=2 => {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next_u64() as u8;
                }
            }
            _ => {
                let (offset, width) = fields[rng.below(fields.len() as u64) as usize];
                let value = random_value(rng).to_le_bytes();
                if offset + width <= bytes.len() {
                    bytes[offset..offset + width].copy_from_slice(&value[..width]);
                }
            }
        }
    }
}

/// Opens `path` as the exporter and as a host program would, and reads it: must not panic.
fn open_and_read(path: &Path, record: bool) -> bool {
    let options = SegmentOptions { open_timeout: Duration::ZERO, ..impatient() };
    let read = SegmentReader::open(path, &options).map(|reader| {
        let snapshot = reader.snapshot();
        let _ = (snapshot.live_writers(), snapshot.live_processes(), format!("{snapshot:?}"));
    });
    match Collector::open_with(path, &options) {
        Ok(collector) if record => {
            let chat = collector.coordinator("ChatCoordinator");
            chat.record(Duration::from_millis(3), false);
            chat.track().fail("fuzzed");
            chat.cache_hit();
            chat.set_memory_bytes(1);
            collector.record_analytics_event("fuzz", 1);
            let _ = collector.snapshot();
        }
        Ok(_) => {}
        Err(error) => assert!(!error.to_string().contains('\n')),
    }
    read.is_ok()
}

#[test]
fn random_segment_bytes_never_panic() {
    within_deadline(|| {
        const CASES: u64 = 5000;
        let segment = valid_segment();
        let original = std::fs::read(segment.path()).unwrap();
        let layout = Layout::new(small()).unwrap();
        let fields = fields(&layout);
        let version_at = offset_of!(Header, layout_version);
        let mut snapshots = 0;
        for case in 0..CASES {
            let mut rng = Rng::new(case);
            let mut bytes = original.clone();
            mutate(&mut rng, &mut bytes, &fields);
            if case % 2 == 0 && bytes.len() >= 12 {
                // Get past the magic and version checks, into the rest of the validation.
                bytes[..8].copy_from_slice(&original[..8]);
                bytes[version_at..version_at + 4].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
            }
            std::fs::write(segment.path(), &bytes).unwrap();
            match catch_unwind(AssertUnwindSafe(|| open_and_read(segment.path(), case % 16 == 0))) {
                Ok(read) => snapshots += u64::from(read),
                Err(_) => panic!("case {case} panicked: rerun with Rng::new({case})"),
            }
        }
        // Most cases must get past validation, or the fuzzing only exercises the header checks.
        eprintln!("{snapshots} of {CASES} mutated segments were valid enough to snapshot");
        assert!(snapshots > CASES / 4, "only {snapshots} of {CASES} cases reached a snapshot");
    });
}

#[test]
fn a_path_that_is_not_a_regular_file_is_refused_at_once() {
    within_deadline(|| {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // An hour of patience: were the FIFO waited on, the watchdog would fail the test.
        let patient = options(small(), Duration::from_secs(3600));
        for path in [fifo.as_path(), dir.path()] {
            let error = SegmentReader::open(path, &patient).expect_err("not a segment");
            assert!(matches!(error, OpenError::NotRegularFile { .. }), "{error:?}");
            let error = Collector::open_with(path, &patient).expect_err("not a segment");
            assert!(matches!(error, OpenError::NotRegularFile { .. }), "{error:?}");
        }
    });
}

#[test]
fn a_short_file_that_nobody_is_creating_is_refused_at_once() {
    within_deadline(|| {
        let segment = TempSegment::new();
        std::fs::write(segment.path(), b"short").unwrap();
        // Older than a creation takes: nobody is still writing it.
        std::thread::sleep(Duration::from_millis(1100));
        let patient = options(small(), Duration::from_secs(3600));
        let error = SegmentReader::open(segment.path(), &patient).expect_err("too short");
        assert!(matches!(error, OpenError::Truncated { size: 5, .. }), "{error:?}");
    });
}

#[test]
fn a_version_3_segment_is_refused_with_how_to_recreate_it() {
    let segment = valid_segment();
    patch(segment.path(), offset_of!(Header, layout_version), &3u32.to_le_bytes());
    assert_refused(segment.path(), |e| matches!(e, OpenError::VersionMismatch { found: 3, expected: 4, .. }));
    let message = SegmentReader::open(segment.path(), &impatient()).unwrap_err().to_string();
    assert!(message.contains("coordmetrics cleanup --force") && message.contains("restart"), "{message}");
}
