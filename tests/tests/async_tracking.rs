//! The async forms of `track`, and trackers dropped while a thread panics.

use std::future::pending;
use std::panic::{catch_unwind, AssertUnwindSafe};

use coordmetrics::{Collector, CoordinatorTotals, Snapshot};
use coordmetrics_tests::executor::{block_on, poll_once, YieldOnce};
use coordmetrics_tests::process::within_deadline;
use coordmetrics_tests::segment::{capacities, TempSegment};

fn only(snapshot: &Snapshot) -> &CoordinatorTotals {
    assert_eq!(snapshot.coordinators.len(), 1, "{:?}", snapshot.coordinators);
    &snapshot.coordinators[0]
}

/// (executions, errors, in flight, messages oldest first) of the only coordinator.
fn state(collector: &Collector) -> (u64, u64, i64, Vec<String>) {
    let snapshot = collector.snapshot().expect("enabled");
    let totals = only(&snapshot);
    let messages = snapshot.errors.iter().rev().map(|e| e.message.clone()).collect();
    (totals.executions, totals.errors, totals.in_flight, messages)
}

#[test]
fn async_executions_count_success_failure_and_cancellation() {
    within_deadline(|| {
        let segment = TempSegment::new();
        let collector = segment.collector(capacities(4, 1, 4, 16));
        let chat = collector.coordinator("AsyncCoordinator");

        let answer = block_on(chat.track_async(async {
            YieldOnce::default().await;
            42
        }));
        assert_eq!(answer, 42);
        assert_eq!(state(&collector), (1, 0, 0, vec![]));

        let ok: Result<u8, String> = block_on(chat.track_result_async(async { Ok(7) }));
        assert_eq!(ok, Ok(7));
        let failed: Result<u8, String> = block_on(chat.track_result_async(async {
            YieldOnce::default().await;
            Err("backend returned 503".to_owned())
        }));
        assert!(failed.is_err());
        assert_eq!(state(&collector), (3, 1, 0, vec!["backend returned 503".into()]));

        // Started, suspended, then dropped: one execution, failed as cancelled.
        let mut abandoned = Box::pin(chat.track_async(pending::<()>()));
        assert!(poll_once(abandoned.as_mut()).is_pending());
        assert_eq!(state(&collector).2, 1, "a suspended execution is in flight");
        drop(abandoned);
        let cancelled = vec!["backend returned 503".to_owned(), "cancelled".to_owned()];
        assert_eq!(state(&collector), (4, 2, 0, cancelled.clone()));

        // Never polled: it never started, so nothing is recorded.
        drop(chat.track_async(async {}));
        drop(chat.track_result_async(async { Err::<(), _>("never") }));
        assert_eq!(state(&collector), (4, 2, 0, cancelled));
    });
}

#[test]
fn trackers_dropped_while_panicking_count_as_failed() {
    within_deadline(|| {
        let segment = TempSegment::new();
        let collector = segment.collector(capacities(4, 1, 4, 16));
        let tool = collector.coordinator("PanickyCoordinator");

        let panicked = catch_unwind(AssertUnwindSafe(|| {
            let _tracker = tool.track();
            panic!("tool exploded");
        }));
        assert!(panicked.is_err());
        assert_eq!(state(&collector), (1, 1, 0, vec!["panicked".into()]));

        let panicked = catch_unwind(AssertUnwindSafe(|| {
            let _tracker = collector.track_coordinator("PanickyCoordinator");
            panic!("tool exploded by name");
        }));
        assert!(panicked.is_err());
        assert_eq!(state(&collector), (2, 2, 0, vec!["panicked".into(), "panicked".into()]));

        let panicked = catch_unwind(AssertUnwindSafe(|| {
            block_on(tool.track_async(async {
                YieldOnce::default().await;
                panic!("async tool exploded");
            }))
        }));
        assert!(panicked.is_err());
        let (executions, errors, in_flight, messages) = state(&collector);
        assert_eq!((executions, errors, in_flight), (3, 3, 0));
        assert_eq!(messages.last().map(String::as_str), Some("panicked"), "a panic is not a cancellation");
    });
}
