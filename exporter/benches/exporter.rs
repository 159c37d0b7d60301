//! What one exporter tick costs, by segment size: snapshot, report, Prometheus and JSON
//! rendering (and the other formats `/metrics` negotiates: OpenMetrics text and protobuf with
//! native histograms), and the atomic file write.
//!
//! Each case fills a segment with `coordinators x writers`: that many live writer threads (one
//! slot each), every one of them having recorded into every coordinator, then parked on a
//! channel until the case is over so that their slots stay live. The reporter is first fed
//! a full history (120 snapshots), as a sidecar has after 120 intervals, so the JSON and the
//! report carry their steady-state size. Throughput is in coordinator blocks (coordinators x
//! writers), so linear growth shows as a constant time per element.
//!
//! Times are the bench thread's CPU time (user + system, so the `/proc` reads of a snapshot
//! count), except for the atomic write, which waits for the disk and is timed on the wall
//! clock; `COORDMETRICS_BENCH_CLOCK=wall` times everything on the wall clock.
//!
//! With `COORDMETRICS_BENCH_SEGMENT=PATH`, only the exposition of that existing segment is
//! measured (used by `bench/multiprocess.sh`).
//!
//! Run: `cargo bench -p coordmetrics-exporter --bench exporter -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use coordmetrics::{Capacities, Collector, SegmentOptions, SegmentReader};
use coordmetrics_exporter::sink;
use coordmetrics_report::format::native::NativeOptions;
use coordmetrics_report::format::prometheus::{Dialect, PrometheusOptions};
use coordmetrics_report::format::{json, model, prometheus, protobuf};
use coordmetrics_report::model::{Health, Report};
use coordmetrics_report::reporter::{ReportOptions, Reporter};
use coordmetrics_report::sample::{EVENTS, PROFILES};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

#[path = "../../client/benches/support/clock.rs"]
mod clock;
use clock::Clock;

const HISTORY: usize = 120;

/// Benchmarks `operation` timed on `clock`.
fn measure(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, clock: Clock, mut operation: impl FnMut()) {
    group.bench_function(name, |b| b.iter_custom(|iterations| clock.time(iterations, &mut operation)));
}

/// A segment with `writers` live writer slots, each holding counts for every coordinator.
struct Filled {
    dir: tempfile::TempDir,
    reader: SegmentReader,
    release: Vec<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Filled {
    fn new(coordinators: u32, writers: u32) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("segment");
        let capacities = Capacities { coordinators, writers, ..Capacities::default() };
        let collector =
            Collector::open_with(&path, &SegmentOptions { capacities, ..SegmentOptions::default() }).expect("segment");
        let names: Vec<String> = (0..coordinators as usize)
            .map(|i| PROFILES.get(i).map_or_else(|| format!("Coordinator{i:03}"), |p| p.name.to_owned()))
            .collect();
        let (ready_tx, ready) = mpsc::channel();
        let mut release = Vec::new();
        let mut threads = Vec::new();
        for writer in 0..writers {
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let (collector, names, ready_tx) = (collector.clone(), names.clone(), ready_tx.clone());
            threads.push(std::thread::spawn(move || {
                for (index, name) in names.iter().enumerate() {
                    let coordinator = collector.coordinator(name);
                    let spread = (writer as u64 * 7 + index as u64 * 13) % 997;
                    for sample in 0..20u64 {
                        coordinator.record(Duration::from_micros(200 + spread * 97 + sample * 1_531), true);
                    }
                    coordinator.cache_hit();
                    coordinator.cache_miss();
                    if index == 0 {
                        coordinator.record_failure(Duration::from_millis(3), "provider timeout after 60s");
                    }
                }
                collector.record_analytics_event(EVENTS[writer as usize % EVENTS.len()], 3);
                let _ = ready_tx.send(());
                // Stay alive (and so keep the slot live) until the case is over.
                let _ = release_rx.recv();
            }));
            release.push(release_tx);
        }
        for _ in 0..writers {
            ready.recv().expect("writer thread ready");
        }
        let reader = SegmentReader::open(&path, &SegmentOptions::default()).expect("reader");
        let layout = coordmetrics_proto::Layout::new(capacities).expect("layout");
        let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&path).expect("segment")) * 512;
        eprintln!(
            "exporter {coordinators}x{writers}: segment {} bytes long, {allocated} bytes allocated ({:.2} MiB)",
            layout.total_size(),
            allocated as f64 / 1048576.0
        );
        let snapshot = reader.snapshot();
        assert_eq!(snapshot.live_writers(), writers as usize, "every writer slot live");
        assert_eq!(snapshot.coordinators.len(), coordinators as usize);
        Self { dir, reader, release, threads }
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        self.release.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn case(c: &mut Criterion, clock: Clock, coordinators: u32, writers: u32) {
    let filled = Filled::new(coordinators, writers);
    let mut reporter = Reporter::new(ReportOptions::default());
    for _ in 0..HISTORY {
        let snapshot = filled.reader.snapshot();
        reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at));
    }
    let options = prometheus::PrometheusOptions::default();
    let snapshot = filled.reader.snapshot();
    let report = reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at));
    let mut prometheus_text = Vec::new();
    prometheus::write_report(&mut prometheus_text, &report, &options).expect("render");
    let mut json_text = Vec::new();
    json::write_report(&mut json_text, &report).expect("render");
    eprintln!(
        "exporter {coordinators}x{writers}: prometheus text {} bytes, metrics.json {} bytes",
        prometheus_text.len(),
        json_text.len()
    );

    let mut group = c.benchmark_group(format!("exporter {coordinators}x{writers}"));
    group.throughput(Throughput::Elements(u64::from(coordinators) * u64::from(writers)));
    measure(&mut group, "snapshot", clock, || {
        black_box(filled.reader.snapshot());
    });
    measure(&mut group, "report", clock, || {
        black_box(reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at)));
    });
    // The formats /metrics negotiates, each from the report: the families, then the encoding.
    type Render = fn(&mut Vec<u8>, &Report, &PrometheusOptions) -> std::io::Result<()>;
    let renders: [(&str, Render); 3] = [
        ("prometheus render", |out, report, options| prometheus::write_report(out, report, options)),
        ("openmetrics render", |out, report, options| {
            let families = model::families(report, options);
            prometheus::write_families(out, &families, options.bucket_resolution, Dialect::OpenMetrics)
        }),
        ("protobuf render (native + classic)", |out, report, options| {
            let families = model::families(report, options);
            protobuf::write_families(out, &families, options.bucket_resolution, NativeOptions::default())
        }),
    ];
    for (name, render) in renders {
        let mut out = Vec::new();
        render(&mut out, &report, &options).expect("render");
        eprintln!("exporter {coordinators}x{writers}: {name}: {} bytes", out.len());
        measure(&mut group, name, clock, || {
            out.clear();
            render(&mut out, black_box(&report), &options).expect("render");
        });
    }
    let mut out = Vec::with_capacity(json_text.len());
    measure(&mut group, "json render", clock, || {
        out.clear();
        json::write_report(&mut out, black_box(&report)).expect("render");
    });
    // As the exporter writes it: the history points of earlier ticks are rendered already.
    let mut json_writer = json::JsonWriter::default();
    measure(&mut group, "json render (history cached)", clock, || {
        out.clear();
        json_writer.write(&mut out, black_box(&report)).expect("render");
    });
    let (mut prom_out, mut json_out) = (Vec::new(), Vec::new());
    measure(&mut group, "snapshot + report + both renders", clock, || {
        let snapshot = filled.reader.snapshot();
        let report = reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at));
        prom_out.clear();
        json_out.clear();
        prometheus::write_report(&mut prom_out, &report, &options).expect("render");
        json_writer.write(&mut json_out, &report).expect("render");
    });
    let target = filled.dir.path().join("coordmetrics.prom");
    measure(&mut group, "atomic write (prometheus text, wall clock)", Clock::Wall, || {
        sink::write_atomic(&target, |w| w.write_all(&prometheus_text)).expect("write");
    });
    group.finish();
}

/// The exposition of an existing segment, as `bench/multiprocess.sh` compares it with Python's
/// `generate_latest`: snapshot, report and Prometheus text, in this process.
fn given_segment(c: &mut Criterion, clock: Clock, path: &str) {
    let reader = SegmentReader::open(path, &SegmentOptions::default()).expect("COORDMETRICS_BENCH_SEGMENT");
    let options = prometheus::PrometheusOptions::default();
    let mut reporter = Reporter::new(ReportOptions::default());
    let mut out = Vec::new();
    let mut group = c.benchmark_group("exporter given segment");
    group.throughput(Throughput::Elements(1));
    measure(&mut group, "snapshot + report + prometheus render", clock, || {
        let snapshot = reader.snapshot();
        let report = reporter.report(&snapshot, Health::snapshot_at(snapshot.taken_at));
        out.clear();
        prometheus::write_report(&mut out, &report, &options).expect("render");
    });
    group.finish();
    eprintln!("exporter given segment: prometheus text {} bytes", out.len());
}

/// Where the 13 x 8 tick goes beyond the counters: the `/proc` read behind each writer slot's
/// liveness check in a snapshot, and the share of the 120-point history in the JSON.
fn attribution(c: &mut Criterion, clock: Clock) {
    let filled = Filled::new(13, 8);
    let mut group = c.benchmark_group("exporter 13x8 attribution");
    group.throughput(Throughput::Elements(1));
    let pid = std::process::id();
    measure(&mut group, "ProcessStat::read (per writer slot, per snapshot)", clock, || {
        black_box(coordmetrics::process::ProcessStat::read(black_box(pid)));
    });
    let report = Reporter::single(&filled.reader.snapshot());
    let mut out = Vec::new();
    measure(&mut group, "json render, history of 1 point", clock, || {
        out.clear();
        json::write_report(&mut out, black_box(&report)).expect("render");
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let clock = Clock::from_env();
    eprintln!("exporter: timing on {}", clock.describe());
    if let Ok(path) = std::env::var("COORDMETRICS_BENCH_SEGMENT") {
        return given_segment(c, clock, &path);
    }
    for (coordinators, writers) in [(13, 8), (256, 32), (256, 128)] {
        case(c, clock, coordinators, writers);
    }
    attribution(c, clock);
}

criterion_group!(exporter, benches);
criterion_main!(exporter);
