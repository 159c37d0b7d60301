//! End to end with the real consumers: writer processes record a known workload through the
//! client, `coordmetrics run` rewrites a .prom file in a textfile directory, Debian's
//! node_exporter reads it, Prometheus scrapes node_exporter every second, and the documented
//! PromQL queries (and every Grafana panel's) return what the workload implies.
//!
//! The writers are this test binary re-executed with `E2E_WRITER` set (the iceoryx2 pattern).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, require_peer, run_args, wait_until, Exporter, Guarded};
use coordmetrics::{histogram, Capacities, Collector, SegmentOptions};
use serde_json::Value;

const WRITER_ENV: &str = "E2E_WRITER_SEGMENT";
const PROCESSES: u64 = 2;
const THREADS: u64 = 2;
const TICK: Duration = Duration::from_millis(100);
const WORKLOAD: Duration = Duration::from_secs(16);

/// Per coordinator: (name, shortest and longest duration in ms, errors and cache hits per tick
/// out of 20 executions and 4 cache lookups).
const COORDINATORS: [(&str, f64, f64, u64, u64); 3] = [
    ("ChatCoordinator", 20.0, 180.0, 1, 3),
    ("ToolCoordinator", 2.0, 40.0, 0, 2),
    ("ProviderCoordinator", 90.0, 900.0, 2, 1),
];
const PER_TICK: u64 = 20;

/// `count` durations from `low_ms` to `high_ms`, log-spaced (a fixed, known distribution).
fn log_spaced(low_ms: f64, high_ms: f64, count: u64) -> Vec<Duration> {
    (0..count)
        .map(|i| {
            let fraction = i as f64 / (count - 1) as f64;
            Duration::from_secs_f64(low_ms * (high_ms / low_ms).powf(fraction) / 1e3)
        })
        .collect()
}

/// The durations one thread records per tick for a coordinator.
fn tick_durations(low_ms: f64, high_ms: f64) -> Vec<Duration> {
    log_spaced(low_ms, high_ms, PER_TICK)
}

/// The exact quantile `q` of `durations` in seconds: the observation of rank `ceil(q * n)`.
fn exact_quantile(durations: &[Duration], q: f64) -> f64 {
    let mut seconds: Vec<f64> = durations.iter().map(Duration::as_secs_f64).collect();
    seconds.sort_by(f64::total_cmp);
    seconds[(q * seconds.len() as f64).ceil() as usize - 1]
}

/// The writer side: `THREADS` threads, each recording the same pattern every tick.
fn write_workload(segment: &Path, ticks: u64) {
    let collector = Collector::open(segment).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let handles: Vec<_> = COORDINATORS.iter().map(|c| (c, collector.coordinator(c.0))).collect();
                let start = Instant::now();
                for tick in 0..ticks {
                    for ((_, low, high, errors, hits), coordinator) in &handles {
                        for (i, duration) in tick_durations(*low, *high).into_iter().enumerate() {
                            // The failures are spread over the distribution (every 7th value).
                            let fail = (i as u64 * 7 % PER_TICK) < *errors;
                            coordinator.record(duration, !fail);
                        }
                        for lookup in 0..4 {
                            if lookup < *hits {
                                coordinator.cache_hit();
                            } else {
                                coordinator.cache_miss();
                            }
                        }
                    }
                    collector.record_analytics_event("tool_call", 1);
                    std::thread::sleep((start + TICK * (tick as u32 + 1)).saturating_duration_since(Instant::now()));
                }
            });
        }
    });
}

/// Runs an instant query; `None` while Prometheus is not ready or the query fails.
fn try_query(prometheus: std::net::SocketAddr, expr: &str) -> Option<Value> {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={encoded}"));
    let value: Value = serde_json::from_slice(&body).ok()?;
    (status == 200 && value["status"] == "success").then(|| value["data"]["result"].clone())
}

fn query(prometheus: std::net::SocketAddr, expr: &str) -> Value {
    try_query(prometheus, expr).unwrap_or_else(|| panic!("query failed: {expr}"))
}

/// The value per coordinator of an instant vector.
fn by_coordinator(result: &Value) -> std::collections::HashMap<String, f64> {
    result
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            let name = series["metric"]["coordinator"].as_str().unwrap_or_default().to_string();
            (name, series["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

fn scalar(result: &Value) -> Option<f64> {
    result.as_array()?.first()?["value"][1].as_str()?.parse().ok()
}

/// Runs every Grafana panel's expression, its variables as an "All" selection and the given
/// windows: each must parse and return data.
fn check_dashboard_panels(prometheus: std::net::SocketAddr, rate_interval: &str, range: &str) {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/coordmetrics-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$coordinator", ".*")
                .replace("$instance", ".*")
                .replace("$__rate_interval", rate_interval)
                .replace("$__range", range);
            let result = query(prometheus, &expr);
            assert!(!result.as_array().unwrap().is_empty(), "panel {:?}: no data for {expr}", panel["title"]);
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} panel expressions");
}

/// The packaged rule file.
fn packaged_rules() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus/alerts.yml")
}

/// Starts Prometheus on a free loopback port, scraping `127.0.0.1:target_port` as `job` every
/// second and evaluating `rules` (if any) every second, its data in `dir`; killed by pid when
/// the guard drops.
fn start_prometheus(
    binary: &Path,
    dir: &Path,
    job: &str,
    target_port: u16,
    rules: Option<&Path>,
    flags: &[&str],
) -> (Guarded, std::net::SocketAddr) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    let rule_files = rules.map(|r| format!("rule_files: ['{}']\n", r.display())).unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(flags)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    (Guarded(child), ([127, 0, 0, 1], port).into())
}

#[test]
fn node_exporter_and_prometheus_read_what_was_recorded() {
    if let Ok(segment) = std::env::var(WRITER_ENV) {
        let ticks = (WORKLOAD.as_millis() / TICK.as_millis()) as u64;
        write_workload(Path::new(&segment), ticks);
        return;
    }
    let (Some(node_exporter), Some(prometheus_bin)) =
        (require_peer("prometheus-node-exporter"), require_peer("prometheus"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 16, events: 8, writers: 16, errors: 64 },
        ..SegmentOptions::default()
    };
    Collector::open_with(&segment, &options).unwrap();

    let _exporter = Exporter::start(
        &[
            run_args(&segment, &textfiles.join("coordmetrics.prom"), &dir.path().join("metrics.json"), "500ms"),
            vec!["--compat-names"],
        ]
        .concat(),
    );
    let node_port = free_port();
    let node_log = std::fs::File::create(dir.path().join("node_exporter.log")).unwrap();
    let _node = Guarded(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .args(["--collector.disable-defaults", "--collector.textfile"])
            .arg(format!("--collector.textfile.directory={}", textfiles.display()))
            .stdout(Stdio::null())
            .stderr(node_log.try_clone().unwrap())
            .spawn()
            .unwrap(),
    );
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, dir.path(), "node", node_port, None, &[]);
    wait_until(Duration::from_secs(60), "Prometheus's first scrape of node_exporter", || {
        std::net::TcpStream::connect(prometheus).is_ok()
            && try_query(prometheus, "up{job=\"node\"}").is_some_and(|r| scalar(&r) == Some(1.0))
    });

    let writers: Vec<Guarded> = (0..PROCESSES)
        .map(|_| {
            Guarded(
                Command::new(std::env::current_exe().unwrap())
                    .args(["node_exporter_and_prometheus_read_what_was_recorded", "--exact", "--nocapture"])
                    .env(WRITER_ENV, &segment)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    // Mid-workload: rates are steady, gauges of live writers present.
    std::thread::sleep(WORKLOAD.mul_f64(0.7));
    let window = "[6s]";
    let p95 = by_coordinator(&query(
        prometheus,
        &format!("histogram_quantile(0.95, sum by (coordinator, le) (rate(victor_coordinator_duration_seconds_bucket{window})))"),
    ));
    let error_rate = by_coordinator(&query(
        prometheus,
        &format!("sum by (coordinator) (rate(victor_coordinator_errors_total{window})) / sum by (coordinator) (rate(victor_coordinator_executions_total{window}))"),
    ));
    let hit_rate = by_coordinator(&query(
        prometheus,
        &format!("sum by (coordinator) (rate(victor_coordinator_cache_hits_total{window})) / (sum by (coordinator) (rate(victor_coordinator_cache_hits_total{window})) + sum by (coordinator) (rate(victor_coordinator_cache_misses_total{window})))"),
    ));
    let throughput = by_coordinator(&query(
        prometheus,
        &format!("sum by (coordinator) (rate(victor_coordinator_executions_total{window}))"),
    ));
    // The original collector's documented query, verbatim, on the --compat-names histogram.
    let seed_p95_ms = by_coordinator(&query(
        prometheus,
        "histogram_quantile(0.95, sum(rate(victor_coordinator_duration_ms_bucket[5m])) by (coordinator, le))",
    ));
    let per_second = (PROCESSES * THREADS * PER_TICK) as f64 / TICK.as_secs_f64();
    for (name, low, high, errors, hits) in COORDINATORS {
        let exact = exact_quantile(&tick_durations(low, high), 0.95);
        let measured = p95[name];
        eprintln!(
            "{name}: PromQL p95 {measured:.4} s, exact {exact:.4} s, error rate {}, hit rate {}, throughput {}/s",
            error_rate[name], hit_rate[name], throughput[name]
        );
        assert!((measured / exact - 1.0).abs() <= 0.25, "{name}: PromQL p95 {measured} vs exact {exact}");
        let seed = seed_p95_ms[name];
        assert!((seed / (exact * 1e3) - 1.0).abs() <= 0.25, "{name}: the seed's p95 {seed} ms vs exact {exact} s");
        assert!(
            (error_rate[name] - errors as f64 / PER_TICK as f64).abs() < 1e-9,
            "{name} error rate {}",
            error_rate[name]
        );
        assert!((hit_rate[name] - hits as f64 / 4.0).abs() < 1e-9, "{name} hit rate {}", hit_rate[name]);
        assert!(
            (throughput[name] / per_second - 1.0).abs() <= 0.25,
            "{name}: throughput {} vs {per_second}",
            throughput[name]
        );
    }

    check_dashboard_panels(prometheus, "6s", "10s");

    for writer in writers {
        let mut child = writer;
        wait_until(WORKLOAD * 3, "writers to finish", || child.0.try_wait().unwrap().is_some());
        assert!(child.0.wait().unwrap().success());
    }
    // After the final scrapes: exact totals, no scrape or gathering errors.
    let ticks = (WORKLOAD.as_millis() / TICK.as_millis()) as u64;
    let executions = PROCESSES * THREADS * ticks * PER_TICK;
    wait_until(Duration::from_secs(20), "final totals in Prometheus", || {
        by_coordinator(&query(prometheus, "victor_coordinator_executions_total"))
            .values()
            .all(|&v| v == executions as f64)
    });
    let errors = by_coordinator(&query(prometheus, "victor_coordinator_errors_total"));
    for (name, _, _, per_tick, _) in COORDINATORS {
        assert_eq!(errors[name], (PROCESSES * THREADS * ticks * per_tick) as f64, "{name}");
    }
    for events in ["victor_coordinator_analytics_events_total", "victor_analytics_events_total"] {
        assert_eq!(
            scalar(&query(prometheus, &format!("{events}{{event=\"tool_call\"}}"))),
            Some((PROCESSES * THREADS * ticks) as f64),
            "{events}"
        );
    }
    // The other documented series: one unlabelled total, a hit rate per coordinator.
    let coordinator_count = COORDINATORS.len() as u64;
    assert_eq!(
        scalar(&query(prometheus, "victor_coordinator_total_executions")),
        Some((executions * coordinator_count) as f64)
    );
    let hit_rates = by_coordinator(&query(prometheus, "victor_coordinator_cache_hit_rate"));
    for (name, _, _, _, hits) in COORDINATORS {
        assert!((hit_rates[name] - hits as f64 / 4.0).abs() < 1e-9, "{name} cache_hit_rate {}", hit_rates[name]);
    }
    assert_eq!(scalar(&query(prometheus, "max_over_time(node_textfile_scrape_error[1m])")), Some(0.0));
    let (_, node_metrics) = http_get(([127, 0, 0, 1], node_port).into(), "/metrics");
    let node_metrics = String::from_utf8_lossy(&node_metrics);
    for line in node_metrics.lines().filter(|l| l.starts_with("promhttp_metric_handler_errors_total")) {
        assert!(line.ends_with(" 0"), "node_exporter gathering errors: {line}");
    }
    let log = std::fs::read_to_string(dir.path().join("node_exporter.log")).unwrap();
    assert!(!log.contains("level=error"), "node_exporter logged errors:\n{log}");
}

/// Executions per coordinator in each half of the native-histogram workload.
const NATIVE_HALF: u64 = 300;
/// The SLO bound of the `histogram_fraction` check, seconds.
const SLO_SECONDS: f64 = 0.1;

#[test]
fn prometheus_scrapes_native_histograms_over_protobuf() {
    let Some(prometheus_bin) = require_peer("prometheus") else { return };
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("segment");
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 16, events: 8, writers: 16, errors: 64 },
        ..SegmentOptions::default()
    };
    let collector = Collector::open_with(&segment, &options).unwrap();
    // The same known distribution twice: once before Prometheus's first scrape, once after,
    // so that both the raw series and its rate have it.
    let record_half = || {
        for (name, low, high, errors, hits) in COORDINATORS {
            let coordinator = collector.coordinator(name);
            for (i, duration) in log_spaced(low, high, NATIVE_HALF).into_iter().enumerate() {
                coordinator.record(duration, i as u64 % PER_TICK >= errors);
            }
            // Cache traffic, for the dashboard's hit-rate panels.
            (0..hits).for_each(|_| coordinator.cache_hit());
            (hits..4).for_each(|_| coordinator.cache_miss());
        }
    };
    record_half();
    let exporter = Exporter::start(
        &[
            run_args(&segment, &dir.path().join("out.prom"), &dir.path().join("metrics.json"), "200ms"),
            vec!["--listen", "127.0.0.1:0"],
        ]
        .concat(),
    );
    let (_prometheus, prometheus) = start_prometheus(
        &prometheus_bin,
        dir.path(),
        "coordmetrics",
        exporter.address.unwrap().port(),
        Some(&packaged_rules()),
        &["--enable-feature=native-histograms"],
    );
    // histogram_count only sees native histograms: a value proves the protobuf was negotiated.
    let counts_are = |expected: u64| {
        std::net::TcpStream::connect(prometheus).is_ok()
            && try_query(prometheus, "histogram_count(victor_coordinator_duration_seconds)").is_some_and(|r| {
                let counts = by_coordinator(&r);
                counts.len() == COORDINATORS.len() && counts.values().all(|&c| c == expected as f64)
            })
    };
    wait_until(Duration::from_secs(60), "the first half in Prometheus", || counts_are(NATIVE_HALF));
    record_half();
    wait_until(Duration::from_secs(30), "the second half in Prometheus", || counts_are(2 * NATIVE_HALF));

    let rate = "rate(victor_coordinator_duration_seconds[1m])";
    let p95_of_rate =
        by_coordinator(&query(prometheus, &format!("histogram_quantile(0.95, sum by (coordinator) ({rate}))")));
    let p95_raw = by_coordinator(&query(prometheus, "histogram_quantile(0.95, victor_coordinator_duration_seconds)"));
    let fraction = by_coordinator(&query(
        prometheus,
        &format!("histogram_fraction(0, {SLO_SECONDS}, sum by (coordinator) ({rate}))"),
    ));
    for (name, low, high, _, _) in COORDINATORS {
        let durations = log_spaced(low, high, NATIVE_HALF);
        let exact = exact_quantile(&durations, 0.95);
        for (how, measured) in [("rate", p95_of_rate[name]), ("raw", p95_raw[name])] {
            eprintln!("{name}: native p95 ({how}) {measured:.5} s, exact {exact:.5} s");
            assert!((measured / exact - 1.0).abs() <= 0.05, "{name}: native p95 ({how}) {measured} vs exact {exact}");
        }
        // Prometheus interpolates inside the bucket holding the SLO bound: it can be off by
        // at most that bucket's share of the observations.
        let in_slo = durations.iter().filter(|d| d.as_secs_f64() <= SLO_SECONDS).count() as f64;
        let exact_fraction = in_slo / durations.len() as f64;
        let slo_bucket = histogram::bucket_index((SLO_SECONDS * 1e9) as u64);
        let straddling =
            durations.iter().filter(|d| histogram::bucket_index(d.as_nanos() as u64) == slo_bucket).count();
        let tolerance = straddling as f64 / durations.len() as f64;
        eprintln!(
            "{name}: histogram_fraction(0, {SLO_SECONDS}) {:.4}, exact {exact_fraction:.4} (within {tolerance:.4})",
            fraction[name]
        );
        assert!(
            (fraction[name] - exact_fraction).abs() <= tolerance + 1e-9,
            "{name}: fraction {} vs {exact_fraction}",
            fraction[name]
        );
    }
    // The packaged recording rules and every Grafana panel work on native histograms too.
    wait_until(Duration::from_secs(30), "the recording rules' first evaluation", || {
        try_query(prometheus, "coordinator:duration_seconds:ratio_under_100ms_rate5m")
            .is_some_and(|r| by_coordinator(&r).len() == COORDINATORS.len())
            && try_query(prometheus, "coordinator:duration_seconds:p95_rate5m")
                .is_some_and(|r| by_coordinator(&r).len() == COORDINATORS.len())
    });
    let recorded_p95 = by_coordinator(&query(prometheus, "coordinator:duration_seconds:p95_rate5m"));
    let recorded_fraction = by_coordinator(&query(prometheus, "coordinator:duration_seconds:ratio_under_100ms_rate5m"));
    for (name, _, _, _, _) in COORDINATORS {
        assert!((recorded_p95[name] / p95_of_rate[name] - 1.0).abs() < 1e-9, "{name}: recorded p95");
        assert!((recorded_fraction[name] - fraction[name]).abs() < 1e-9, "{name}: recorded SLO ratio");
    }
    check_dashboard_panels(prometheus, "1m", "1m");
    // The other families arrive over protobuf too, exact.
    let executions = by_coordinator(&query(prometheus, "victor_coordinator_executions_total"));
    assert!(COORDINATORS.iter().all(|c| executions[c.0] == (2 * NATIVE_HALF) as f64), "{executions:?}");
}
