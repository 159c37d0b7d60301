//! The `coordmetrics` binary as a user runs it: one-shot snapshots, bad segments, the sidecar
//! loop with its signals and HTTP listener, and promtool on every output.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    bin, http_request, promtool_check, require_peer, require_python_module, run_args, run_bounded, wait_until, Exporter,
};
use coordmetrics::{Capacities, Collector, SegmentOptions};

const TIMEOUT: Duration = Duration::from_secs(60);

fn small_segment(path: &Path) -> Collector {
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 16, events: 8, writers: 8, errors: 32 },
        ..SegmentOptions::default()
    };
    Collector::open_with(path, &options).unwrap()
}

/// A workload with names that need escaping, errors and events.
fn record_workload(collector: &Collector) {
    for (i, name) in ["ChatCoordinator", "quote\"back\\slash", "new\nline", "ünïcödé </script>"].iter().enumerate()
    {
        let coordinator = collector.coordinator(name);
        for n in 0..(10 * (i + 1)) {
            coordinator.record(Duration::from_micros(500 + 997 * n as u64), n % 7 != 0);
        }
        coordinator.cache_hit();
        coordinator.cache_miss();
        coordinator.record_failure(Duration::from_millis(3), &format!("failure of {name}: \"quoted\" \\ <b>"));
    }
    collector.record_analytics_event("tool_call", 5);
    collector.record_analytics_event("weird \"event\"\n", 2);
}

fn snapshot(segment: &Path, extra: &[&str]) -> std::process::Output {
    run_bounded(bin().arg("snapshot").arg("--segment").arg(segment).args(extra), TIMEOUT)
}

#[test]
fn snapshot_prints_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    record_workload(&small_segment(&segment));
    let output = snapshot(&segment, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("victor_coordinator_executions_total{coordinator=\"ChatCoordinator\"} 11\n"), "{text}");
    assert!(text.contains("victor_coordinator_executions_total{coordinator=\"quote\\\"back\\\\slash\"} 21\n"));
    assert!(text.contains("victor_coordinator_errors_total{coordinator=\"new\\nline\"} 6\n"));
    assert!(text.contains("victor_coordinator_duration_seconds_count{coordinator=\"ChatCoordinator\"} 11\n"));
    assert!(text.contains("victor_coordinator_analytics_events_total{event=\"tool_call\"} 5\n"));
    assert!(text.ends_with('\n'));

    let json = snapshot(&segment, &["--format", "json"]);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(document["overall_stats"]["total_executions"], 11 + 21 + 31 + 41);
    assert_eq!(document["overall_stats"]["total_coordinators"], 4);
    let messages: Vec<&str> =
        document["recent_errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(messages.contains(&"failure of new\nline: \"quoted\" \\ <b>"), "{messages:?}");
}

#[test]
fn promtool_accepts_every_output() {
    let Some(promtool) = require_peer("promtool") else { return };
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    record_workload(&small_segment(&segment));
    for resolution in ["1", "2", "4", "8"] {
        let output = snapshot(&segment, &["--bucket-resolution", resolution]);
        let (code, lint) = promtool_check(&promtool, &output.stdout);
        assert_eq!((code, lint.as_str()), (0, ""), "resolution {resolution}");
    }
    let sample = dir.path().join("sample.prom");
    assert!(run_bounded(bin().args(["sample-data", "--format", "prometheus", "--output"]).arg(&sample), TIMEOUT)
        .status
        .success());
    assert_eq!(promtool_check(&promtool, &std::fs::read(&sample).unwrap()), (0, String::new()));

    // The original collector's documented names parse; promtool lints exactly their
    // millisecond unit, which those names cannot avoid, and nothing else.
    let compat = snapshot(&segment, &["--compat-names"]);
    let (code, lint) = promtool_check(&promtool, &compat.stdout);
    let lines: Vec<&str> = lint.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        (code, lines),
        (
            3,
            vec![
                "victor_coordinator_duration_ms metric names should not contain abbreviated units",
                "victor_coordinator_duration_ms_total metric names should not contain abbreviated units",
            ]
        )
    );
}

#[test]
fn bad_segments_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid");
    small_segment(&valid);
    let bytes = std::fs::read(&valid).unwrap();
    let patched = |name: &str, offset: usize, value: &[u8]| {
        let mut copy = bytes.clone();
        copy[offset..offset + value.len()].copy_from_slice(value);
        let path = dir.path().join(name);
        std::fs::write(&path, copy).unwrap();
        path
    };
    let version = core::mem::offset_of!(coordmetrics_proto::Header, layout_version);
    let cases = [
        (dir.path().join("missing"), "does not exist"),
        (
            {
                let path = dir.path().join("empty");
                std::fs::write(&path, b"").unwrap();
                path
            },
            "truncated",
        ),
        (patched("foreign", 0, b"NOTOURS!"), "not a coordmetrics segment"),
        (patched("newer", version, &99u32.to_le_bytes()), "layout version 99"),
        (patched("half", version, &0u32.to_le_bytes()), "not initialised"),
        (
            patched("corrupt", core::mem::offset_of!(coordmetrics_proto::Header, writers), &0u32.to_le_bytes()),
            "corrupt",
        ),
        (
            {
                let path = dir.path().join("short");
                std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
                path
            },
            "truncated",
        ),
    ];
    for (path, expected) in &cases {
        for command in [&["snapshot"][..], &["snapshot", "--format", "json"], &["inspect"], &["inspect", "--json"]] {
            let output = run_bounded(bin().args(command).arg("--segment").arg(path), TIMEOUT);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{command:?} {path:?} succeeded");
            assert_eq!(stderr.lines().count(), 1, "{command:?} {path:?}: {stderr}");
            assert!(
                stderr.starts_with("coordmetrics: error: ") && stderr.contains(expected),
                "{command:?} {path:?}: {stderr}"
            );
            assert!(output.stdout.is_empty(), "nothing half-printed");
        }
    }
}

#[test]
fn inspect_shows_capacities_writers_and_coordinators() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let collector = small_segment(&segment);
    record_workload(&collector);
    let output = run_bounded(bin().args(["inspect", "--json", "--segment"]).arg(&segment), TIMEOUT);
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["capacity"]["writers"], 8);
    assert_eq!(inspection["used"]["coordinators"], 4);
    assert_eq!(inspection["writers"][0]["pid"], std::process::id());
    assert_eq!(inspection["writers"][0]["state"], "active");
    let text = run_bounded(bin().args(["inspect", "--segment"]).arg(&segment), TIMEOUT);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("coordinators 4/16") && text.contains("new\\nline"), "{text}");
}

#[test]
fn run_serves_rewrites_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let (prom, json) = (dir.path().join("out.prom"), dir.path().join("metrics.json"));
    let collector = small_segment(&segment);
    let chat = collector.coordinator("ChatCoordinator");
    chat.record(Duration::from_millis(5), true);
    let mut exporter =
        Exporter::start(&[run_args(&segment, &prom, &json, "1h"), vec!["--listen", "127.0.0.1:0"]].concat());
    let address = exporter.address.unwrap();
    wait_until(TIMEOUT, "first files", || prom.exists() && json.exists());

    let (status, body) = exporter.get("/metrics");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body)
        .contains("victor_coordinator_executions_total{coordinator=\"ChatCoordinator\"} 1\n"));
    let (status, body) = exporter.get("/metrics.json");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["overall_stats"]["total_executions"], 1);
    assert_eq!(exporter.get("/healthz"), (200, b"ok\n".to_vec()));
    let (status, page) = exporter.get("/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("<html"));
    assert_eq!(exporter.get("/vendor/chart.umd.min.js").0, 200);

    // Only GET and HEAD, only known paths, bounded heads.
    assert_eq!(exporter.get("/../../etc/passwd").0, 404);
    assert_eq!(exporter.get("/%2e%2e/Cargo.toml").0, 404);
    assert_eq!(http_request(address, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").0, 405);
    let (status, body) = http_request(address, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((status, body.len()), (200, 0));
    let huge = format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(http_request(address, &huge).0, 431);

    // USR1 snapshots now, long before the one-hour interval.
    chat.record(Duration::from_millis(5), true);
    exporter.signal("USR1");
    wait_until(TIMEOUT, "USR1 snapshot", || {
        std::fs::read_to_string(&prom).unwrap().contains("executions_total{coordinator=\"ChatCoordinator\"} 2\n")
    });

    // TERM writes a final snapshot and exits 0.
    chat.record(Duration::from_millis(5), false);
    exporter.signal("TERM");
    assert_eq!(exporter.wait_exit(TIMEOUT), 0);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("victor_coordinator_errors_total{coordinator=\"ChatCoordinator\"} 1\n"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 3, "only the segment and the two outputs: {leftovers:?}");
}

#[test]
fn run_survives_a_missing_segment_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let prom = dir.path().join("out.prom");
    let json = dir.path().join("metrics.json");
    let _exporter = Exporter::start(&run_args(&segment, &prom, &json, "100ms"));
    wait_until(TIMEOUT, "health-only file", || prom.exists());
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("coordmetrics_up 0\n"), "{text}");
    assert!(!json.exists(), "no metrics.json without data");

    small_segment(&segment).coordinator("late").cache_hit();
    wait_until(TIMEOUT, "recovery", || {
        std::fs::read_to_string(&prom)
            .is_ok_and(|t| t.contains("coordmetrics_up 1\n") && t.contains("coordinator=\"late\""))
    });

    // The segment goes bad: the data stays, the health says so.
    std::fs::write(&segment, b"garbage").unwrap();
    wait_until(TIMEOUT, "failure reported", || {
        std::fs::read_to_string(&prom).is_ok_and(|t| t.contains("coordmetrics_up 0\n"))
    });
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("victor_coordinator_cache_hits_total{coordinator=\"late\"} 1\n"),
        "last good data kept: {text}"
    );
    // metrics.json is rewritten right after the .prom file, with the same health.
    wait_until(TIMEOUT, "the error in metrics.json", || {
        std::fs::read(&json)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|d| d["exporter"]["last_error"].as_str().is_some_and(|e| e.contains("segment")))
    });
}

#[test]
fn run_refuses_bad_configuration_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "interval = \"1s\"\nbogus_key = 1\n").unwrap();
    for command in ["run", "check-config"] {
        let output = run_bounded(bin().arg(command).arg("--config").arg(&config), TIMEOUT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains("bogus_key") && stderr.contains("line 2"), "{stderr}");
    }
}

#[test]
fn python_prometheus_client_parses_every_output() {
    let Some(python) = require_python_module("prometheus_client") else { return };
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    record_workload(&small_segment(&segment));
    // Prints "family type samples" per family, and the value of one known sample.
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
for f in families:
    print(f.name, f.type, len(f.samples))
for f in families:
    for s in f.samples:
        if s.name == "victor_coordinator_executions_total" and s.labels.get("coordinator") == 'quote"back\\slash':
            print("VALUE", s.value)
"#;
    for extra in [&[][..], &["--compat-names"]] {
        let text = snapshot(&segment, extra).stdout;
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &text).unwrap();
        let output = child.wait_with_output().unwrap();
        let parsed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(parsed.contains("victor_coordinator_duration_seconds histogram"), "{parsed}");
        assert!(parsed.lines().any(|l| l == "VALUE 21" || l == "VALUE 21.0"), "escaped label round-trips: {parsed}");
        if !extra.is_empty() {
            assert!(parsed.contains("victor_coordinator_cache_hit_rate gauge"), "{parsed}");
        }
    }
}

#[test]
fn hup_reloads_the_configuration_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let prom = dir.path().join("out.prom");
    let config = dir.path().join("config.toml");
    let write_config = |namespace: &str| {
        let text = format!(
            "segment = {:?}\nprom = {:?}\njson = {:?}\ninterval = \"100ms\"\nnamespace = \"{namespace}\"\n",
            segment,
            prom,
            dir.path().join("metrics.json")
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("before");
    small_segment(&segment).coordinator("c").cache_hit();
    let exporter = Exporter::start(&["--config", config.to_str().unwrap()]);
    let has = |needle: &str| std::fs::read_to_string(&prom).is_ok_and(|t| t.contains(needle));
    wait_until(TIMEOUT, "first namespace", || has("before_cache_hits_total"));

    write_config("after");
    exporter.signal("HUP");
    exporter.wait_for_log("configuration reloaded", TIMEOUT);
    wait_until(TIMEOUT, "new namespace", || has("after_cache_hits_total"));

    std::fs::write(&config, "namespace = \"9 is not a namespace\"\n").unwrap();
    exporter.signal("HUP");
    exporter.wait_for_log("reload failed, keeping the previous configuration", TIMEOUT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(has("after_cache_hits_total"), "still running with the previous configuration");
}

#[test]
fn idle_and_slow_connections_do_not_block_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    small_segment(&segment).coordinator("c").cache_hit();
    let exporter = Exporter::start(&[
        "--segment",
        segment.to_str().unwrap(),
        "--prom",
        dir.path().join("out.prom").to_str().unwrap(),
        "--json",
        dir.path().join("metrics.json").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let address = exporter.address.unwrap();
    wait_until(TIMEOUT, "first snapshot", || exporter.get("/healthz").0 == 200);
    // Connections that never finish their request head.
    let idle: Vec<_> = (0..8)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    assert_eq!(exporter.get("/healthz").0, 200, "served while others dawdle");
    // The server gives up on them after its 5 s request timeout.
    for mut stream in idle {
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = std::time::Instant::now();
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut buffer);
        assert!(started.elapsed() < Duration::from_secs(15), "idle connection held open");
    }
}

#[test]
fn demo_runs_the_13_coordinators_in_several_processes_and_stops_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_bounded(
        bin()
            .args(["demo", "--duration", "3s", "--interval", "500ms", "--listen", "127.0.0.1:0", "--output"])
            .arg(dir.path()),
        TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("dashboard  http://127.0.0.1:"), "{stdout}");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("metrics.json")).unwrap()).unwrap();
    let coordinators = document["coordinators"].as_array().unwrap();
    assert_eq!(coordinators.len(), 13);
    assert!(coordinators.iter().all(|c| c["coordinator_name"].as_str().unwrap().ends_with("Coordinator")));
    assert!(coordinators.iter().all(|c| c["execution_count"].as_u64().unwrap() > 0), "every coordinator recorded");
    assert_eq!(document["demo"], false, "real data through the real client, not sample data");
    // The final file was written after the workers stopped: a snapshot taken now agrees.
    let after =
        run_bounded(bin().args(["snapshot", "--format", "json", "--segment"]).arg(dir.path().join("segment")), TIMEOUT);
    let after: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    let counts = |document: &serde_json::Value| -> Vec<(String, u64, u64, u64, u64)> {
        document["coordinators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let count = |key: &str| c[key].as_u64().unwrap();
                let name = c["coordinator_name"].as_str().unwrap().to_owned();
                (name, count("execution_count"), count("error_count"), count("cache_hits"), count("cache_misses"))
            })
            .collect()
    };
    assert_eq!(counts(&document), counts(&after));
    assert_eq!(document["overall_stats"]["total_executions"], after["overall_stats"]["total_executions"]);
    assert_eq!(document["overall_stats"]["analytics_events"], after["overall_stats"]["analytics_events"]);
    let inspection =
        run_bounded(bin().args(["inspect", "--json", "--segment"]).arg(dir.path().join("segment")), TIMEOUT);
    let inspection: serde_json::Value = serde_json::from_slice(&inspection.stdout).unwrap();
    let pids: std::collections::BTreeSet<u64> =
        inspection["writers"].as_array().unwrap().iter().map(|w| w["pid"].as_u64().unwrap()).collect();
    assert!(pids.len() >= 2, "at least two writer processes: {pids:?}");
    if let Some(promtool) = require_peer("promtool") {
        assert_eq!(
            promtool_check(&promtool, &std::fs::read(dir.path().join("coordmetrics.prom")).unwrap()),
            (0, String::new())
        );
    }
}
