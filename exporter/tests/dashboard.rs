//! The dashboard in a real browser (Debian's Chromium driven by playwright-core), served by
//! the exporter over a known workload; then with no metrics.json, where the demo banner shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{require_peer, run_args, run_bounded, wait_until, Exporter};
use coordmetrics::{Capacities, Collector, SegmentOptions};

const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

fn dashboard_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dashboard")
}

/// Node, Chromium and the pinned playwright-core, or `None` (a loud skip outside CI).
fn browser_ready() -> Option<PathBuf> {
    let node = require_peer("node")?;
    require_peer("chromium")?;
    if !dashboard_tests().join("node_modules/playwright-core").is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "playwright-core missing: run scripts/install-test-deps.sh"
        );
        eprintln!(
            "\n*** SKIPPED: tests/dashboard/node_modules missing (scripts/install-test-deps.sh installs it) ***\n"
        );
        return None;
    }
    Some(node)
}

fn screenshots(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(node: &Path, url: &str, out: &Path, extra: &[&str]) {
    let output = run_bounded(
        Command::new(node)
            .arg(dashboard_tests().join("check_dashboard.mjs"))
            .args(["--url", url, "--out"])
            .arg(out)
            .args(extra),
        BROWSER_TIMEOUT,
    );
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{report}");
    assert!(output.status.success(), "dashboard check failed:\n{report}");
    for shot in ["desktop.png", "phone.png"] {
        assert!(out.join(shot).metadata().is_ok_and(|m| m.len() > 1000), "{shot} missing");
    }
}

#[test]
fn dashboard_shows_the_exported_workload() {
    let Some(node) = browser_ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 32, events: 8, writers: 8, errors: 64 },
        ..SegmentOptions::default()
    };
    let collector = Collector::open_with(&segment, &options).unwrap();
    let hostile = "<img src=x onerror=alert(1)>";
    let mut messages = Vec::new();
    for (i, name) in ["ChatCoordinator", "ProviderCoordinator", "ToolCoordinator", hostile].iter().enumerate() {
        let coordinator = collector.coordinator(name);
        for n in 0..200u64 {
            coordinator.record(Duration::from_micros(2_000 + n * 997 * (i as u64 + 1)), true);
        }
        if i % 2 == 1 {
            coordinator.cache_hit();
            coordinator.cache_miss();
        }
        let message = format!("{name} failed: </script><b>bold</b> \"quoted\"");
        coordinator.record_failure(Duration::from_millis(40), &message);
        messages.push(message);
    }
    collector.record_analytics_event("tool_call", 3);
    let errors_file = dir.path().join("errors.json");
    std::fs::write(&errors_file, serde_json::to_vec(&messages).unwrap()).unwrap();

    let json = dir.path().join("metrics.json");
    let exporter = Exporter::start(
        &[run_args(&segment, &dir.path().join("out.prom"), &json, "2s"), vec!["--listen", "127.0.0.1:0"]].concat(),
    );
    wait_until(Duration::from_secs(30), "metrics.json", || json.exists());
    let url = format!("http://{}/", exporter.address.unwrap());
    check(&node, &url, &screenshots("live"), &["--expect-errors-file", errors_file.to_str().unwrap()]);
}

#[test]
fn dashboard_says_plainly_when_it_shows_demo_data() {
    let Some(node) = browser_ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No segment: the exporter serves the page but has no metrics.json to give.
    let exporter = Exporter::start(
        &[
            run_args(&dir.path().join("absent"), &dir.path().join("out.prom"), &dir.path().join("metrics.json"), "1s"),
            vec!["--listen", "127.0.0.1:0"],
        ]
        .concat(),
    );
    let url = format!("http://{}/", exporter.address.unwrap());
    check(&node, &url, &screenshots("demo"), &["--expect-demo"]);
}

#[test]
fn dashboard_behaviour_scenarios() {
    let Some(node) = browser_ready() else { return };
    let output = run_bounded(Command::new(node).arg(dashboard_tests().join("scenarios.mjs")), BROWSER_TIMEOUT);
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{report}");
    assert!(output.status.success(), "dashboard scenarios failed:\n{report}");
}
