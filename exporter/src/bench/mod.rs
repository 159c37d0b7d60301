//! `coordmetrics bench`: the real client driven by threads in several processes, the cost of
//! an operation as each thread saw it, and a check that the segment holds exactly what was
//! recorded.
//!
//! This module owns the command line and the parent's side: it creates (or opens) the
//! segment, registers the names, starts `--processes` copies of this program with the hidden
//! `--worker` flag ([`worker`]), starts them all at once ([`protocol`]), and compares the
//! change of the segment's totals with what the threads' reported operations predict
//! ([`mix`]): they must be equal, counter for counter and bucket for bucket.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coordmetrics::{Capacities, Collector, SegmentOptions, SegmentReader, Snapshot};
use coordmetrics_exporter::config::positive_duration;
use coordmetrics_exporter::sink;
use coordmetrics_exporter::workload::{Handles, Totals};
use coordmetrics_report::format::{json, prometheus};
use coordmetrics_report::reporter::Reporter;

use self::progress::Progress;
use self::protocol::{Message, ThreadResult};
use crate::workers::Workers;

mod mix;
mod progress;
mod protocol;
mod timings;
mod worker;

/// Operations per thread when neither `--iterations` nor `--duration` is given.
const DEFAULT_ITERATIONS: u64 = 1_000_000;

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

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    match (args.worker, &args.segment) {
        (Some(index), Some(segment)) => worker::run(Plan::of(args), args.threads, index, segment),
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
    Handles::resolve(&collector, &mix::NAMES);
    let reader = SegmentReader::open(&segment, &SegmentOptions::default())?;
    let before = reader.snapshot();
    let operations_before = Totals::of(&before, &mix::NAMES).operations();

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
        if line.is_empty() {
            bail!("bench worker {index} stopped before starting (see its message above)");
        }
        if protocol::decode(line.trim_end())? != Message::Ready {
            bail!("bench worker {index} sent {line:?} instead of ready");
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
        writeln!(stdin, "{}", protocol::encode(&Message::Go))?;
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
        let operations = Totals::of(&reader.snapshot(), &mix::NAMES).operations();
        progress.show(started.elapsed(), operations.saturating_sub(operations_before));
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
        let messages = handle.join().map_err(|_| anyhow::anyhow!("reading a worker's output failed"))??;
        for message in messages {
            match message {
                Message::Thread(result) => results.push(result),
                Message::Cpu(nanos) => cpu += nanos,
                other => bail!("unexpected message from a bench worker: {other:?}"),
            }
        }
    }
    if results.len() != writers as usize {
        bail!("expected {writers} thread results, got {}", results.len());
    }

    let after_snapshot = reader.snapshot();
    timings::print(&results, cpu);
    verify(&results, &before, &after_snapshot)?;
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

/// Every message a worker sent after `ready`.
fn collect(output: BufReader<ChildStdout>) -> anyhow::Result<Vec<Message>> {
    output.lines().map(|line| protocol::decode(&line.context("cannot read a worker's output")?)).collect()
}

/// Checks that the segment went from `before` to exactly what the threads' operations predict,
/// without dropping an update.
fn verify(results: &[ThreadResult], before: &Snapshot, after: &Snapshot) -> anyhow::Result<()> {
    let threads: Vec<(u64, u64)> = results.iter().map(|r| (r.thread, r.operations)).collect();
    let mut expected = Totals::of(before, &mix::NAMES);
    expected.add(&mix::expected(&threads));
    let differences = Totals::of(after, &mix::NAMES).differences(&expected);
    let dropped = after.dropped.updates.wrapping_sub(before.dropped.updates);
    let operations: u64 = results.iter().map(|r| r.operations).sum();
    if differences.is_empty() && dropped == 0 {
        println!(
            "verified: totals match {operations} operations exactly \
             (executions, errors, cache hits and misses, duration sums and histogram buckets of 13 coordinators; events; no drops)"
        );
        return Ok(());
    }
    for line in differences {
        eprintln!("  {line}");
    }
    if dropped != 0 {
        eprintln!("  {dropped} updates dropped");
    }
    bail!("verification failed: the segment's totals differ from the {operations} operations performed");
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
