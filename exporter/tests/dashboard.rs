//! The dashboard in a real browser (Debian's Chromium driven by playwright-core), served by
//! the exporter over a known workload; then with no metrics.json, where the demo banner shows;
//! and metrics.json read by a page that reads it as the original collector's page did.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bin, require_peer, run_args, run_bounded, wait_until, Exporter};
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

/// Serves the files under `dir` over HTTP on 127.0.0.1 from a thread of this test process (it
/// ends with the process); returns the address.
fn serve(dir: PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = respond(&dir, stream);
        }
    });
    address
}

fn respond(dir: &Path, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Read the headers through, so that closing does not reset the connection.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/');
    let found = (!path.contains("..")).then(|| std::fs::read(dir.join(path)).ok()).flatten();
    let kind = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let (status, body) = found.map_or(("404 Not Found", Vec::new()), |body| ("200 OK", body));
    write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

/// The page at `url` once its scripts ran, as headless Chromium serializes it.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = run_bounded(
        Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--dump-dom", url]),
        BROWSER_TIMEOUT,
    );
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_original_page_renders_metrics_json_without_nan() {
    let Some(chromium) = require_peer("chromium") else { return };
    let dir = tempfile::tempdir().unwrap();
    // The 13 coordinators recorded by demo workers that have exited since (no live writer, so
    // no measured memory), plus one with cache traffic only, from this live process.
    let demo = dir.path().join("demo");
    let ran = run_bounded(
        bin()
            .args(["demo", "--duration", "1s", "--interval", "500ms", "--listen", "127.0.0.1:0", "--output"])
            .arg(&demo),
        BROWSER_TIMEOUT,
    );
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let segment = demo.join("segment");
    let collector = Collector::open(&segment).unwrap();
    collector.record_cache_hit("CacheOnlyCoordinator");
    collector.record_cache_miss("CacheOnlyCoordinator");

    let site = dir.path().join("site");
    assert!(run_bounded(bin().args(["dashboard", "--output"]).arg(&site), BROWSER_TIMEOUT).status.success());
    let json = site.join("metrics.json");
    let written = run_bounded(
        bin().args(["snapshot", "--format", "json", "--segment"]).arg(&segment).arg("--output").arg(&json),
        BROWSER_TIMEOUT,
    );
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let coordinators = document["coordinators"].as_array().unwrap();
    assert!(!coordinators.is_empty());
    assert!(coordinators.iter().all(|c| c["memory_source"] == "none" && c["memory_bytes"] == 0), "{coordinators:?}");
    let others = document["coordinators_without_executions"].as_array().unwrap();
    assert!(others.iter().any(|c| c["coordinator_name"] == "CacheOnlyCoordinator"), "{others:?}");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/original_fields.html"),
        site.join("original_fields.html"),
    )
    .unwrap();
    let address = serve(site);

    let original = dump_dom(&chromium, &format!("http://{address}/original_fields.html"));
    assert!(!original.contains("data-error=\""), "{original}");
    let rows = coordinators.len();
    assert!(original.contains(&format!(r#"data-rows="{rows}""#)), "{original}");
    assert!(original.contains(&format!(r#"data-memory-types="{}""#, vec!["number"; rows].join(" "))), "{original}");
    assert!(original.contains(r#"data-memory-finite="true""#), "{original}");
    // What the page rendered: from the overview to the chart (its script and comments aside).
    let rendered = &original[original.find(r#"<p id="overview">"#).unwrap()..original.find("<canvas").unwrap()];
    for absent in ["NaN", "undefined", "CacheOnlyCoordinator"] {
        assert!(!rendered.contains(absent), "{absent} in the original page:\n{rendered}");
    }

    // Our own dashboard still shows every coordinator, the cache-only one included.
    let ours = dump_dom(&chromium, &format!("http://{address}/coordinator_performance.html"));
    for name in ["CacheOnlyCoordinator", "ChatCoordinator", "ToolSelectionCoordinator"] {
        assert!(ours.contains(name), "{name} missing from the dashboard:\n{ours}");
    }
}
