//! The client's hot path next to the in-process Rust metrics libraries, measured in one run.
//!
//! Every library records the same thing: a counter increment (our `cache_hit()`) and one
//! latency observation (our `record(d, true)`), on handles resolved once, as a service would.
//! The peers are `prometheus-client` (client_rust), `prometheus` (tikv) and `metrics` with the
//! recorder of `metrics-exporter-prometheus`. Peers get the latency already as `f64` seconds,
//! so their numbers do not include a `Duration` conversion that ours does.
//!
//! Times are the calling thread's CPU time by default (see `support/clock.rs`: these machines
//! are shared, and a thread waiting for a core would otherwise be charged for it);
//! `COORDMETRICS_BENCH_CLOCK=wall` switches to wall time.
//!
//! The contention groups run the same operation on persistent threads started together by a
//! barrier; the reported time is the slowest thread's time divided by the iterations each
//! thread ran, i.e. the per-operation cost as one thread sees it. Each such case also prints
//! how much of the time its threads had a core: two threads only contend while both run. "one series" means both
//! threads update the same handle (our: the same `Coordinator`), "two series" two handles
//! (our: two coordinators; peers: two label values of one family).
//!
//! Run: `cargo bench -p coordmetrics --bench hot_path -- --warm-up-time 1 --measurement-time 3`

mod support {
    pub mod clock;
}

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coordmetrics::{Collector, Coordinator};
use cpu_time::ThreadTime;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram as PcHistogram};
use support::clock::Clock;

/// One latency observation: 1.5 ms.
const LATENCY: Duration = Duration::from_micros(1500);
const LATENCY_SECONDS: f64 = 0.0015;

/// The 13 coordinators of the first user (as in `coordmetrics demo`); the by-name benchmarks
/// look up the last one.
const COORDINATORS: [&str; 13] = [
    "ConfigCoordinator",
    "PromptCoordinator",
    "ContextCoordinator",
    "ChatCoordinator",
    "ToolCoordinator",
    "SessionCoordinator",
    "AnalyticsCoordinator",
    "ProviderCoordinator",
    "ModeCoordinator",
    "EvaluationCoordinator",
    "WorkflowCoordinator",
    "CheckpointCoordinator",
    "ToolSelectionCoordinator",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoordinatorLabel {
    coordinator: &'static str,
}

/// Our client on a private segment, with every coordinator registered.
struct Ours {
    _dir: tempfile::TempDir,
    collector: Collector,
    coordinators: Vec<Coordinator>,
}

impl Ours {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let collector = Collector::open(dir.path().join("segment")).expect("segment");
        let coordinators = COORDINATORS.iter().map(|name| collector.coordinator(name)).collect();
        Self { _dir: dir, collector, coordinators }
    }
}

/// The peers, each set up as its documentation shows: families registered in a registry,
/// handles resolved once.
struct Peers {
    pc_counters: Family<CoordinatorLabel, PcCounter>,
    pc_histograms: Family<CoordinatorLabel, PcHistogram>,
    tikv_counters: prometheus::IntCounterVec,
    tikv_histograms: prometheus::HistogramVec,
    metrics_handle: PrometheusHandle,
    _pc_registry: prometheus_client::registry::Registry,
    _tikv_registry: prometheus::Registry,
}

impl Peers {
    fn new() -> Self {
        let mut pc_registry = prometheus_client::registry::Registry::default();
        let pc_counters = Family::<CoordinatorLabel, PcCounter>::default();
        let pc_histograms = Family::<CoordinatorLabel, PcHistogram>::new_with_constructor(|| {
            PcHistogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        pc_registry.register("cache_hits", "Cache hits.", pc_counters.clone());
        pc_registry.register("duration_seconds", "Duration.", pc_histograms.clone());

        let tikv_registry = prometheus::Registry::new();
        let tikv_counters =
            prometheus::IntCounterVec::new(prometheus::Opts::new("cache_hits_total", "Cache hits."), &["coordinator"])
                .expect("counter");
        let tikv_histograms = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("duration_seconds", "Duration.")
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("buckets")),
            &["coordinator"],
        )
        .expect("histogram");
        tikv_registry.register(Box::new(tikv_counters.clone())).expect("register");
        tikv_registry.register(Box::new(tikv_histograms.clone())).expect("register");

        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics_handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this process");

        Self {
            pc_counters,
            pc_histograms,
            tikv_counters,
            tikv_histograms,
            metrics_handle,
            _pc_registry: pc_registry,
            _tikv_registry: tikv_registry,
        }
    }

    fn pc_counter(&self, name: &'static str) -> PcCounter {
        self.pc_counters.get_or_create(&CoordinatorLabel { coordinator: name }).clone()
    }

    fn pc_histogram(&self, name: &'static str) -> PcHistogram {
        self.pc_histograms.get_or_create(&CoordinatorLabel { coordinator: name }).clone()
    }

    fn tikv_counter(&self, name: &str) -> prometheus::IntCounter {
        self.tikv_counters.with_label_values(&[name])
    }

    fn tikv_histogram(&self, name: &str) -> prometheus::Histogram {
        self.tikv_histograms.with_label_values(&[name])
    }

    fn metrics_counter(name: &'static str) -> metrics::Counter {
        metrics::counter!("cache_hits_total", "coordinator" => name)
    }

    fn metrics_histogram(name: &'static str) -> metrics::Histogram {
        metrics::histogram!("duration_seconds", "coordinator" => name)
    }

    /// `metrics-exporter-prometheus` keeps every observation until a scrape drains it: drain as
    /// a scrape would, outside the timed region, so memory stays bounded.
    fn drain(&self) {
        self.metrics_handle.run_upkeep();
    }
}

/// Benchmarks `operation`, timed on `clock`, with `after` run outside the timed region.
fn measure<O: FnMut()>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    clock: Clock,
    mut operation: O,
    after: &dyn Fn(),
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let elapsed = clock.time(iterations, &mut operation);
            after();
            elapsed
        });
    });
}

fn single_thread(c: &mut Criterion, clock: Clock, ours: &Ours, peers: &Peers) {
    let chat = &ours.coordinators[0];
    let none = &|| {};

    let mut group = c.benchmark_group("counter");
    group.throughput(Throughput::Elements(1));
    measure(&mut group, "coordmetrics cache_hit()", clock, || black_box(chat).cache_hit(), none);
    let counter = peers.pc_counter(COORDINATORS[0]);
    measure(
        &mut group,
        "prometheus-client Counter::inc",
        clock,
        || {
            black_box(&counter).inc();
        },
        none,
    );
    let counter = peers.tikv_counter(COORDINATORS[0]);
    measure(&mut group, "prometheus IntCounter::inc", clock, || black_box(&counter).inc(), none);
    let counter = Peers::metrics_counter(COORDINATORS[0]);
    measure(&mut group, "metrics Counter::increment", clock, || black_box(&counter).increment(1), none);
    group.finish();

    let mut group = c.benchmark_group("histogram");
    group.throughput(Throughput::Elements(1));
    measure(
        &mut group,
        "coordmetrics record(d, true)",
        clock,
        || black_box(chat).record(black_box(LATENCY), true),
        none,
    );
    measure(
        &mut group,
        "coordmetrics histogram::bucket_index alone",
        clock,
        || {
            black_box(coordmetrics::histogram::bucket_index(black_box(LATENCY.as_nanos() as u64)));
        },
        none,
    );
    let histogram = peers.pc_histogram(COORDINATORS[0]);
    let observe = || black_box(&histogram).observe(black_box(LATENCY_SECONDS));
    measure(&mut group, "prometheus-client Histogram::observe", clock, observe, none);
    let histogram = peers.tikv_histogram(COORDINATORS[0]);
    let observe = || black_box(&histogram).observe(black_box(LATENCY_SECONDS));
    measure(&mut group, "prometheus Histogram::observe", clock, observe, none);
    let histogram = Peers::metrics_histogram(COORDINATORS[0]);
    let record = || black_box(&histogram).record(black_box(LATENCY_SECONDS));
    measure(&mut group, "metrics Histogram::record", clock, record, &|| peers.drain());
    group.finish();

    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements(1));
    let track = || {
        let _t = black_box(chat).track();
    };
    measure(&mut group, "coordmetrics track() + drop", clock, track, none);
    let clock_reads = || {
        black_box(Instant::now());
        black_box(Instant::now());
    };
    measure(&mut group, "Instant::now x2", clock, clock_reads, none);
    let reference = || {
        let start = Instant::now();
        black_box(chat).record(start.elapsed(), true);
    };
    measure(&mut group, "Instant::now x2 + record", clock, reference, none);
    group.finish();
    paired_ratio("tracker: track() + drop / (Instant::now x2 + record)", clock, track, reference);

    let name = COORDINATORS[12];
    let mut group = c.benchmark_group("by_name");
    group.throughput(Throughput::Elements(1));
    let by_name = || ours.collector.record_cache_hit(black_box(name));
    measure(&mut group, "coordmetrics record_cache_hit(name)", clock, by_name, none);
    let by_name = || {
        peers.pc_counters.get_or_create(&CoordinatorLabel { coordinator: black_box(name) }).inc();
    };
    measure(&mut group, "prometheus-client Family::get_or_create + inc", clock, by_name, none);
    let by_name = || peers.tikv_counters.with_label_values(&[black_box(name)]).inc();
    measure(&mut group, "prometheus with_label_values + inc", clock, by_name, none);
    let by_name = || metrics::counter!("cache_hits_total", "coordinator" => black_box(name)).increment(1);
    measure(&mut group, "metrics counter!(name, label) + increment", clock, by_name, none);
    group.finish();
}

/// Prints the ratio of `a`'s time to `b`'s, measured in alternating rounds so that both see
/// the same machine: on a shared VM the time of one operation drifts by several percent
/// between criterion groups run seconds apart, more than the difference being measured.
fn paired_ratio(name: &str, clock: Clock, mut a: impl FnMut(), mut b: impl FnMut()) {
    const ROUNDS: usize = 41;
    const ITERATIONS: u64 = 100_000;
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let a = clock.time(ITERATIONS, &mut a);
            let b = clock.time(ITERATIONS, &mut b);
            a.as_secs_f64() / b.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "{name}: paired ratio median {:.3} (quartiles {:.3}..{:.3}, {ROUNDS} alternating rounds of {ITERATIONS})",
        ratios[ROUNDS / 2],
        ratios[ROUNDS / 4],
        ratios[3 * ROUNDS / 4]
    );
}

/// A value alone on its cache lines (two, against the adjacent-line prefetcher).
#[repr(align(128))]
struct Padded<T>(T);

/// Persistent threads that each run their own operation `iterations` times, started together.
///
/// The machine may be shared: a thread that waits for a core neither contends nor makes
/// progress, so each crew also adds up how much of its threads' timed wall time they spent on
/// a core, and says so when it is dropped: contention is only measured when that is near 100%.
struct Crew {
    name: String,
    starts: Vec<Sender<u64>>,
    elapsed: Receiver<Timing>,
    threads: Vec<JoinHandle<()>>,
    totals: Cell<(Duration, Duration)>,
}

/// One thread's run: time on the benchmark's clock, wall time, CPU time.
struct Timing {
    clock: Duration,
    wall: Duration,
    cpu: Duration,
}

impl Crew {
    /// One thread per operation. Each runs its operation once right away, so that one-time
    /// costs (our writer slot claim, a peer's lazy registration) stay outside the timings.
    fn new<F: Fn() + Send + 'static>(name: String, clock: Clock, operations: Vec<F>) -> Self {
        let barrier = Arc::new(Barrier::new(operations.len()));
        let (report, elapsed) = mpsc::channel();
        let mut starts = Vec::new();
        let mut threads = Vec::new();
        for operation in operations {
            let (start, iterations) = mpsc::channel::<u64>();
            let (barrier, report) = (Arc::clone(&barrier), report.clone());
            threads.push(std::thread::spawn(move || {
                operation();
                for iterations in iterations {
                    barrier.wait();
                    let (wall, cpu) = (Instant::now(), ThreadTime::now());
                    let clock = clock.time(iterations, &mut &operation);
                    let _ = report.send(Timing { clock, wall: wall.elapsed(), cpu: cpu.elapsed() });
                }
            }));
            starts.push(start);
        }
        Self { name, starts, elapsed, threads, totals: Cell::new((Duration::ZERO, Duration::ZERO)) }
    }

    /// Runs `iterations` operations on every thread; the slowest thread's time.
    fn run(&self, iterations: u64) -> Duration {
        for start in &self.starts {
            start.send(iterations).expect("crew thread alive");
        }
        let (mut slowest, (mut wall, mut cpu)) = (Duration::ZERO, self.totals.get());
        for _ in 0..self.starts.len() {
            let timing = self.elapsed.recv().expect("crew thread alive");
            slowest = slowest.max(timing.clock);
            wall += timing.wall;
            cpu += timing.cpu;
        }
        self.totals.set((wall, cpu));
        slowest
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        let (wall, cpu) = self.totals.get();
        if !wall.is_zero() {
            let share = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
            eprintln!("{}: threads on a core {share:.0}% of their timed wall time", self.name);
        }
        self.starts.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Benchmarks one operation with 1 thread, 2 threads on one series and 2 threads on two.
fn contended<F, M>(group: &mut BenchmarkGroup<'_, WallTime>, clock: Clock, library: &str, make: M, after: &dyn Fn())
where
    F: Fn() + Send + 'static,
    M: Fn(usize) -> F,
{
    for (case, series) in
        [("1 thread", vec![0]), ("2 threads, one series", vec![0, 0]), ("2 threads, two series", vec![0, 1])]
    {
        crew_case(group, clock, library, case, series.into_iter().map(&make).collect(), after);
    }
}

/// Benchmarks `operations`, one per thread, started together.
fn crew_case<F: Fn() + Send + 'static>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    clock: Clock,
    library: &str,
    case: &str,
    operations: Vec<F>,
    after: &dyn Fn(),
) {
    let crew = Crew::new(format!("{library}/{case}"), clock, operations);
    group.bench_function(BenchmarkId::new(library, case), |b| {
        b.iter_custom(|iterations| {
            let elapsed = crew.run(iterations);
            after();
            elapsed
        });
    });
}

fn contention(c: &mut Criterion, clock: Clock, ours: &Ours, peers: &Peers) {
    // Our threads on two different segments share nothing but the code and the machine: what
    // they lose against one thread is the machine's share of any two-thread slowdown.
    let elsewhere = Ours::new();
    let segments = [ours, &elsewhere];
    let none = &|| {};
    let mut group = c.benchmark_group("contention counter");
    group.throughput(Throughput::Elements(1));
    // The control: what our counter update is without the slot lookup, a relaxed load and
    // store on a cache line of the thread's own. Whatever it loses with two threads, the
    // machine takes (two vCPUs sharing a core, shared caches, frequency), not the design.
    contended(
        &mut group,
        clock,
        "control: load+store on an own cache line",
        |_| {
            let cell = Box::new(Padded(AtomicU64::new(0)));
            move || {
                let cell = &black_box(&cell).0;
                cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        },
        none,
    );
    contended(
        &mut group,
        clock,
        "coordmetrics cache_hit()",
        |i| {
            let coordinator = ours.coordinators[i].clone();
            move || black_box(&coordinator).cache_hit()
        },
        none,
    );
    let operations = segments.map(|o| {
        let coordinator = o.coordinators[0].clone();
        move || black_box(&coordinator).cache_hit()
    });
    crew_case(&mut group, clock, "coordmetrics cache_hit()", "2 threads, two segments", operations.into(), none);
    contended(
        &mut group,
        clock,
        "prometheus-client Counter::inc",
        |i| {
            let counter = peers.pc_counter(COORDINATORS[i]);
            move || {
                black_box(&counter).inc();
            }
        },
        none,
    );
    contended(
        &mut group,
        clock,
        "prometheus IntCounter::inc",
        |i| {
            let counter = peers.tikv_counter(COORDINATORS[i]);
            move || black_box(&counter).inc()
        },
        none,
    );
    contended(
        &mut group,
        clock,
        "metrics Counter::increment",
        |i| {
            let counter = Peers::metrics_counter(COORDINATORS[i]);
            move || black_box(&counter).increment(1)
        },
        none,
    );
    group.finish();

    let mut group = c.benchmark_group("contention histogram");
    group.throughput(Throughput::Elements(1));
    contended(
        &mut group,
        clock,
        "coordmetrics record(d, true)",
        |i| {
            let coordinator = ours.coordinators[i].clone();
            move || black_box(&coordinator).record(black_box(LATENCY), true)
        },
        none,
    );
    let operations = segments.map(|o| {
        let coordinator = o.coordinators[0].clone();
        move || black_box(&coordinator).record(black_box(LATENCY), true)
    });
    crew_case(&mut group, clock, "coordmetrics record(d, true)", "2 threads, two segments", operations.into(), none);
    contended(
        &mut group,
        clock,
        "prometheus-client Histogram::observe",
        |i| {
            let histogram = peers.pc_histogram(COORDINATORS[i]);
            move || black_box(&histogram).observe(black_box(LATENCY_SECONDS))
        },
        none,
    );
    contended(
        &mut group,
        clock,
        "prometheus Histogram::observe",
        |i| {
            let histogram = peers.tikv_histogram(COORDINATORS[i]);
            move || black_box(&histogram).observe(black_box(LATENCY_SECONDS))
        },
        none,
    );
    contended(
        &mut group,
        clock,
        "metrics Histogram::record",
        |i| {
            let histogram = Peers::metrics_histogram(COORDINATORS[i]);
            move || black_box(&histogram).record(black_box(LATENCY_SECONDS))
        },
        &|| peers.drain(),
    );
    group.finish();
}

fn benches(c: &mut Criterion) {
    let clock = Clock::from_env();
    eprintln!("hot_path: timing on {}", clock.describe());
    let ours = Ours::new();
    let peers = Peers::new();
    single_thread(c, clock, &ours, &peers);
    contention(c, clock, &ours, &peers);
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
