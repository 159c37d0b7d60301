//! The exporter beside writers in other pid namespaces, and under a segment truncated while
//! everything runs: it must neither misjudge live writers as dead nor crash.

mod common;

use std::time::Duration;

use common::{bin, free_port, run_args, run_bounded, spawn_in_pid_namespace, wait_until, Exporter};
use coordmetrics::{Capacities, Collector, SegmentOptions, SegmentReader};

const TIMEOUT: Duration = Duration::from_secs(60);

fn small_options() -> SegmentOptions {
    SegmentOptions {
        capacities: Capacities { coordinators: 16, events: 8, writers: 8, errors: 32 },
        ..SegmentOptions::default()
    }
}

fn live_writers(segment: &std::path::Path) -> usize {
    SegmentReader::open(segment, &small_options()).map_or(0, |reader| reader.snapshot().live_writers())
}

#[test]
fn cleanup_refuses_a_segment_written_from_another_pid_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    drop(Collector::open_with(&segment, &small_options()).unwrap());
    let path = segment.to_str().unwrap();
    let Some(_worker) = spawn_in_pid_namespace(&[
        "demo-worker",
        "--segment",
        path,
        "--seed",
        "1",
        "--threads",
        "1",
        "--share",
        "1",
        "--duration",
        "60s",
    ]) else {
        return;
    };
    wait_until(TIMEOUT, "the writer in its own pid namespace to record", || live_writers(&segment) == 1);
    let cleanup = |force: bool| {
        let mut command = bin();
        command.args(["cleanup", "--segment", path]);
        if force {
            command.arg("--force");
        }
        run_bounded(&mut command, TIMEOUT)
    };
    let refused = cleanup(false);
    assert_eq!(refused.status.code(), Some(5), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(segment.exists(), "a segment with a live writer in another namespace is kept");
    let forced = cleanup(true);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    assert!(!segment.exists());
}

#[test]
fn the_exporter_survives_a_truncated_segment_and_recovers_when_it_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let (prom, json) = (dir.path().join("c.prom"), dir.path().join("metrics.json"));
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut args = run_args(&segment, &prom, &json, "100ms");
    args.extend(["--create", "--listen", &listen]);
    let exporter = Exporter::start(&args);
    let metrics = || String::from_utf8(exporter.get("/metrics").1).unwrap();
    wait_until(TIMEOUT, "the exporter to create the segment", || metrics().contains("coordmetrics_up 1"));

    // This process records from a thread all along: it must survive the truncation too.
    let collector = Collector::open(&segment).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the recording thread however the test ends, so that a failure is not a hang.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            let chat = collector.coordinator("ChatCoordinator");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                chat.record(Duration::from_millis(2), true);
                std::thread::yield_now();
            }
        });
        wait_until(TIMEOUT, "the recorded executions in /metrics", || {
            metrics().contains("victor_coordinator_executions_total{coordinator=\"ChatCoordinator\"}")
        });
        std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(0).unwrap();
        wait_until(TIMEOUT, "coordmetrics_up 0 after the truncation", || metrics().contains("coordmetrics_up 0"));
        wait_until(TIMEOUT, "the recording thread to count its updates as dropped", || collector.dropped_updates() > 0);
        exporter.wait_for_log("truncated", TIMEOUT); // a clear error in the log

        // Recreated (here by removing the file: the exporter creates a fresh one), the
        // segment is read again.
        std::fs::remove_file(&segment).unwrap();
        wait_until(TIMEOUT, "coordmetrics_up 1 once the segment is recreated", || {
            metrics().contains("coordmetrics_up 1")
        });
    });
    let mut exporter = exporter;
    assert!(exporter.child.try_wait().unwrap().is_none(), "the exporter is still running");
}
