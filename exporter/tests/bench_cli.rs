//! `coordmetrics bench` as a user runs it: real worker processes, the verification line, exit 0,
//! the optional output files, and no segment left behind.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` to completion, killing it if it outlives `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start coordmetrics");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("coordmetrics bench did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn bench(args: &[&str]) -> Output {
    run_bounded(Command::new(env!("CARGO_BIN_EXE_coordmetrics")).arg("bench").args(args), Duration::from_secs(120))
}

#[test]
fn bench_verifies_exact_totals_across_processes() {
    let output = bench(&["--threads", "2", "--processes", "2", "--iterations", "20000"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("verified: totals match 80000 operations exactly"), "{stdout}");
    assert!(stdout.contains("ns/op median"), "{stdout}");
    assert!(stdout.contains("M ops/s"), "{stdout}");
    // Not a terminal: no progress bar.
    assert!(!String::from_utf8_lossy(&output.stderr).contains('\r'));
}

#[test]
fn bench_writes_outputs_into_a_given_segment_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let (prom, json) = (dir.path().join("bench.prom"), dir.path().join("metrics.json"));
    let run = || {
        bench(&[
            "--threads",
            "1",
            "--processes",
            "2",
            "--iterations",
            "1000",
            "--segment",
            segment.to_str().unwrap(),
            "--prom",
            prom.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ])
    };
    for _ in 0..2 {
        // The second run adds to the first run's totals: the check compares what it added.
        let output = run();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("verified: totals match 2000 operations exactly"), "{stdout}");
    }
    assert!(Path::new(&segment).exists(), "a given segment is kept");
    let text = std::fs::read_to_string(&prom).unwrap();
    // 2 runs x 2 threads x 1000 operations, a quarter of them executions, over 13 coordinators.
    let executions: u64 = text
        .lines()
        .filter(|l| l.starts_with("victor_coordinator_executions_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(executions, 1000);
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(metrics["overall_stats"]["total_executions"], 1000);
}

#[test]
fn iterations_and_duration_exclude_each_other() {
    let output = bench(&["--iterations", "10", "--duration", "1s"]);
    assert!(!output.status.success());
}
