//! Golden text of both formatters for a small, fixed report: any change to the output shows
//! up here as a diff to review. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the files.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use coordmetrics::{
    histogram, Capacities, CoordinatorTotals, Dropped, ProcessGauges, RecordedError, SegmentInfo, Snapshot,
    WriterState, WriterSummary,
};
use coordmetrics_report::format::{json, prometheus};
use coordmetrics_report::model::{Health, Report};
use coordmetrics_report::reporter::{ReportOptions, Reporter};

fn coordinator(name: &str, durations_ms: &[u64], errors: u64, hits: u64, misses: u64) -> CoordinatorTotals {
    let mut totals = CoordinatorTotals { hosts: vec![40], ..CoordinatorTotals::empty(name) };
    for &ms in durations_ms {
        totals.buckets[histogram::bucket_index(ms * 1_000_000)] += 1;
        totals.duration_sum_ns += ms * 1_000_000;
        totals.executions += 1;
    }
    (totals.errors, totals.cache_hits, totals.cache_misses) = (errors, hits, misses);
    totals
}

fn report() -> Report {
    let created = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let snapshot = Snapshot {
        taken_at: created + Duration::from_secs(90),
        info: SegmentInfo {
            path: "/dev/shm/coordmetrics".into(),
            layout_version: 1,
            segment_id: 0xfeed,
            created,
            capacities: Capacities::default(),
            size: 59_842_816,
        },
        coordinators: vec![
            coordinator("ChatCoordinator", &[12, 40, 95, 250], 1, 3, 1),
            CoordinatorTotals {
                explicit_memory_bytes: Some(5_000_000),
                ..coordinator("quote\"back\\slash\nline", &[1], 0, 0, 0)
            },
        ],
        events: vec![("tool_call".into(), 7)],
        writers: vec![WriterSummary { slot: 0, state: WriterState::Active { pid: 40 }, process: 40 }],
        processes: vec![ProcessGauges {
            process: 40,
            pid: 40,
            rss_bytes: 40 * 1_048_576,
            cpu_time: Duration::from_secs(40),
            published: created + Duration::from_secs(89),
        }],
        blocks_in_use: (2, 256 * 128),
        dropped: Dropped { updates: 2, no_writer: 2, ..Dropped::default() },
        errors: vec![RecordedError {
            number: 0,
            time: created + Duration::from_secs(80),
            coordinator: Some(0),
            coordinator_name: Some("ChatCoordinator".into()),
            pid: 40,
            message: "provider timeout </script>".into(),
        }],
    };
    let mut reporter = Reporter::starting_at(ReportOptions::default(), created + Duration::from_secs(30));
    reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at))
}

fn check(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read(&path).unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the golden file; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff.\n{}",
        String::from_utf8_lossy(actual)
    );
}

#[test]
fn prometheus_text_matches_the_golden_file() {
    let options = prometheus::PrometheusOptions {
        bucket_resolution: histogram::Resolution::new(1).unwrap(),
        compat_names: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    prometheus::write_report(&mut out, &report(), &options).unwrap();
    check("small.prom", &out);
}

#[test]
fn metrics_json_matches_the_golden_file() {
    let mut out = Vec::new();
    json::write_report(&mut out, &report()).unwrap();
    check("small.json", &out);
}
