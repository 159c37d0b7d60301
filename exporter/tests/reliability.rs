//! Faults around the exporter: killed mid-rewrite and restarted under a reader that never
//! stops parsing, and an output directory that disappears or fills up.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{http_get, run_args, wait_until, Exporter};
use coordmetrics::{Capacities, Collector, SegmentOptions};

const TIMEOUT: Duration = Duration::from_secs(60);

fn segment(dir: &Path) -> (PathBuf, Collector) {
    let path = dir.join("segment");
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 8, events: 4, writers: 8, errors: 16 },
        ..SegmentOptions::default()
    };
    let collector = Collector::open_with(&path, &options).unwrap();
    (path, collector)
}

/// The executions of coordinator "work" in a complete Prometheus text, or why it is not one.
fn parse_prom(text: &str) -> Result<u64, String> {
    if !text.ends_with('\n') {
        return Err("no trailing newline".into());
    }
    let mut executions = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("malformed line {line:?}"))?;
        let value: f64 = value.parse().map_err(|_| format!("bad value in {line:?}"))?;
        if series == "victor_coordinator_executions_total{coordinator=\"work\"}" {
            executions = Some(value as u64);
        }
    }
    text.contains("# TYPE coordmetrics_segment_created_timestamp_seconds gauge")
        .then_some(())
        .ok_or("last family missing: truncated")?;
    executions.ok_or_else(|| "no executions series".into())
}

#[test]
fn exporter_killed_mid_rewrite_never_leaves_a_torn_file_and_counters_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, collector) = segment(dir.path());
    let (prom, json) = (dir.path().join("out.prom"), dir.path().join("metrics.json"));
    let stop = Arc::new(AtomicBool::new(false));

    // A writer that never stops recording while the exporter is killed and restarted.
    let writer = {
        let stop = Arc::clone(&stop);
        let work = collector.coordinator("work");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                work.record(Duration::from_micros(250), true);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    // A reader that parses both files continuously.
    let reader = {
        let (stop, prom, json) = (Arc::clone(&stop), prom.clone(), json.clone());
        std::thread::spawn(move || {
            let (mut reads, mut last_prom, mut last_json) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&prom) {
                    let executions = parse_prom(&text).unwrap_or_else(|why| panic!("torn .prom ({why}):\n{text}"));
                    assert!(executions >= last_prom, "counter went back: {executions} < {last_prom}");
                    last_prom = executions;
                    reads += 1;
                }
                if let Ok(bytes) = std::fs::read(&json) {
                    let document: serde_json::Value = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("torn metrics.json ({e}): {}", String::from_utf8_lossy(&bytes)));
                    let executions = document["overall_stats"]["total_executions"].as_u64().unwrap();
                    assert!(executions >= last_json, "counter went back: {executions} < {last_json}");
                    last_json = executions;
                    reads += 1;
                }
            }
            reads
        })
    };

    let args = run_args(&segment, &prom, &json, "10ms");
    let started = Instant::now();
    let mut restarts = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let mut exporter = Exporter::start(&args);
        std::thread::sleep(Duration::from_millis(700 + 137 * (restarts % 5)));
        exporter.child.kill().unwrap(); // SIGKILL, mid-rewrite or not
        exporter.child.wait().unwrap();
        restarts += 1;
    }

    // After a restart, the history of the previous run is restored from metrics.json.
    let before_restart = SystemTime::now();
    let exporter = Exporter::start(&args);
    exporter.wait_for_log("history points from the previous metrics.json", TIMEOUT);
    wait_until(TIMEOUT, "a metrics.json from the new exporter", || {
        std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|d| d["exporter"]["uptime_seconds"].as_f64().unwrap_or(f64::MAX) < 5.0)
    });
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let oldest = document["history"][0]["timestamp"].as_str().unwrap();
    let oldest = humantime::parse_rfc3339_weak(oldest).unwrap();
    assert!(oldest < before_restart, "history restored from before the restart");

    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let reads = reader.join().expect("reader saw a torn file or a counter going back");
    eprintln!("{restarts} SIGKILLs, {reads} complete reads");
    assert!(restarts >= 8 && reads >= 1000, "{restarts} restarts, {reads} reads");
    // A restarted exporter removes the temporary files its killed predecessors left.
    drop(exporter);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && n.starts_with('.'))
        .collect();
    assert!(leftovers.len() <= 2, "stale temporary files pile up: {leftovers:?}");
}

/// Mounts a tmpfs of `kib` KiB at `dir`; `false` where mounting is not allowed.
fn mount_small_tmpfs(dir: &Path, kib: u32) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn write_errors(exporter: &Exporter) -> u64 {
    let (_, body) = exporter.get("/metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("coordmetrics_write_errors_total ")?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_full_or_vanished_output_directory_is_reported_and_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, collector) = segment(dir.path());
    let work = collector.coordinator("work");
    work.record(Duration::from_millis(1), true);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let _unmount = mount_small_tmpfs(&out, 256).then(|| Unmount(out.clone()));
    let (prom, json) = (out.join("out.prom"), out.join("metrics.json"));
    let mut args = run_args(&segment, &prom, &json, "50ms");
    args.extend(["--listen", "127.0.0.1:0"]);
    let exporter = Exporter::start(&args);
    wait_until(TIMEOUT, "first files", || prom.exists() && json.exists());
    assert_eq!(write_errors(&exporter), 0);

    // Full: fill the file system (or, where tmpfs cannot be mounted, which needs root, make the
    // directory read-only: a non-root exporter then cannot create its temporary file either).
    // Writes fail; the previous file stays whole.
    let filler = out.join("filler");
    let mounted = _unmount.is_some();
    let kept = std::fs::read(&prom).expect("the first file");
    if mounted {
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    } else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs as root: the tmpfs must mount");
        eprintln!("*** tmpfs cannot be mounted here (not root): making the output directory read-only instead ***");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    work.record(Duration::from_millis(1), true);
    wait_until(TIMEOUT, "write errors reported", || write_errors(&exporter) >= 2);
    exporter.wait_for_log("the previous file is kept", TIMEOUT);
    assert_eq!(std::fs::read(&prom).unwrap(), kept, "previous file intact");
    assert!(parse_prom(&String::from_utf8_lossy(&kept)).is_ok());
    assert_eq!(exporter.get("/healthz").0, 503, "health says so");
    let (_, served) = exporter.get("/metrics");
    assert!(
        String::from_utf8_lossy(&served).contains("executions_total{coordinator=\"work\"} 2\n"),
        "HTTP keeps serving fresh data"
    );

    // The cause goes away: the exporter recovers by itself.
    if mounted {
        std::fs::remove_file(&filler).unwrap();
    } else {
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    wait_until(TIMEOUT, "recovery", || {
        std::fs::read_to_string(&prom).is_ok_and(|t| t.contains("executions_total{coordinator=\"work\"} 2\n"))
    });
    wait_until(TIMEOUT, "healthy again", || exporter.get("/healthz").0 == 200);

    // Vanished: the directory is removed; writes fail until it is back.
    if mounted {
        drop(_unmount);
    }
    std::fs::remove_dir_all(&out).unwrap();
    let errors = write_errors(&exporter);
    wait_until(TIMEOUT, "errors for the vanished directory", || write_errors(&exporter) > errors);
    std::fs::create_dir(&out).unwrap();
    wait_until(TIMEOUT, "files back", || prom.exists() && json.exists());
    let _ = http_get(exporter.address.unwrap(), "/healthz");
}
