//! A bench worker process (`coordmetrics bench --worker N`): `--threads` threads that each
//! claim their writer slot, wait for the parent's start signal, record the mix for the
//! planned number of operations or time, and report what they did.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use coordmetrics::Collector;
use coordmetrics_exporter::workload::Handles;

use super::protocol::{self, Message, ThreadResult};
use super::{mix, Plan};

/// In `--duration` mode, operations between two looks at the clock.
const CHUNK: u64 = 4096;

/// Runs worker `index` of a bench recording into `segment`.
pub fn run(plan: Plan, threads: u32, index: u32, segment: &Path) -> anyhow::Result<()> {
    let collector = Collector::open(segment)?;
    let handles = Handles::resolve(&collector, &mix::NAMES);
    let threads = u64::from(threads);
    let (ready, go) = (Barrier::new(threads as usize + 1), Barrier::new(threads as usize + 1));
    let abort = AtomicBool::new(false);
    let mut cpu_before = Duration::ZERO;
    let results: Vec<ThreadResult> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..threads)
            .map(|thread| {
                let (handles, ready, go, abort) = (&handles, &ready, &go, &abort);
                let thread = u64::from(index) * threads + thread;
                scope.spawn(move || run_thread(thread, plan, handles, ready, go, abort))
            })
            .collect();
        ready.wait();
        cpu_before = process_cpu_time();
        println!("{}", protocol::encode(&Message::Ready));
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        // No "go" (the parent is gone, or speaks another protocol): stop without recording.
        let started = std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0)
            && protocol::decode(line.trim_end()).is_ok_and(|message| message == Message::Go);
        abort.store(!started, Ordering::Relaxed);
        go.wait();
        running.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
    });
    if abort.load(Ordering::Relaxed) {
        bail!("no start signal from the parent");
    }
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let mut stdout = std::io::stdout().lock();
    for result in results {
        writeln!(stdout, "{}", protocol::encode(&Message::Thread(result)))?;
    }
    writeln!(stdout, "{}", protocol::encode(&Message::Cpu(cpu)))?;
    Ok(stdout.flush()?)
}

/// CPU time this process has used so far (in clock ticks, usually 10 ms).
fn process_cpu_time() -> Duration {
    coordmetrics::process::ProcessStat::read(std::process::id()).map_or(Duration::ZERO, |stat| stat.cpu_time)
}

fn run_thread(
    thread: u64,
    plan: Plan,
    handles: &Handles,
    ready: &Barrier,
    go: &Barrier,
    abort: &AtomicBool,
) -> ThreadResult {
    // The first operation claims this thread's writer slot: outside the timed region.
    handles.apply(&mix::op(thread, 0));
    let mut n = 1;
    ready.wait();
    go.wait();
    if abort.load(Ordering::Relaxed) {
        return ThreadResult { thread, operations: n, started: SystemTime::now(), elapsed: Duration::ZERO };
    }
    let started = SystemTime::now();
    let start = Instant::now();
    match plan {
        Plan::Iterations(total) => {
            while n < total {
                handles.apply(&mix::op(thread, n));
                n += 1;
            }
        }
        Plan::Duration(duration) => {
            let deadline = start + duration;
            while Instant::now() < deadline {
                for _ in 0..CHUNK {
                    handles.apply(&mix::op(thread, n));
                    n += 1;
                }
            }
        }
    }
    ThreadResult { thread, operations: n, started, elapsed: start.elapsed() }
}
