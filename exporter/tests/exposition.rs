//! `/metrics` answers each scraper in the format it asks for: Prometheus text by default,
//! OpenMetrics text, or delimited protobuf with native histograms; each checked by a real
//! decoder (prost for protobuf, Python's prometheus_client for OpenMetrics).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{http_exchange, require_python_module, run_args, run_bounded, wait_until, Exporter, Response};
use coordmetrics::{histogram, Capacities, Collector, SegmentOptions};
use coordmetrics_report::format::client_model::{MetricFamily, MetricType};
use prost::Message;

const TIMEOUT: Duration = Duration::from_secs(60);
const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Coordinators (one with a name that needs escaping) and how many executions each records.
const WORKLOAD: [(&str, u64); 3] = [("ChatCoordinator", 40), ("quote\"back\\slash", 25), ("Slow", 3)];

/// An exporter serving a segment holding [`WORKLOAD`], its files written once.
fn serve(dir: &Path, extra: &[&str]) -> Exporter {
    std::fs::create_dir_all(dir).unwrap();
    let segment = dir.join("segment");
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 8, events: 4, writers: 4, errors: 16 },
        ..SegmentOptions::default()
    };
    let collector = Collector::open_with(&segment, &options).unwrap();
    for (name, executions) in WORKLOAD {
        let coordinator = collector.coordinator(name);
        for n in 0..executions {
            coordinator.record(Duration::from_micros(300 + 4_999 * n * n), n % 5 != 0);
        }
    }
    // One below the zero threshold, one above the last finite bucket.
    collector.coordinator("Slow").record(Duration::from_nanos(1), true);
    collector.coordinator("Slow").record(Duration::from_secs(200), true);
    let (prom, json) = (dir.join("out.prom"), dir.join("metrics.json"));
    let args = run_args(&segment, &prom, &json, "1h");
    let exporter = Exporter::start(&[args, vec!["--listen", "127.0.0.1:0"], extra.to_vec()].concat());
    // The listener's content is published after the files are written.
    wait_until(TIMEOUT, "first snapshot served", || prom.exists() && exporter.get("/healthz").0 == 200);
    exporter
}

fn scrape(exporter: &Exporter, accept: Option<&str>) -> Response {
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let response =
        http_exchange(exporter.address.unwrap(), &format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n"));
    assert_eq!(response.status, 200);
    response
}

fn decode(mut bytes: &[u8]) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(MetricFamily::decode_length_delimited(&mut bytes).expect("a delimited MetricFamily"));
    }
    out
}

#[test]
fn text_is_the_default_and_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = serve(dir.path(), &[]);
    for accept in [None, Some("*/*"), Some("text/plain;version=0.0.4")] {
        let response = scrape(&exporter, accept);
        assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert_eq!(response.header("vary"), Some("Accept"));
        assert_eq!(response.body, std::fs::read(dir.path().join("out.prom")).unwrap(), "{accept:?}");
    }
}

#[test]
fn protobuf_carries_native_and_classic_histograms() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, schema) in [(&[][..], 3), (&["--native-histogram-schema", "1"][..], 1)] {
        let exporter = serve(&dir.path().join(schema.to_string()), extra);
        let response = scrape(&exporter, Some(PROTOBUF));
        assert_eq!(
            response.header("content-type"),
            Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
        );
        let families = decode(&response.body);
        let names: Vec<&str> = families.iter().filter_map(|f| f.name.as_deref()).collect();
        for expected in ["victor_coordinator_executions_total", "coordmetrics_up", "coordmetrics_segment_capacity"] {
            assert!(names.contains(&expected), "{expected} missing from {names:?}");
        }
        let executions = families.iter().find(|f| f.name.as_deref() == Some("victor_coordinator_executions_total"));
        assert_eq!(executions.unwrap().r#type, Some(MetricType::Counter as i32));
        let latency =
            families.iter().find(|f| f.name.as_deref() == Some("victor_coordinator_duration_seconds")).unwrap();
        assert_eq!(latency.r#type, Some(MetricType::Histogram as i32));
        assert_eq!(latency.metric.len(), WORKLOAD.len());
        for metric in &latency.metric {
            let name = metric.label[0].value.as_deref().unwrap();
            let expected = WORKLOAD.iter().find(|(n, _)| *n == name).unwrap().1 + if name == "Slow" { 2 } else { 0 };
            let h = metric.histogram.as_ref().unwrap();
            assert_eq!(h.sample_count, Some(expected), "{name}");
            assert_eq!(h.schema, Some(schema));
            assert_eq!(h.zero_threshold, Some(histogram::upper_bound_seconds(0)));
            let native_total: i64 = {
                // Deltas add up to each bucket's count; counts add up to the observations.
                let mut count = 0i64;
                h.positive_delta
                    .iter()
                    .map(|d| {
                        count += d;
                        count
                    })
                    .sum()
            };
            assert_eq!(
                native_total as u64 + h.zero_count.unwrap(),
                expected,
                "{name}: native buckets hold every observation"
            );
            assert_eq!(
                h.positive_span.iter().map(|s| s.length.unwrap() as usize).sum::<usize>(),
                h.positive_delta.len()
            );
            assert!(!h.bucket.is_empty(), "{name}: classic buckets too");
            if name == "Slow" {
                assert_eq!(h.zero_count, Some(1), "the 1 ns execution is in the zero bucket");
            }
        }
    }
}

#[test]
fn openmetrics_passes_the_python_parser() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = serve(dir.path(), &[]);
    let response = scrape(&exporter, Some(OPENMETRICS));
    assert_eq!(response.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let text = String::from_utf8(response.body).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE victor_coordinator_executions counter\n"), "{text}");
    assert!(text.contains("# UNIT victor_coordinator_duration_seconds seconds\n"), "{text}");
    let Some(python) = require_python_module("prometheus_client") else { return };
    // The OpenMetrics parser is strict: it raises on anything the standard does not allow.
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        if s.name == "victor_coordinator_executions_total":
            print(f.type, f.unit or "-", s.labels["coordinator"], int(s.value))
"#;
    let file = dir.path().join("scrape.om");
    std::fs::write(&file, &text).unwrap();
    let output =
        run_bounded(Command::new(python).args(["-c", script]).stdin(std::fs::File::open(&file).unwrap()), TIMEOUT);
    assert!(output.status.success(), "{}\n{text}", String::from_utf8_lossy(&output.stderr));
    let parsed = String::from_utf8_lossy(&output.stdout);
    for (name, executions) in WORKLOAD {
        let executions = executions + if name == "Slow" { 2 } else { 0 };
        assert!(parsed.lines().any(|l| l == format!("counter - {name} {executions}")), "{name}: {parsed}");
    }
}
