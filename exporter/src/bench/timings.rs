//! The timing summary of a bench: per-thread cost (median and p99), aggregate throughput, and
//! how much of the time the threads actually had a core.

use std::time::{Duration, UNIX_EPOCH};

use super::protocol::ThreadResult;

/// Prints the summary of `results`; `cpu` is the workers' CPU time over the timed operations.
pub fn print(results: &[ThreadResult], cpu: Duration) {
    let mut per_thread: Vec<f64> = results.iter().map(nanos_per_operation).collect();
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

/// Cost of one timed operation of a thread.
fn nanos_per_operation(result: &ThreadResult) -> f64 {
    result.elapsed.as_nanos() as f64 / (result.operations - 1).max(1) as f64
}

fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{:.3} ms", duration.as_secs_f64() * 1e3)
    } else {
        format!("{:.3} s", duration.as_secs_f64())
    }
}
