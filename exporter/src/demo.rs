//! `coordmetrics demo`: a private segment, worker processes running a synthetic workload of
//! the 13 Victor coordinators through the real client, the exporter loop and the dashboard.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use coordmetrics::{Capacities, Collector, SegmentOptions};
use coordmetrics_exporter::config::{parse_listen, positive_duration, Settings};
use coordmetrics_report::format::native::NativeOptions;
use coordmetrics_report::format::prometheus::PrometheusOptions;
use coordmetrics_report::reporter::ReportOptions;
use coordmetrics_report::sample::{Rng, EVENTS, PROFILES};

use crate::run::{self, Limits};
use crate::workers::Workers;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Address of the dashboard and /metrics (a bare port binds 127.0.0.1; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: String,
    /// Stop after this long (e.g. 30s, 5m); without it, run until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    duration: Option<Duration>,
    /// Directory for the segment and the output files [default: a new temporary directory].
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Worker processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    processes: u32,
    /// Recording threads per worker process.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    threads: u32,
    /// Snapshot interval.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    interval: Duration,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    segment: PathBuf,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    threads: u32,
    /// Share of the total demo traffic this worker produces.
    #[arg(long)]
    share: f64,
    #[arg(long, value_parser = positive_duration)]
    duration: Option<Duration>,
}

/// How long the demo waits for its workers to reach their deadline before it kills them.
const WORKER_GRACE: Duration = Duration::from_secs(2);

pub fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = match &args.output {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("coordmetrics-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let segment = dir.join("segment");
    // A fresh segment each run, so the demo's numbers are its own.
    let _ = coordmetrics::remove_segment(&segment);
    // Sized for the demo (about 2 MiB instead of the default 57 MiB): its files stay behind
    // for inspection, so they should not fill /tmp over many runs.
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 32, events: 16, writers: 32, errors: 256 },
        ..SegmentOptions::default()
    };
    Collector::open_with(&segment, &options)
        .with_context(|| format!("cannot create the demo segment {}", segment.display()))?;

    let executable = std::env::current_exe().context("cannot find this program to start the workers")?;
    let mut workers = Workers(Vec::new());
    for index in 0..args.processes {
        let mut command = Command::new(&executable);
        command
            .arg("demo-worker")
            .arg("--segment")
            .arg(&segment)
            .args(["--seed", &index.to_string(), "--threads", &args.threads.to_string()])
            .args(["--share", &(1.0 / f64::from(args.processes)).to_string()]);
        if let Some(duration) = args.duration {
            command.args(["--duration", &format!("{}ms", duration.as_millis())]);
        }
        workers.0.push(command.spawn().context("cannot start a demo worker")?);
    }

    let settings = Settings {
        config_file: None,
        segment: segment.clone(),
        prom: Some(dir.join("coordmetrics.prom")),
        json: Some(dir.join("metrics.json")),
        interval: args.interval,
        listen: Some(parse_listen(&args.listen)?),
        prometheus: PrometheusOptions::default(),
        native: NativeOptions::default(),
        report: ReportOptions { interval: args.interval, ..ReportOptions::default() },
        create_segment: false,
        segment_options: SegmentOptions::default(),
    };
    let pids: Vec<String> = workers.0.iter().map(|c| c.id().to_string()).collect();
    let workers = Rc::new(RefCell::new(workers));
    let stopping = Rc::clone(&workers);
    let summary = format!(
        "coordmetrics demo: {} worker processes (pids {}) x {} threads recording 13 coordinators\n  segment    {}\n  prometheus {}\n  json       {}",
        args.processes,
        pids.join(", "),
        args.threads,
        segment.display(),
        dir.join("coordmetrics.prom").display(),
        dir.join("metrics.json").display(),
    );
    let limits = Limits {
        deadline: args.duration.map(|d| Instant::now() + d),
        on_listening: Some(Box::new(move |address| {
            println!("{summary}");
            println!("  dashboard  http://{address}/");
            println!("  metrics    http://{address}/metrics");
            println!("Press Ctrl-C to stop.");
        })),
        // The workers stop at their own deadline, started a moment after this one; on Ctrl-C
        // they are stopped here. Either way the final metrics.json counts all they recorded.
        before_final: Some(Box::new(move || stopping.borrow_mut().stop(WORKER_GRACE))),
    };
    run::run(settings, None, &limits)
}

/// One demo worker process: `threads` threads recording until the deadline.
pub fn worker(args: &WorkerArgs) -> anyhow::Result<()> {
    let collector = Collector::open(&args.segment)?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let total_rate: f64 = PROFILES.iter().map(|p| p.rate_per_sec).sum::<f64>() * args.share;
    let pause = Duration::from_secs_f64(f64::from(args.threads) / total_rate.max(1e-3));
    std::thread::scope(|scope| {
        for thread in 0..args.threads {
            let collector = &collector;
            scope.spawn(move || {
                let coordinators: Vec<_> = PROFILES.iter().map(|p| (p, collector.coordinator(p.name))).collect();
                let events: Vec<_> = EVENTS.iter().map(|e| collector.event(e)).collect();
                let mut rng = Rng::new(args.seed * 1000 + u64::from(thread));
                let mut memory = [0u64; PROFILES.len()];
                while deadline.is_none_or(|d| Instant::now() < d) {
                    let pick = rng.unit() * PROFILES.iter().map(|p| p.rate_per_sec).sum::<f64>();
                    let index = pick_weighted(pick);
                    let (profile, coordinator) = &coordinators[index];
                    let duration = profile.sample_duration(&mut rng);
                    if rng.chance(0.05) {
                        // Some executions really take their time, so in-flight gauges and the
                        // tracker's own clock are exercised too.
                        let tracker = coordinator.track();
                        std::thread::sleep(duration.min(Duration::from_millis(300)));
                        if rng.chance(profile.error_rate) {
                            tracker.fail(profile.errors[0]);
                        }
                    } else {
                        profile.record(coordinator, duration, &mut rng);
                    }
                    profile.look_up_cache(coordinator, &mut rng);
                    if rng.chance(0.3) {
                        events[rng.next_u64() as usize % events.len()].record(1 + rng.next_u64() % 3);
                    }
                    if thread == 0 && index % 4 == 0 {
                        // A few coordinators report their own memory: a cache that grows.
                        memory[index] = memory[index].max(8 << 20) + rng.next_u64() % 4096;
                        coordinator.set_memory_bytes(memory[index]);
                    }
                    std::thread::sleep(pause.mul_f64(0.5 + rng.unit()));
                }
            });
        }
    });
    Ok(())
}

fn pick_weighted(mut value: f64) -> usize {
    for (index, profile) in PROFILES.iter().enumerate() {
        if value < profile.rate_per_sec {
            return index;
        }
        value -= profile.rate_per_sec;
    }
    PROFILES.len() - 1
}
