//! Coordinator names, event names and error messages full of control characters, through
//! `coordmetrics snapshot` into the parsers that read its files: promtool, node_exporter,
//! Python's prometheus_client (reading the file as Python opens files) and JSON parsers.
//! The Prometheus text shows the controls as visible `\xHH` text; metrics.json keeps every
//! name exactly (see docs/FORMATS.md, "Names and messages").

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    bin, free_port, http_get, promtool_check, require_peer, require_python_module, run_bounded, wait_until, Guarded,
};
use coordmetrics::{Capacities, Collector, SegmentOptions};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Coordinator names as recorded, and as the Prometheus text must give them back.
const COORDINATORS: [(&str, &str); 10] = [
    ("tab\there", "tab\\x09here"),
    ("carriage\rreturn", "carriage\\x0dreturn"),
    ("escape\u{1b}[31mred", "escape\\x1b[31mred"),
    ("nul\0byte", "nul\\x00byte"),
    ("delete\u{7f}", "delete\\x7f"),
    ("next\u{85}line", "next\\x85line"),
    ("line\u{2028}separator\u{2029}", "line\\u2028separator\\u2029"),
    ("quote\"back\\slash", "quote\"back\\slash"),
    ("new\nline", "new\nline"),
    ("all\t\r\u{1b}\0\u{7f}\u{2028}\"\\\n", "all\\x09\\x0d\\x1b\\x00\\x7f\\u2028\"\\\n"),
];

/// Event names, likewise.
const EVENTS: [(&str, &str); 2] = [("event\twith\ttabs", "event\\x09with\\x09tabs"), ("crlf\r\n", "crlf\\x0d\n")];

/// An error message with every kind of character that needs care.
const MESSAGE: &str = "timeout\r\n\tat step 3 \u{1b}[0m \0 \u{7f} \u{2028} \"quoted\" \\ end";

/// A segment holding every hostile name, an error for each coordinator, and both events.
fn hostile_segment(path: &Path) {
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 16, events: 8, writers: 8, errors: 32 },
        ..SegmentOptions::default()
    };
    let collector = Collector::open_with(path, &options).unwrap();
    for (name, _) in COORDINATORS {
        let coordinator = collector.coordinator(name);
        coordinator.record(Duration::from_millis(2), true);
        coordinator.record_failure(Duration::from_millis(3), MESSAGE);
    }
    for (name, _) in EVENTS {
        collector.record_analytics_event(name, 2);
    }
}

/// `coordmetrics snapshot --format FORMAT --output PATH`.
fn snapshot(segment: &Path, format: &str, output: &Path) {
    let result = run_bounded(
        bin().args(["snapshot", "--format", format, "--segment"]).arg(segment).arg("--output").arg(output),
        TIMEOUT,
    );
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
}

/// Runs a Python script with `file` as its argument; returns what it printed, as JSON.
fn python_json(python: &Path, script: &str, file: &Path) -> serde_json::Value {
    let output = run_bounded(Command::new(python).args(["-c", script]).arg(file), TIMEOUT);
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[test]
fn promtool_and_prometheus_client_accept_the_text_and_read_the_names_back() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    hostile_segment(&segment);
    let prom = dir.path().join("hostile.prom");
    snapshot(&segment, "prometheus", &prom);
    let text = std::fs::read_to_string(&prom).unwrap();
    let unsafe_char = text.chars().find(|&c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}'));
    assert_eq!(unsafe_char, None, "only line feeds among the controls:\n{text}");

    if let Some(promtool) = require_peer("promtool") {
        assert_eq!(promtool_check(&promtool, text.as_bytes()), (0, String::new()));
    }
    if let Some(python) = require_python_module("prometheus_client") {
        // open() as Python programs do: universal newlines, where a raw CR would end the line.
        let script = r#"
import json, sys
from prometheus_client.parser import text_fd_to_metric_families
coordinators, events = [], []
with open(sys.argv[1], encoding="utf-8") as f:
    for family in text_fd_to_metric_families(f):
        for s in family.samples:
            if s.name == "victor_coordinator_executions_total":
                coordinators.append(s.labels["coordinator"])
            if s.name == "victor_coordinator_analytics_events_total":
                events.append(s.labels["event"])
print(json.dumps({"coordinators": coordinators, "events": events}))
"#;
        let parsed = python_json(&python, script, &prom);
        let expected = |pairs: &[(&str, &str)]| sorted(pairs.iter().map(|(_, shown)| (*shown).to_owned()).collect());
        assert_eq!(sorted(strings(&parsed["coordinators"])), expected(&COORDINATORS));
        assert_eq!(sorted(strings(&parsed["events"])), expected(&EVENTS));
    }
}

#[test]
fn json_parsers_read_every_name_and_message_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    hostile_segment(&segment);
    let json = dir.path().join("metrics.json");
    snapshot(&segment, "json", &json);

    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let recorded = |pairs: &[(&str, &str)]| sorted(pairs.iter().map(|(raw, _)| (*raw).to_owned()).collect());
    let names = document["coordinators"].as_array().unwrap().iter();
    let names = names.map(|c| c["coordinator_name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(sorted(names), recorded(&COORDINATORS));

    let Some(python) = require_peer("python3") else { return };
    // Python's json is strict by default: a raw control character in a string is an error.
    let script = r#"
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    d = json.load(f)
print(json.dumps({
    "coordinators": [c["coordinator_name"] for c in d["coordinators"]],
    "events": list(d["overall_stats"]["analytics_events"]),
    "messages": [e["message"] for e in d["recent_errors"]],
    "history": [list(p["coordinators"]) for p in d["history"]],
}))
"#;
    let parsed = python_json(&python, script, &json);
    assert_eq!(sorted(strings(&parsed["coordinators"])), recorded(&COORDINATORS));
    assert_eq!(sorted(strings(&parsed["events"])), recorded(&EVENTS));
    let messages = strings(&parsed["messages"]);
    assert_eq!(messages.len(), COORDINATORS.len());
    assert!(messages.iter().all(|m| m == MESSAGE), "{messages:?}");
    for point in parsed["history"].as_array().unwrap() {
        assert_eq!(sorted(strings(point)), recorded(&COORDINATORS));
    }
}

#[test]
fn node_exporter_serves_the_hostile_names_without_errors() {
    let Some(node_exporter) = require_peer("prometheus-node-exporter") else { return };
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    hostile_segment(&segment);
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    snapshot(&segment, "prometheus", &textfiles.join("coordmetrics.prom"));

    let port = free_port();
    let log = dir.path().join("node_exporter.log");
    let _node = Guarded(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(["--collector.disable-defaults", "--collector.textfile"])
            .arg(format!("--collector.textfile.directory={}", textfiles.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let address = ([127, 0, 0, 1], port).into();
    wait_until(TIMEOUT, "node_exporter listening", || std::net::TcpStream::connect(address).is_ok());
    let (status, body) = http_get(address, "/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    assert!(metrics.contains("node_textfile_scrape_error 0\n"), "{metrics}");
    for line in metrics.lines().filter(|l| l.starts_with("promhttp_metric_handler_errors_total")) {
        assert!(line.ends_with(" 0"), "node_exporter gathering errors: {line}");
    }
    // node_exporter escapes label values as the format says: `\` as `\\`, `"` as `\"`, LF as `\n`.
    for (_, shown) in COORDINATORS {
        let escaped = shown.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let series = format!("victor_coordinator_executions_total{{coordinator=\"{escaped}\"}} 2\n");
        assert!(metrics.contains(&series), "missing {series:?}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("level=error"), "node_exporter logged errors:\n{log}");
}
