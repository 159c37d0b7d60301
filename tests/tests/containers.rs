//! The pod sidecar's world, for real: writers in pid namespaces of their own (each is pid 1,
//! as the first process of a container is), a small memory-backed file system, and a segment
//! truncated under live writers. These need root (`unshare`, `mount`), which CI has; elsewhere
//! they skip, saying so.

use std::time::{Duration, Instant};

use coordmetrics::{Capacities, Collector, SegmentOptions, SegmentReader, WriterState};
use coordmetrics_tests::cm_writer;
use coordmetrics_tests::process::{pid_namespaces_available, within_deadline, Writer, WriterCommand};
use coordmetrics_tests::segment::{allocated_bytes, capacities, coordinator_totals, TempSegment, Tmpfs};
use coordmetrics_tests::workload::{assert_totals, Workload, COORDINATORS, TRACKED};

/// The first `Some` that `probe` gives, polling for up to 30 s.
fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "condition not reached within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn writer(mode: &str, segment: &TempSegment, caps: &Capacities, workload: &Workload, process: u32) -> WriterCommand {
    WriterCommand::new(mode, segment.path(), caps, workload).arg("--process", process)
}

#[test]
fn writers_in_separate_pid_namespaces_have_exact_totals() {
    if !pid_namespaces_available("writers_in_separate_pid_namespaces_have_exact_totals") {
        return;
    }
    within_deadline(|| {
        let segment = TempSegment::new();
        let caps = capacities(16, 8, 16, 4096);
        let workload = Workload { processes: 4, threads: 3, iterations: 1000 };
        drop(segment.collector(caps));
        let mut writers: Vec<Writer> = (0..workload.processes)
            .map(|process| writer("workload", &segment, &caps, &workload, process).spawn_in_pid_namespace(cm_writer!()))
            .collect();
        for writer in &mut writers {
            writer.expect_line("segment-id");
            writer.wait_success();
        }
        let snapshot = segment.snapshot();
        assert_totals(&snapshot, &workload.expected());
        assert_eq!(snapshot.dropped, coordmetrics::Dropped::default(), "nothing may be dropped");
        // Every writer was pid 1 in its own namespace: pids could not tell them apart.
        assert!(snapshot.writers.iter().all(|w| w.state == WriterState::Dead { pid: 1 }), "{:?}", snapshot.writers);
        let processes: std::collections::BTreeSet<u64> = snapshot.writers.iter().map(|w| w.process).collect();
        assert_eq!(processes.len(), workload.processes as usize, "one token per process");
    });
}

#[test]
fn crash_looping_writers_under_slot_pressure_lose_nothing_silently() {
    if !pid_namespaces_available("crash_looping_writers_under_slot_pressure_lose_nothing_silently") {
        return;
    }
    within_deadline(|| {
        // Three slots, one held all along by a long-lived writer; each round, three writers
        // (pid 1 each) start at once and are killed: one of them finds no slot. Judged by pid,
        // the host would call every one of them dead and hand their live slots over, losing
        // updates without a trace.
        const HITS: u32 = 20_000;
        const ROUNDS: u32 = 6;
        let segment = TempSegment::new();
        let caps = capacities(4, 2, 3, 16);
        let workload = Workload { processes: 1, threads: 1, iterations: HITS };
        drop(segment.collector(caps));
        let mut steady = writer("hits", &segment, &caps, &workload, 0).spawn_in_pid_namespace(cm_writer!());
        steady.expect_line("ready dropped");
        let mut attempted = u64::from(HITS);
        for _ in 0..ROUNDS {
            let mut round: Vec<Writer> = (0..3)
                .map(|_| writer("hits", &segment, &caps, &workload, 0).spawn_in_pid_namespace(cm_writer!()))
                .collect();
            for writer in &mut round {
                writer.expect_line("ready dropped");
                attempted += u64::from(HITS);
            }
            let live = segment.snapshot().live_writers();
            assert!(live <= caps.writers as usize, "{live} live writers in {} slots", caps.writers);
            for writer in &mut round {
                writer.kill();
            }
        }
        let snapshot = eventually(|| Some(segment.snapshot()).filter(|s| s.live_writers() == 1));
        let recorded = coordinator_totals(&snapshot, COORDINATORS[0]).cache_hits;
        assert_eq!(snapshot.dropped.updates, snapshot.dropped.no_writer, "slots were the only shortage");
        assert_eq!(recorded + snapshot.dropped.updates, attempted, "every update recorded or counted as dropped");
        assert!(snapshot.dropped.updates > 0, "the test must put the slots under pressure");
        assert_eq!(snapshot.live_writers(), 1, "the steady writer's slot was never taken");
        steady.kill();
    });
}

#[test]
fn gauges_of_writers_in_other_pid_namespaces_are_live() {
    if !pid_namespaces_available("gauges_of_writers_in_other_pid_namespaces_are_live") {
        return;
    }
    within_deadline(|| {
        let segment = TempSegment::new();
        let caps = capacities(16, 8, 8, 256);
        let workload = Workload { processes: 1, threads: 1, iterations: 50 };
        let memory = 123_456_789;
        drop(segment.collector(caps));
        let mut holder =
            writer("hold", &segment, &caps, &workload, 0).arg("--memory", memory).spawn_in_pid_namespace(cm_writer!());
        holder.expect_line("ready");
        let alive = segment.snapshot();
        assert_eq!(alive.live_writers(), 1);
        assert_eq!(alive.live_processes(), [1], "pid 1 of its own namespace");
        assert_eq!(coordinator_totals(&alive, TRACKED).in_flight, 1);
        assert_eq!(coordinator_totals(&alive, COORDINATORS[0]).explicit_memory_bytes, Some(memory));
        let [process] = alive.processes[..] else { panic!("one process's gauges: {:?}", alive.processes) };
        assert_eq!(process.pid, 1);
        assert!(process.rss_bytes > 1 << 20, "its own resident memory, published by itself: {}", process.rss_bytes);

        holder.kill();
        // The namespace's process dies just after `unshare`, which was killed first.
        let dead = eventually(|| Some(segment.snapshot()).filter(|s| s.live_writers() == 0));
        assert_eq!(dead.live_writers(), 0, "the kernel released its lock when it died");
        assert_eq!(coordinator_totals(&dead, TRACKED).in_flight, 0);
        assert_eq!(coordinator_totals(&dead, COORDINATORS[0]).explicit_memory_bytes, None);
        assert!(dead.processes.is_empty());
    });
}

#[test]
fn the_default_segment_is_created_and_used_in_a_16_mib_tmpfs() {
    let Some(tmpfs) = Tmpfs::mount("16m", "the_default_segment_is_created_and_used_in_a_16_mib_tmpfs") else {
        return;
    };
    let path = tmpfs.path().join("coordmetrics");
    let collector = Collector::open(&path).expect("a default segment fits in 16 MiB");
    assert_eq!(collector.segment_info().expect("enabled").capacities, Capacities::default());
    // 13 coordinators x 8 writer threads, as in the issue.
    let names: Vec<String> = (0..13).map(|i| format!("Coordinator{i}")).collect();
    let all_recording = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                collector.coordinator(&names[0]).record(Duration::from_micros(250), true);
                all_recording.wait(); // eight slots in use at once, not one reused eight times
                for (index, name) in names.iter().enumerate() {
                    let already = u32::from(index == 0);
                    let coordinator = collector.coordinator(name);
                    for _ in already..1000 {
                        coordinator.record(Duration::from_micros(250), true);
                    }
                }
            });
        }
    });
    let allocated = allocated_bytes(&path);
    assert!(allocated <= 8 << 20, "13 x 8 in use allocate {allocated} bytes, over 8 MiB");
    let snapshot = SegmentReader::open(&path, &SegmentOptions::default()).expect("reader").snapshot();
    assert_eq!(snapshot.coordinators.len(), 13);
    assert!(snapshot.coordinators.iter().all(|c| c.executions == 8 * 1000), "exact totals");
    assert_eq!(snapshot.blocks_in_use.0, 13 * 8, "{:?}", snapshot.writers);
    assert_eq!(snapshot.dropped, coordmetrics::Dropped::default());
    eprintln!("default segment, 13 coordinators x 8 writers: {allocated} bytes allocated");
}

#[test]
fn a_full_tmpfs_refuses_blocks_as_counted_drops() {
    let Some(tmpfs) = Tmpfs::mount("1m", "a_full_tmpfs_refuses_blocks_as_counted_drops") else {
        return;
    };
    // Room for the tables of a small segment and a few blocks, not for one block per name.
    let path = tmpfs.path().join("coordmetrics");
    let caps = capacities(1024, 4, 2, 16);
    let collector = Collector::open_with(&path, &SegmentOptions { capacities: caps, ..SegmentOptions::default() })
        .expect("the tables fit");
    let mut attempted = 0u64;
    for index in 0..1024 {
        collector.coordinator(&format!("c{index}")).cache_hit();
        attempted += 1;
    }
    let snapshot = collector.snapshot().expect("enabled");
    let recorded: u64 = snapshot.coordinators.iter().map(|c| c.cache_hits).sum();
    assert!(snapshot.dropped.no_block > 0, "the tmpfs must run out of blocks");
    assert_eq!(snapshot.dropped.blocks, snapshot.dropped.no_block);
    assert_eq!(recorded + snapshot.dropped.updates, attempted, "recorded or counted, never lost");
}

#[test]
fn truncating_the_segment_under_live_writers_kills_nobody() {
    within_deadline(|| {
        let segment = TempSegment::new();
        let caps = capacities(4, 2, 8, 16);
        let workload = Workload { processes: 1, threads: 1, iterations: 1 };
        drop(segment.collector(caps));
        let mut writers: Vec<Writer> =
            (0..2).map(|_| writer("spin", &segment, &caps, &workload, 0).spawn(cm_writer!())).collect();
        for writer in &mut writers {
            assert_eq!(writer.expect_line("dropped"), "0");
        }
        // This process records too, from a thread, while the file is cut to nothing.
        let collector = segment.collector(caps);
        let chat = collector.coordinator("ChatCoordinator");
        chat.cache_hit();
        std::fs::OpenOptions::new().write(true).open(segment.path()).expect("segment").set_len(0).expect("truncate");
        let deadline = Instant::now() + Duration::from_secs(60);
        for writer in &mut writers {
            // Each writer notices (on its next fault, or once a second), counts what it cannot
            // record, and carries on.
            while writer.expect_line("dropped") == "0" {
                assert!(Instant::now() < deadline, "writer {} never noticed the truncation", writer.pid());
            }
        }
        for _ in 0..1000 {
            chat.cache_hit();
            chat.record(Duration::from_millis(1), true);
        }
        assert!(collector.dropped_updates() >= 1000, "this process counts its updates as dropped too");
        for writer in &mut writers {
            let more: u64 = writer.expect_line("dropped").parse().expect("a count");
            assert!(more > 0);
        }
        assert!(
            matches!(
                SegmentReader::open(
                    segment.path(),
                    &SegmentOptions { open_timeout: Duration::ZERO, ..SegmentOptions::default() }
                ),
                Err(coordmetrics::OpenError::Truncated { size: 0, .. })
            ),
            "the truncated file is refused, not read"
        );
        for writer in &mut writers {
            let status = writer.kill();
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "alive until killed: {status}");
        }
    });
}
