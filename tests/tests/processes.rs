//! Real processes times threads recording into one segment: exact totals, a forked child,
//! a killed writer, and a race to create the segment.

use std::collections::BTreeSet;
use std::sync::Barrier;

use coordmetrics::{Capacities, Snapshot, WriterState};
use coordmetrics_tests::cm_writer;
use coordmetrics_tests::process::{within_deadline, Writer, WriterCommand};
use coordmetrics_tests::segment::{capacities, coordinator_totals, TempSegment};
use coordmetrics_tests::workload::{assert_totals, Handles, Totals, Workload, COORDINATORS, NAMES, TRACKED};

/// Room for every name of the workload and, with 4096 ring entries, for every error message
/// of the workloads below (about one operation in eight carries a message).
fn workload_capacities(writers: u32) -> Capacities {
    capacities(16, 8, writers, 4096)
}

/// `cm-writer MODE` for process `process` of `workload`.
fn writer(mode: &str, segment: &TempSegment, caps: &Capacities, workload: &Workload, process: u32) -> WriterCommand {
    WriterCommand::new(mode, segment.path(), caps, workload).arg("--process", process)
}

fn writer_pids(snapshot: &Snapshot) -> BTreeSet<u32> {
    snapshot
        .writers
        .iter()
        .map(|w| match w.state {
            WriterState::Active { pid } | WriterState::Parked { pid } | WriterState::Dead { pid } => pid,
            WriterState::Free => unreachable!("snapshots list claimed slots only"),
        })
        .collect()
}

/// Asserts what holds for every workload snapshot besides the exact totals.
fn assert_consistent(snapshot: &Snapshot, expected: &Totals, writer_pids_allowed: &BTreeSet<u32>) {
    assert_totals(snapshot, expected);
    for c in &snapshot.coordinators {
        assert!(c.errors <= c.executions, "{}: errors > executions", c.name);
        assert_eq!(c.buckets.iter().sum::<u64>(), c.executions, "{}", c.name);
    }
    for error in &snapshot.errors {
        assert!(writer_pids_allowed.contains(&error.pid), "error from unknown pid {}", error.pid);
    }
    assert_eq!(snapshot.dropped, coordmetrics::Dropped::default(), "nothing may be dropped");
}

#[test]
fn totals_are_exact_across_processes_and_threads() {
    let segment = TempSegment::new();
    let caps = workload_capacities(32);
    let workload = Workload { processes: 4, threads: 4, iterations: 1500 };
    let expected = workload.expected();
    assert!(expected.messages.len() < caps.errors as usize, "the ring must hold every message");
    // Create the segment first so that every writer opens the same capacities.
    drop(segment.collector(caps));

    let mut writers: Vec<Writer> = (0..workload.processes)
        .map(|process| writer("workload", &segment, &caps, &workload, process).spawn(cm_writer!()))
        .collect();
    writers.iter_mut().for_each(Writer::wait_success);
    let pids: BTreeSet<u32> = writers.iter().map(Writer::pid).collect();

    let snapshot = segment.snapshot();
    assert_consistent(&snapshot, &expected, &pids);
    assert_eq!(writer_pids(&snapshot), pids, "each process wrote through its own slots");
    assert!(snapshot.writers.len() <= (workload.processes * workload.threads) as usize);
}

#[test]
fn forked_child_records_through_its_own_slot() {
    let segment = TempSegment::new();
    let caps = workload_capacities(8);
    // Process 0 records before the fork, 1 is the parent after it, 2 the child.
    // One thread each: the child's only recording thread is the one that forked, whose slot
    // binding it inherited; it must notice the fork and claim a slot of its own.
    let workload = Workload { processes: 3, threads: 1, iterations: 5000 };
    let mut parent = writer("fork", &segment, &caps, &workload, 0).spawn(cm_writer!());
    let child: u32 = parent.expect_line("forked").parse().expect("child pid");
    parent.wait_success();

    let snapshot = segment.snapshot();
    let pids = BTreeSet::from([parent.pid(), child]);
    assert_eq!(writer_pids(&snapshot), pids, "parent and child must own distinct slots");
    assert_consistent(&snapshot, &workload.expected(), &pids);
}

#[test]
fn killed_writer_keeps_its_counts_loses_its_gauges_and_frees_its_slot() {
    let segment = TempSegment::new();
    // A single writer slot: the second process can only record by taking over the first's.
    let caps = workload_capacities(1);
    let workload = Workload { processes: 2, threads: 1, iterations: 500 };
    let memory = 123_456_789;
    let mut victim = writer("hold", &segment, &caps, &workload, 0).arg("--memory", memory).spawn(cm_writer!());
    victim.expect_line("ready");
    let victim_pid = victim.pid();
    let first = workload.expected_for(0..1);

    let alive = segment.snapshot();
    assert_totals(&alive, &first);
    assert_eq!(coordinator_totals(&alive, TRACKED).in_flight, 1);
    assert_eq!(coordinator_totals(&alive, COORDINATORS[0]).explicit_memory_bytes, Some(memory));
    assert_eq!(alive.writers[0].state, WriterState::Active { pid: victim_pid });

    assert!(!victim.kill().success());
    let dead = segment.snapshot();
    assert_totals(&dead, &first); // a dead writer's counts stay in the totals
    assert_eq!(coordinator_totals(&dead, TRACKED).in_flight, 0);
    assert_eq!(coordinator_totals(&dead, COORDINATORS[0]).explicit_memory_bytes, None);
    assert_eq!(coordinator_totals(&dead, COORDINATORS[0]).hosts, Vec::<u64>::new());
    assert_eq!(dead.writers.len(), 1);
    assert_eq!(dead.writers[0].state, WriterState::Dead { pid: victim_pid });

    let mut successor = writer("workload", &segment, &caps, &workload, 1).spawn(cm_writer!());
    successor.wait_success();
    let after = segment.snapshot();
    assert_consistent(&after, &workload.expected(), &BTreeSet::from([victim_pid, successor.pid()]));
    assert_eq!(after.writers.len(), 1);
    assert_eq!(writer_pids(&after), BTreeSet::from([successor.pid()]), "the slot was taken over");
}

#[test]
fn processes_racing_to_create_the_segment_share_one() {
    let segment = TempSegment::new();
    let go = segment.dir().join("go");
    let caps = workload_capacities(16);
    let workload = Workload { processes: 8, threads: 2, iterations: 300 };
    let mut writers: Vec<Writer> = (0..workload.processes)
        .map(|process| {
            writer("workload", &segment, &caps, &workload, process).arg("--wait-for", go.display()).spawn(cm_writer!())
        })
        .collect();
    std::fs::write(&go, b"").unwrap();
    let ids: BTreeSet<u64> =
        writers.iter_mut().map(|w| w.expect_line("segment-id").parse().expect("segment id")).collect();
    writers.iter_mut().for_each(Writer::wait_success);

    let snapshot = segment.snapshot();
    assert_eq!(ids, BTreeSet::from([snapshot.info.segment_id]), "exactly one segment was created");
    let pids = writers.iter().map(Writer::pid).collect();
    assert_consistent(&snapshot, &workload.expected(), &pids);
}

/// The same race between threads, each with its own `Collector::open`: much tighter than
/// between processes, so it is repeated to catch an opener that looks at a half-made file.
#[test]
fn threads_racing_to_create_the_segment_share_one() {
    within_deadline(|| {
        const THREADS: u32 = 8;
        let workload = Workload { processes: 1, threads: THREADS, iterations: 20 };
        for round in 0..40 {
            let segment = TempSegment::new();
            let start = Barrier::new(THREADS as usize);
            let ids: BTreeSet<u64> = std::thread::scope(|scope| {
                let openers: Vec<_> = (0..THREADS)
                    .map(|thread| {
                        let (start, segment) = (&start, &segment);
                        scope.spawn(move || {
                            start.wait();
                            let collector = segment.collector(workload_capacities(THREADS));
                            Handles::resolve(&collector, &NAMES).run(&workload, 0, thread);
                            collector.segment_info().expect("enabled").segment_id
                        })
                    })
                    .collect();
                openers.into_iter().map(|t| t.join().expect("opener panicked")).collect()
            });
            let snapshot = segment.snapshot();
            assert_eq!(ids, BTreeSet::from([snapshot.info.segment_id]), "round {round}");
            assert_totals(&snapshot, &workload.expected());
        }
    });
}

#[test]
fn a_reset_restarts_one_coordinator_at_zero_for_every_reader() {
    let segment = TempSegment::new();
    let caps = workload_capacities(8);
    let workload = Workload { processes: 2, threads: 2, iterations: 300 };
    drop(segment.collector(caps));
    // Another process's counts, and this one's.
    writer("workload", &segment, &caps, &workload, 0).spawn(cm_writer!()).wait_success();
    let collector = segment.collector(caps);
    let handles = Handles::resolve(&collector, &NAMES);
    workload.run_process(&handles, 1);
    let before = segment.snapshot();
    let events_before = before.events.clone();

    assert!(collector.reset_coordinator(COORDINATORS[0]));
    assert!(!collector.reset_coordinator("NeverRegistered"), "nothing to reset");
    let after = segment.snapshot();
    let reset = coordinator_totals(&after, COORDINATORS[0]);
    assert_eq!((reset.executions, reset.errors, reset.cache_hits, reset.cache_misses), (0, 0, 0, 0));
    assert_eq!((reset.duration_sum_ns, reset.buckets.iter().sum::<u64>()), (0, 0));
    for name in &COORDINATORS[1..] {
        assert_eq!(coordinator_totals(&after, name), coordinator_totals(&before, name), "{name} untouched");
    }
    assert_eq!(after.events, events_before, "events untouched by a coordinator's reset");

    // Counting starts again from zero, in every process.
    handles.coordinator(0).record(std::time::Duration::from_millis(3), true);
    writer("workload", &segment, &caps, &Workload { processes: 2, threads: 1, iterations: 10 }, 0)
        .spawn(cm_writer!())
        .wait_success();
    let expected_again = Workload { processes: 2, threads: 1, iterations: 10 }.expected_for(0..1);
    let again = coordinator_totals(&segment.snapshot(), COORDINATORS[0]).executions;
    assert_eq!(again, 1 + expected_again.coordinators[COORDINATORS[0]].executions);

    collector.reset_all();
    let cleared = segment.snapshot();
    assert!(cleared.coordinators.iter().all(|c| c.executions == 0 && c.cache_hits == 0), "{:?}", cleared.coordinators);
    assert!(cleared.events.iter().all(|(_, count)| *count == 0));
}
