//! `coordmetrics bench`: the real client driven by threads in several processes, the cost of
//! an operation as each thread saw it, and a check that the segment holds exactly what was
//! recorded.
//!
//! The parent creates (or opens) the segment and starts `--processes` copies of this program
//! with the hidden `--worker` flag. Each worker resolves the 13 coordinators once, starts its
//! threads and lets each perform its first operation, which claims the thread's writer slot
//! outside the timed region. It then prints `ready` and waits for a line on standard input, so
//! that every process starts at once. Each thread runs the fixed operation mix and the worker
//! prints one `result` line per thread: operations, elapsed time, and the thread's own tally
//! of what it recorded. The parent compares the sum of the tallies with the change of the
//! segment's totals: they must be equal, counter for counter.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use coordmetrics::{AnalyticsEvent, Capacities, Collector, Coordinator, SegmentOptions, SegmentReader, Snapshot};
use coordmetrics_exporter::config::positive_duration;
use coordmetrics_exporter::sink;
use coordmetrics_report::format::{json, prometheus};
use coordmetrics_report::reporter::Reporter;
use coordmetrics_report::sample::PROFILES;

use crate::workers::Workers;

/// Operations per thread when neither `--iterations` nor `--duration` is given.
const DEFAULT_ITERATIONS: u64 = 1_000_000;
/// The analytics event of the operation mix.
const EVENT: &str = "bench_operation";
const COORDINATORS: usize = PROFILES.len();
/// In `--duration` mode, operations between two looks at the clock.
const CHUNK: u64 = 4096;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Recording threads per process.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Recording processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    processes: u32,
    /// Operations per thread [default: 1000000 unless --duration is given].
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(2..))]
    iterations: Option<u64>,
    /// Record for this long instead of a fixed number of operations, e.g. 5s.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    duration: Option<Duration>,
    /// Segment to record into [default: a fresh file in /dev/shm, removed at the end]. An
    /// existing segment is used as it is, and the check compares what this run added: no
    /// other process may record into it meanwhile.
    #[arg(long, value_name = "PATH")]
    segment: Option<PathBuf>,
    /// Also write the resulting Prometheus text file here.
    #[arg(long, value_name = "PATH")]
    prom: Option<PathBuf>,
    /// Also write the resulting metrics.json here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Run as worker process N of a bench (started by the bench itself).
    #[arg(long, hide = true, value_name = "N", requires = "segment")]
    worker: Option<u32>,
}

/// How long each thread records.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Iterations(u64),
    Duration(Duration),
}

impl Plan {
    fn of(args: &BenchArgs) -> Self {
        match (args.iterations, args.duration) {
            (_, Some(duration)) => Self::Duration(duration),
            (Some(iterations), None) => Self::Iterations(iterations),
            (None, None) => Self::Iterations(DEFAULT_ITERATIONS),
        }
    }

    fn arguments(self) -> [String; 2] {
        match self {
            Self::Iterations(n) => ["--iterations".into(), n.to_string()],
            Self::Duration(d) => ["--duration".into(), format!("{}us", d.as_micros())],
        }
    }
}

/// What one coordinator received, as counted by a thread or read from the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    executions: u64,
    errors: u64,
    cache_hits: u64,
    cache_misses: u64,
    duration_sum_ns: u64,
}

impl Counts {
    const FIELDS: usize = 5;

    fn fields(&self) -> [u64; Self::FIELDS] {
        [self.executions, self.errors, self.cache_hits, self.cache_misses, self.duration_sum_ns]
    }

    fn from_fields(f: [u64; Self::FIELDS]) -> Self {
        Self { executions: f[0], errors: f[1], cache_hits: f[2], cache_misses: f[3], duration_sum_ns: f[4] }
    }

    fn zip(&self, other: &Self, op: impl Fn(u64, u64) -> u64) -> Self {
        let (a, b) = (self.fields(), other.fields());
        Self::from_fields(std::array::from_fn(|i| op(a[i], b[i])))
    }
}

/// Everything the operation mix can change in a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    coordinators: [Counts; COORDINATORS],
    events: u64,
    dropped_updates: u64,
}

impl Tally {
    fn of(snapshot: &Snapshot) -> Self {
        let coordinators = std::array::from_fn(|i| {
            snapshot.coordinators.iter().find(|c| c.name == PROFILES[i].name).map_or_else(Counts::default, |c| Counts {
                executions: c.executions,
                errors: c.errors,
                cache_hits: c.cache_hits,
                cache_misses: c.cache_misses,
                duration_sum_ns: c.duration_sum_ns,
            })
        });
        let events = snapshot.events.iter().find(|(name, _)| name == EVENT).map_or(0, |(_, count)| *count);
        Self { coordinators, events, dropped_updates: snapshot.dropped.updates }
    }

    fn zip(&self, other: &Self, op: impl Fn(u64, u64) -> u64 + Copy) -> Self {
        Self {
            coordinators: std::array::from_fn(|i| self.coordinators[i].zip(&other.coordinators[i], op)),
            events: op(self.events, other.events),
            dropped_updates: op(self.dropped_updates, other.dropped_updates),
        }
    }

    /// Operations behind these counts: one per execution, cache hit or miss, and event.
    fn operations(&self) -> u64 {
        self.coordinators.iter().map(|c| c.executions + c.cache_hits + c.cache_misses).sum::<u64>() + self.events
    }
}

/// What operation number `n` of thread `thread` does: a fixed mix that is cheap to compute.
/// A quarter each: an execution (1 in 20 failed, durations spread over 20 us to 100 ms), a
/// cache hit, a cache miss, an analytics event.
#[inline(always)]
fn perform(thread: u64, n: u64, coordinators: &[Coordinator], event: &AnalyticsEvent, tally: &mut Tally) {
    let index = ((n + thread) % COORDINATORS as u64) as usize;
    let counts = &mut tally.coordinators[index];
    match n % 4 {
        0 => {
            let nanos = 20_000 + ((n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 200_000) * 500;
            let success = (n / 4) % 20 != 0;
            coordinators[index].record(Duration::from_nanos(nanos), success);
            counts.executions += 1;
            counts.errors += u64::from(!success);
            counts.duration_sum_ns += nanos;
        }
        1 => {
            coordinators[index].cache_hit();
            counts.cache_hits += 1;
        }
        2 => {
            coordinators[index].cache_miss();
            counts.cache_misses += 1;
        }
        _ => {
            event.record(1);
            tally.events += 1;
        }
    }
}

/// One thread's outcome.
#[derive(Clone, Copy, Debug)]
struct ThreadResult {
    /// Operations performed, the untimed first one included.
    operations: u64,
    /// When the timed operations started (wall clock, comparable across processes).
    started: SystemTime,
    elapsed: Duration,
    tally: Tally,
}

impl ThreadResult {
    /// Cost of one timed operation.
    fn nanos_per_operation(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / (self.operations - 1).max(1) as f64
    }

    fn to_line(self) -> String {
        let started = self.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut line =
            format!("result {} {started} {} {}", self.operations, self.elapsed.as_nanos(), self.tally.events);
        for counts in &self.tally.coordinators {
            for field in counts.fields() {
                line.push_str(&format!(" {field}"));
            }
        }
        line
    }

    fn parse(line: &str) -> anyhow::Result<Self> {
        let numbers: Vec<u64> = line
            .strip_prefix("result ")
            .with_context(|| format!("unexpected worker output {line:?}"))?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("unexpected worker output {line:?}"))?;
        if numbers.len() != 4 + COORDINATORS * Counts::FIELDS {
            bail!("unexpected worker output {line:?}");
        }
        let counts = |i: usize| {
            let start = 4 + i * Counts::FIELDS;
            Counts::from_fields(std::array::from_fn(|f| numbers[start + f]))
        };
        Ok(Self {
            operations: numbers[0],
            started: UNIX_EPOCH + Duration::from_nanos(numbers[1]),
            elapsed: Duration::from_nanos(numbers[2]),
            tally: Tally { coordinators: std::array::from_fn(counts), events: numbers[3], dropped_updates: 0 },
        })
    }
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    match (args.worker, &args.segment) {
        (Some(index), Some(segment)) => worker(args, index, segment),
        _ => parent(args),
    }
}

/// Removes the bench's own segment at the end.
struct TemporarySegment(PathBuf);

impl Drop for TemporarySegment {
    fn drop(&mut self) {
        let _ = coordmetrics::remove_segment(&self.0);
    }
}

fn parent(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::of(args);
    let writers = args.processes * args.threads;
    let (segment, _temporary) = match &args.segment {
        Some(path) => (path.clone(), None),
        None => {
            let dir = Path::new("/dev/shm");
            let dir = if dir.is_dir() { dir.to_path_buf() } else { std::env::temp_dir() };
            let path = dir.join(format!("coordmetrics-bench-{}", std::process::id()));
            // Left behind by an earlier bench that was killed and had this pid: not ours to keep.
            let _ = coordmetrics::remove_segment(&path);
            (path.clone(), Some(TemporarySegment(path)))
        }
    };
    // A fresh bench segment holds just what the bench needs; an existing one is used as it is.
    let capacities = match &args.segment {
        Some(_) => Capacities { writers: writers.max(Capacities::default().writers), ..Capacities::default() },
        None => Capacities { coordinators: 32, events: 8, writers, errors: 16 },
    };
    let options = SegmentOptions { capacities, ..SegmentOptions::default() };
    let collector = Collector::open_with(&segment, &options)
        .with_context(|| format!("cannot open or create the segment {}", segment.display()))?;
    let available = collector.segment_info().map_or(0, |info| info.capacities.writers);
    if available < writers {
        bail!(
            "segment {} has {available} writer slots, the bench needs {writers} ({} processes x {} threads): \
             omit --segment to use a fresh one",
            segment.display(),
            args.processes,
            args.threads
        );
    }
    // Registering the names here fixes their order in the segment, whichever worker starts first.
    for profile in &PROFILES {
        collector.coordinator(profile.name);
    }
    collector.event(EVENT);
    let reader = SegmentReader::open(&segment, &SegmentOptions::default())?;
    let before = Tally::of(&reader.snapshot());

    let executable = std::env::current_exe().context("cannot find this program to start the workers")?;
    let mut workers = Workers(Vec::new());
    let mut outputs = Vec::new();
    for index in 0..args.processes {
        let mut child = Command::new(&executable)
            .arg("bench")
            .args(["--worker", &index.to_string(), "--threads", &args.threads.to_string()])
            .args(plan.arguments())
            .arg("--segment")
            .arg(&segment)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start a bench worker")?;
        let stdout = child.stdout.take().context("worker without standard output")?;
        workers.0.push(child);
        outputs.push(BufReader::new(stdout));
    }
    for (index, output) in outputs.iter_mut().enumerate() {
        let mut line = String::new();
        output.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("bench worker {index} stopped before starting (see its message above)");
        }
    }

    println!(
        "coordmetrics bench: {} x {}, {}, 13 coordinators, segment {}",
        plural(args.processes, "process", "processes"),
        plural(args.threads, "thread", "threads"),
        match plan {
            Plan::Iterations(n) => format!("{n} operations per thread"),
            Plan::Duration(d) => format!("{} per thread", humantime::format_duration(d)),
        },
        segment.display()
    );
    let started = Instant::now();
    for child in &mut workers.0 {
        let mut stdin = child.stdin.take().context("worker without standard input")?;
        stdin.write_all(b"go\n")?;
    }
    let collected: Vec<_> = outputs.into_iter().map(|output| std::thread::spawn(move || collect(output))).collect();

    let mut progress = Progress::new(plan, u64::from(writers));
    loop {
        let mut running = false;
        for child in &mut workers.0 {
            running |= child.try_wait()?.is_none();
        }
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        progress.show(started.elapsed(), operations_since(&reader, &before));
    }
    progress.clear();
    for (index, child) in workers.0.iter_mut().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            bail!("bench worker {index} failed: {status}");
        }
    }
    let mut results = Vec::new();
    let mut cpu = Duration::ZERO;
    for handle in collected {
        let lines = handle.join().map_err(|_| anyhow::anyhow!("reading a worker's output failed"))??;
        for line in lines {
            match line.strip_prefix("cpu ") {
                Some(nanos) => cpu += Duration::from_nanos(nanos.parse().context("unexpected worker output")?),
                None => results.push(ThreadResult::parse(&line)?),
            }
        }
    }
    if results.len() != writers as usize {
        bail!("expected {writers} thread results, got {}", results.len());
    }

    let after_snapshot = reader.snapshot();
    let recorded = Tally::of(&after_snapshot).zip(&before, u64::wrapping_sub);
    let expected = results.iter().fold(Tally::default(), |sum, r| sum.zip(&r.tally, u64::wrapping_add));
    print_timings(&results, cpu);
    let operations: u64 = results.iter().map(|r| r.operations).sum();
    if recorded == expected && expected.operations() == operations {
        println!(
            "verified: totals match {operations} operations exactly \
             (executions, errors, cache hits and misses, duration sums of 13 coordinators; events; no drops)"
        );
    } else {
        report_mismatch(&expected, &recorded);
        bail!("verification failed: the segment's totals differ from the {operations} operations performed");
    }

    if args.prom.is_some() || args.json.is_some() {
        let report = Reporter::single(&after_snapshot);
        if let Some(path) = &args.prom {
            sink::write_atomic(path, |w| {
                prometheus::write_report(w, &report, &prometheus::PrometheusOptions::default())
            })
            .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        if let Some(path) = &args.json {
            sink::write_atomic(path, |w| json::write_report(w, &report))
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn collect(output: BufReader<ChildStdout>) -> anyhow::Result<Vec<String>> {
    output.lines().map(|line| line.context("cannot read a worker's output")).collect()
}

/// Operations recorded since `before`, as the segment shows them now.
fn operations_since(reader: &SegmentReader, before: &Tally) -> u64 {
    Tally::of(&reader.snapshot()).operations().saturating_sub(before.operations())
}

/// Per-thread cost (median and p99), aggregate throughput, and how much of the time the
/// threads actually had a core.
fn print_timings(results: &[ThreadResult], cpu: Duration) {
    let mut per_thread: Vec<f64> = results.iter().map(ThreadResult::nanos_per_operation).collect();
    per_thread.sort_by(f64::total_cmp);
    let percentile =
        |p: f64| per_thread[((p * per_thread.len() as f64).ceil() as usize).clamp(1, per_thread.len()) - 1];
    println!(
        "  per thread  {:.1} ns/op median, {:.1} ns/op p99 ({} threads)",
        percentile(0.5),
        percentile(0.99),
        results.len()
    );
    let timed: u64 = results.iter().map(|r| r.operations - 1).sum();
    let first = results.iter().map(|r| r.started).min().unwrap_or(UNIX_EPOCH);
    let last = results.iter().map(|r| r.started + r.elapsed).max().unwrap_or(UNIX_EPOCH);
    let span = last.duration_since(first).unwrap_or_default();
    println!(
        "  throughput  {:.1} M ops/s ({timed} timed operations in {}, first thread start to last thread end)",
        timed as f64 / span.as_secs_f64().max(1e-9) / 1e6,
        format_duration(span)
    );
    // The CPU time comes in clock ticks (usually 10 ms): only meaningful over longer runs.
    if span >= Duration::from_millis(500) {
        let busy: Duration = results.iter().map(|r| r.elapsed).sum();
        let share = cpu.as_secs_f64() / busy.as_secs_f64().max(1e-9);
        println!(
            "  cpu time    {:.1} ns/op (the workers' CPU time over the timed operations; threads were on a core {:.0}% of the time{})",
            cpu.as_nanos() as f64 / timed.max(1) as f64,
            (share * 100.0).min(100.0),
            if share < 0.8 { ", the rest of the wall-clock ns/op above is waiting for a core" } else { "" }
        );
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{:.3} ms", duration.as_secs_f64() * 1e3)
    } else {
        format!("{:.3} s", duration.as_secs_f64())
    }
}

fn report_mismatch(expected: &Tally, recorded: &Tally) {
    for (profile, (want, got)) in PROFILES.iter().zip(expected.coordinators.iter().zip(&recorded.coordinators)) {
        if want != got {
            eprintln!("  {}: performed {want:?}, segment shows {got:?}", profile.name);
        }
    }
    if expected.events != recorded.events {
        eprintln!("  event {EVENT}: performed {}, segment shows {}", expected.events, recorded.events);
    }
    if recorded.dropped_updates != 0 {
        eprintln!("  {} updates dropped", recorded.dropped_updates);
    }
}

/// A progress bar on standard error, drawn only on a terminal.
struct Progress {
    plan: Plan,
    total: Option<u64>,
    enabled: bool,
}

impl Progress {
    const WIDTH: usize = 32;

    fn new(plan: Plan, threads: u64) -> Self {
        let total = match plan {
            Plan::Iterations(n) => Some(n * threads),
            Plan::Duration(_) => None,
        };
        Self { plan, total, enabled: std::io::stderr().is_terminal() }
    }

    fn show(&mut self, elapsed: Duration, done: u64) {
        if !self.enabled {
            return;
        }
        let fraction = match (self.plan, self.total) {
            (_, Some(total)) => done as f64 / total.max(1) as f64,
            (Plan::Duration(d), None) => elapsed.as_secs_f64() / d.as_secs_f64(),
            (Plan::Iterations(_), None) => 0.0,
        }
        .clamp(0.0, 1.0);
        let filled = (fraction * Self::WIDTH as f64).round() as usize;
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
        eprint!(
            "\r[{}{}] {:>3.0}%  {done} operations, {rate:.1} M/s",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            fraction * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// One worker process: `--threads` threads running the operation mix, started together.
fn worker(args: &BenchArgs, index: u32, segment: &Path) -> anyhow::Result<()> {
    let collector = Collector::open(segment)?;
    let coordinators: Vec<Coordinator> = PROFILES.iter().map(|p| collector.coordinator(p.name)).collect();
    let event = collector.event(EVENT);
    let plan = Plan::of(args);
    let threads = args.threads as usize;
    let (ready, go) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    let abort = AtomicBool::new(false);
    let mut cpu_before = Duration::ZERO;
    let results: Vec<ThreadResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (coordinators, event, ready, go, abort) = (&coordinators, &event, &ready, &go, &abort);
                let id = u64::from(index) * threads as u64 + thread as u64;
                scope.spawn(move || run_thread(id, plan, coordinators, event, ready, go, abort))
            })
            .collect();
        ready.wait();
        cpu_before = process_cpu_time();
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        // No "go" (the parent is gone): stop without recording.
        if std::io::stdin().read_line(&mut line).map_or(true, |n| n == 0) {
            abort.store(true, Ordering::Relaxed);
        }
        go.wait();
        handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
    });
    if abort.load(Ordering::Relaxed) {
        bail!("no start signal from the parent");
    }
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let mut stdout = std::io::stdout().lock();
    for result in results {
        writeln!(stdout, "{}", result.to_line())?;
    }
    writeln!(stdout, "cpu {}", cpu.as_nanos())?;
    Ok(stdout.flush()?)
}

/// CPU time this process has used so far (in clock ticks, usually 10 ms).
fn process_cpu_time() -> Duration {
    coordmetrics::process::ProcessStat::read(std::process::id()).map_or(Duration::ZERO, |stat| stat.cpu_time)
}

fn run_thread(
    id: u64,
    plan: Plan,
    coordinators: &[Coordinator],
    event: &AnalyticsEvent,
    ready: &Barrier,
    go: &Barrier,
    abort: &AtomicBool,
) -> ThreadResult {
    let mut tally = Tally::default();
    // The first operation claims this thread's writer slot: outside the timed region.
    perform(id, 0, coordinators, event, &mut tally);
    let mut n = 1;
    ready.wait();
    go.wait();
    if abort.load(Ordering::Relaxed) {
        return ThreadResult { operations: n, started: SystemTime::now(), elapsed: Duration::ZERO, tally };
    }
    let started = SystemTime::now();
    let start = Instant::now();
    match plan {
        Plan::Iterations(total) => {
            while n < total {
                perform(id, n, coordinators, event, &mut tally);
                n += 1;
            }
        }
        Plan::Duration(duration) => {
            let deadline = start + duration;
            while Instant::now() < deadline {
                for _ in 0..CHUNK {
                    perform(id, n, coordinators, event, &mut tally);
                    n += 1;
                }
            }
        }
    }
    ThreadResult { operations: n, started, elapsed: start.elapsed(), tally }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_round_trip() {
        let mut tally = Tally::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let collector = Collector::open(&path).unwrap();
        let coordinators: Vec<Coordinator> = PROFILES.iter().map(|p| collector.coordinator(p.name)).collect();
        let event = collector.event(EVENT);
        for n in 0..1000 {
            perform(3, n, &coordinators, &event, &mut tally);
        }
        let started = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let result = ThreadResult { operations: 1000, started, elapsed: Duration::from_nanos(12_345), tally };
        let parsed = ThreadResult::parse(&result.to_line()).unwrap();
        assert_eq!(parsed.tally, tally);
        assert_eq!(parsed.operations, 1000);
        assert_eq!(parsed.elapsed, result.elapsed);
        assert_eq!(parsed.started, started);
        assert_eq!(tally.operations(), 1000);
        assert_eq!(Tally::of(&collector.snapshot().unwrap()), tally);
    }
}
