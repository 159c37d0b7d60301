//! One process, many threads: slot reuse, quantiles, capacity exhaustion.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use coordmetrics::{histogram, Dropped, WriterState};
use coordmetrics_tests::process::within_deadline;
use coordmetrics_tests::rng::Rng;
use coordmetrics_tests::segment::{capacities, coordinator_totals, TempSegment};
use coordmetrics_tests::workload::{assert_totals, Handles, Workload, NAMES};

#[test]
fn short_lived_threads_reuse_parked_slots() {
    within_deadline(|| {
        const SEQUENTIAL: u32 = 200;
        const WAVES: u32 = 25;
        const CONCURRENT: u32 = 8;
        let segment = TempSegment::new();
        let collector = segment.collector(capacities(8, 4, 16, 4096));
        let handles = Arc::new(Handles::resolve(&collector, &NAMES));
        let workload = Workload { processes: 1, threads: SEQUENTIAL + WAVES * CONCURRENT, iterations: 20 };
        let run_thread = |thread: u32| {
            let handles = Arc::clone(&handles);
            std::thread::spawn(move || handles.run(&workload, 0, thread))
        };

        for thread in 0..SEQUENTIAL {
            run_thread(thread).join().unwrap();
        }
        let sequential = segment.snapshot();
        assert_eq!(
            sequential.writers.len(),
            1,
            "each thread must take back the slot its predecessor parked: {:?}",
            sequential.writers
        );
        assert_eq!(sequential.writers[0].state, WriterState::Parked { pid: std::process::id() });

        for wave in 0..WAVES {
            let first = SEQUENTIAL + wave * CONCURRENT;
            let threads: Vec<_> = (first..first + CONCURRENT).map(run_thread).collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        }
        let snapshot = segment.snapshot();
        assert_totals(&snapshot, &workload.expected());
        assert_eq!(snapshot.dropped, Dropped::default());
        assert!(snapshot.writers.len() <= CONCURRENT as usize, "{:?}", snapshot.writers);
    });
}

#[test]
fn quantiles_are_within_five_percent_of_the_exact_ones() {
    let segment = TempSegment::new();
    let collector = segment.collector(capacities(2, 1, 1, 1));
    let coordinator = collector.coordinator("LatencyCoordinator");
    let mut rng = Rng::new(7);
    // Log-uniform between 1 ms and 2 s.
    let (low, high) = (1e-3f64, 2.0f64);
    let mut nanos: Vec<u64> = (0..5000).map(|_| (low * (high / low).powf(rng.unit()) * 1e9) as u64).collect();
    for &n in &nanos {
        coordinator.record(Duration::from_nanos(n), true);
    }

    let snapshot = collector.snapshot().expect("enabled");
    let recorded = coordinator_totals(&snapshot, "LatencyCoordinator");
    assert_eq!(recorded.executions, nanos.len() as u64);
    assert_eq!(recorded.duration_sum_ns, nanos.iter().sum::<u64>());
    nanos.sort_unstable();
    for q in [0.5, 0.95, 0.99] {
        let rank = (q * nanos.len() as f64).ceil() as usize;
        let exact = nanos[rank - 1] as f64 * 1e-9;
        let estimate = histogram::quantile(&recorded.buckets, q).expect("non-empty");
        let error = (estimate - exact).abs() / exact;
        assert!(error <= 0.05, "p{q}: estimate {estimate} s, exact {exact} s ({:.1}% off)", error * 100.0);
    }
}

#[test]
fn full_name_tables_drop_only_the_excess() {
    let segment = TempSegment::new();
    let collector = segment.collector(capacities(4, 2, 4, 16));
    let names = ["A", "B", "C", "D", "Fifth", "Sixth"];
    let coordinators: Vec<_> = names.iter().map(|n| collector.coordinator(n)).collect();
    let events: Vec<_> = ["e1", "e2", "e3"].iter().map(|n| collector.event(n)).collect();
    assert!(coordinators[..4].iter().all(|c| c.is_recording()));
    assert!(coordinators[4..].iter().all(|c| !c.is_recording()));

    let mut attempted_dropped = 0;
    for (index, coordinator) in coordinators.iter().enumerate() {
        for _ in 0..=index {
            coordinator.record(Duration::from_millis(index as u64 + 1), true);
            coordinator.cache_hit();
        }
        if index >= 4 {
            attempted_dropped += 2 * (index as u64 + 1);
        }
    }
    for (index, event) in events.iter().enumerate() {
        event.record(10 * (index as u64 + 1));
    }
    attempted_dropped += 1; // the third event
                            // By name: each call is one update, dropped once.
    collector.record_cache_hit("Seventh");
    collector.record_analytics_event("e4", 5);
    attempted_dropped += 2;

    let snapshot = collector.snapshot().expect("enabled");
    let recorded: Vec<(&str, u64, u64)> =
        snapshot.coordinators.iter().map(|c| (c.name.as_str(), c.executions, c.cache_hits)).collect();
    assert_eq!(recorded, [("A", 1, 1), ("B", 2, 2), ("C", 3, 3), ("D", 4, 4)]);
    assert_eq!(snapshot.events, [("e1".to_owned(), 10), ("e2".to_owned(), 20)]);
    assert_eq!(
        snapshot.dropped,
        Dropped {
            updates: attempted_dropped,
            name: attempted_dropped, // every drop here is a refused name
            no_writer: 0,
            no_block: 0,
            blocks: 0,
            coordinators: 3, // Fifth, Sixth, Seventh
            events: 2,       // e3, e4
            writers: 0,
        }
    );
    assert_eq!(collector.dropped_updates(), attempted_dropped);
}

#[test]
fn threads_without_a_writer_slot_count_their_updates_as_dropped() {
    within_deadline(|| {
        const THREADS: usize = 4;
        const SLOTS: u32 = 2;
        const UPDATES: u64 = 5000; // more than the retry interval of a thread without a slot
        let segment = TempSegment::new();
        let collector = segment.collector(capacities(2, 2, SLOTS, 16));
        let coordinator = collector.coordinator("Busy");
        let event = collector.event("busy_event");
        // Every thread records while all of them are alive, so only SLOTS of them get a slot.
        let (started, finished) = (Barrier::new(THREADS), Barrier::new(THREADS));
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    started.wait();
                    for _ in 0..UPDATES / 2 {
                        coordinator.record(Duration::from_micros(3), true);
                        event.record(1);
                    }
                    finished.wait();
                });
            }
        });

        let snapshot = collector.snapshot().expect("enabled");
        let executions = coordinator_totals(&snapshot, "Busy").executions;
        let events = snapshot.events[0].1;
        let attempted = THREADS as u64 * UPDATES;
        assert_eq!(executions + events + snapshot.dropped.updates, attempted);
        // Whole threads recorded or dropped, never part of one.
        assert_eq!(executions, u64::from(SLOTS) * UPDATES / 2);
        assert_eq!(events, u64::from(SLOTS) * UPDATES / 2);
        assert!(snapshot.dropped.writers >= (THREADS as u64 - u64::from(SLOTS)));
        assert_eq!(snapshot.writers.len(), SLOTS as usize);
    });
}

#[test]
fn by_name_cache_updates_land_in_the_coordinators_counters() {
    within_deadline(|| {
        let segment = TempSegment::new();
        let collector = segment.collector(capacities(4, 4, 4, 16));
        let chat = collector.coordinator("Chat");
        let threads: Vec<_> = (0..3u64)
            .map(|thread| {
                let collector = collector.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 + thread {
                        collector.record_cache_hit("Chat");
                    }
                    for _ in 0..10 * thread {
                        collector.record_cache_miss("Tool");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        chat.cache_hit();
        chat.cache_miss();

        let snapshot = segment.snapshot();
        let totals: Vec<(&str, u64, u64)> =
            snapshot.coordinators.iter().map(|c| (c.name.as_str(), c.cache_hits, c.cache_misses)).collect();
        assert_eq!(totals, [("Chat", 3004, 1), ("Tool", 0, 30)]);
        assert_eq!(snapshot.dropped.updates, 0);
    });
}

#[test]
fn a_tracker_hands_back_exactly_the_duration_it_recorded() {
    let segment = TempSegment::new();
    let collector = segment.collector(capacities(2, 1, 2, 4));
    let chat = collector.coordinator("ChatCoordinator");
    let tracker = chat.track();
    std::thread::sleep(Duration::from_millis(2));
    let succeeded = tracker.finish(true);
    let failed = chat.track().fail("timeout");
    assert!(succeeded >= Duration::from_millis(2));
    let totals = segment.snapshot().coordinators.remove(0);
    assert_eq!(totals.duration_sum_ns, (succeeded + failed).as_nanos() as u64);
    assert_eq!((totals.executions, totals.errors), (2, 1));
}

#[test]
fn one_coordinators_totals_are_the_snapshots_without_reading_the_rest() {
    within_deadline(|| {
        let segment = TempSegment::new();
        let collector = segment.collector(capacities(8, 4, 16, 64));
        let handles = Arc::new(Handles::resolve(&collector, &NAMES));
        let workload = Workload { processes: 1, threads: 4, iterations: 500 };
        let threads: Vec<_> = (0..workload.threads)
            .map(|thread| {
                let handles = Arc::clone(&handles);
                std::thread::spawn(move || handles.run(&workload, 0, thread))
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        collector.reset_coordinator(NAMES.coordinators[1]);
        collector.coordinator(NAMES.coordinators[1]).record(Duration::from_millis(3), false);

        let snapshot = segment.snapshot();
        for name in NAMES.coordinators {
            let whole = coordinator_totals(&snapshot, name);
            let one = collector.coordinator_totals(name).expect("registered");
            let counters = |t: &coordmetrics::CoordinatorTotals| {
                (t.executions, t.errors, t.cache_hits, t.cache_misses, t.duration_sum_ns, t.buckets.clone())
            };
            assert_eq!(counters(&one), counters(whole), "{name}");
        }
        assert_eq!(collector.coordinator_totals(NAMES.coordinators[1]).unwrap().executions, 1, "after its reset");
        assert!(collector.coordinator_totals("NeverRecorded").is_none());
        assert!(segment.snapshot().coordinators.iter().all(|c| c.name != "NeverRecorded"), "asking registers nothing");
    });
}
