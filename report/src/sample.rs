//! The 13 coordinators of the Victor assistant with realistic behaviour, a deterministic random
//! generator, and deterministic sample data built from them (`coordmetrics sample-data`).

use std::time::{Duration, UNIX_EPOCH};

use coordmetrics::{
    histogram, Capacities, Coordinator, CoordinatorTotals, Dropped, SegmentInfo, Snapshot, WriterState, WriterSummary,
};

use crate::model::{Health, Report};
use crate::reporter::{ReportOptions, Reporter};

/// How a synthetic coordinator behaves.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Name.
    pub name: &'static str,
    /// Median latency in milliseconds.
    pub median_ms: f64,
    /// Log-normal spread (sigma of the logarithm).
    pub spread: f64,
    /// Probability that an execution fails.
    pub error_rate: f64,
    /// Cache hit probability, if the coordinator uses a cache.
    pub hit_rate: Option<f64>,
    /// Executions per second it receives in the demo.
    pub rate_per_sec: f64,
    /// Error messages it produces.
    pub errors: &'static [&'static str],
}

/// The coordinators of the Victor assistant's orchestrator.
pub const PROFILES: [Profile; 13] = [
    profile("ConfigCoordinator", 1.5, 0.4, 0.001, Some(0.97), 4.0, &["config file changed during reload"]),
    profile("PromptCoordinator", 12.0, 0.5, 0.002, Some(0.91), 12.0, &["template variable missing: {user_name}"]),
    profile("ContextCoordinator", 35.0, 0.6, 0.004, Some(0.78), 10.0, &["context window exceeded: 131072 tokens"]),
    profile("ChatCoordinator", 85.0, 0.5, 0.006, None, 8.0, &["stream interrupted by client"]),
    profile(
        "ToolCoordinator",
        45.0,
        0.9,
        0.015,
        Some(0.64),
        6.0,
        &["tool 'web_search' failed: HTTP 502", "tool timed out after 30s"],
    ),
    profile("SessionCoordinator", 3.0, 0.4, 0.001, Some(0.95), 9.0, &["session expired"]),
    profile("AnalyticsCoordinator", 6.0, 0.5, 0.0, None, 14.0, &[]),
    profile(
        "ProviderCoordinator",
        180.0,
        0.45,
        0.03,
        Some(0.55),
        7.0,
        &["provider timeout after 60s", "rate limited (429)", "invalid API response: missing 'choices'"],
    ),
    profile("ModeCoordinator", 2.0, 0.3, 0.0, None, 3.0, &[]),
    profile("EvaluationCoordinator", 60.0, 0.7, 0.008, None, 2.0, &["evaluator returned NaN score"]),
    profile("WorkflowCoordinator", 110.0, 0.6, 0.01, None, 3.0, &["workflow step 'plan' failed"]),
    profile("CheckpointCoordinator", 25.0, 0.5, 0.002, None, 2.0, &["checkpoint write failed: disk quota exceeded"]),
    profile("ToolSelectionCoordinator", 18.0, 0.5, 0.003, Some(0.82), 6.0, &["no tool matched the request"]),
];

const fn profile(
    name: &'static str,
    median_ms: f64,
    spread: f64,
    error_rate: f64,
    hit_rate: Option<f64>,
    rate_per_sec: f64,
    errors: &'static [&'static str],
) -> Profile {
    Profile { name, median_ms, spread, error_rate, hit_rate, rate_per_sec, errors }
}

/// Analytics events the demo records.
pub const EVENTS: [&str; 5] = ["message_sent", "tool_call", "session_start", "mode_switch", "checkpoint_saved"];

/// SplitMix64: small, fast, and the same sequence everywhere for a given seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether an event of probability `p` happens.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

impl Profile {
    /// A log-normal latency around the median.
    pub fn sample_duration(&self, rng: &mut Rng) -> Duration {
        Duration::from_secs_f64(self.median_ms * (self.spread * rng.normal()).exp() / 1e3)
    }

    /// Records into `coordinator` one execution that took `duration`, failed at the profile's
    /// error rate with one of its messages.
    pub fn record(&self, coordinator: &Coordinator, duration: Duration, rng: &mut Rng) {
        if rng.chance(self.error_rate) && !self.errors.is_empty() {
            let message = self.errors[rng.next_u64() as usize % self.errors.len()];
            coordinator.record_failure(duration, message);
        } else {
            coordinator.record(duration, true);
        }
    }

    /// Records a cache hit or miss at the profile's hit rate, if it uses a cache.
    pub fn look_up_cache(&self, coordinator: &Coordinator, rng: &mut Rng) {
        if let Some(hit_rate) = self.hit_rate {
            if rng.chance(hit_rate) {
                coordinator.cache_hit();
            } else {
                coordinator.cache_miss();
            }
        }
    }
}

/// Fixed figures for the two sample processes (pids 1001 and 1002, tokens alike), as they
/// would publish them after `seconds` of running.
fn sample_processes(now: std::time::SystemTime, seconds: u64) -> Vec<coordmetrics::ProcessGauges> {
    [1001u32, 1002]
        .into_iter()
        .map(|pid| coordmetrics::ProcessGauges {
            process: u64::from(pid),
            pid,
            rss_bytes: 64 * 1024 * 1024 + u64::from(pid) * 1024 * 1024,
            cpu_time: Duration::from_millis(seconds * u64::from(pid) / 10),
            published: now,
        })
        .collect()
}

/// Deterministic sample data: twelve snapshots, ten seconds apart, of the 13 coordinators, as a
/// report marked `demo`.
pub fn sample_report() -> Report {
    let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
    let info = SegmentInfo {
        path: "sample-data".into(),
        layout_version: coordmetrics_proto::LAYOUT_VERSION,
        segment_id: 0x5a3c_0ffe_e000_0001,
        created: start,
        capacities: Capacities::default(),
        size: 0,
    };
    let interval = Duration::from_secs(10);
    let mut reporter = Reporter::starting_at(ReportOptions { interval, ..ReportOptions::default() }, start);
    let mut rng = Rng::new(42);
    let mut totals: Vec<CoordinatorTotals> = PROFILES
        .iter()
        .map(|p| CoordinatorTotals {
            hosts: vec![1001 + (p.name.len() % 2) as u64],
            ..CoordinatorTotals::empty(p.name)
        })
        .collect();
    let mut events = vec![0u64; EVENTS.len()];
    let mut errors = Vec::new();
    let mut report = None;
    for step in 1..=12u32 {
        let now = start + interval * step;
        for (profile, total) in PROFILES.iter().zip(&mut totals) {
            let executions = (profile.rate_per_sec * interval.as_secs_f64()) as u64;
            for _ in 0..executions {
                let nanos = profile.sample_duration(&mut rng).as_nanos() as u64;
                total.buckets[histogram::bucket_index(nanos)] += 1;
                total.duration_sum_ns += nanos;
                total.executions += 1;
                if rng.chance(profile.error_rate) {
                    total.errors += 1;
                    let message = profile.errors[rng.next_u64() as usize % profile.errors.len()];
                    errors.push(coordmetrics::RecordedError {
                        number: errors.len() as u64,
                        time: now - Duration::from_millis(rng.next_u64() % 10_000),
                        coordinator: None,
                        coordinator_name: Some(profile.name.into()),
                        pid: total.hosts[0] as u32,
                        message: message.into(),
                    });
                }
                if let Some(hit_rate) = profile.hit_rate {
                    if rng.chance(hit_rate) {
                        total.cache_hits += 1;
                    } else {
                        total.cache_misses += 1;
                    }
                }
            }
        }
        for count in &mut events {
            *count += rng.next_u64() % 20;
        }
        let mut newest_first = errors.clone();
        newest_first.reverse();
        let snapshot = Snapshot {
            taken_at: now,
            info: info.clone(),
            coordinators: totals.clone(),
            events: EVENTS.iter().map(|e| e.to_string()).zip(events.iter().copied()).collect(),
            writers: vec![
                WriterSummary { slot: 0, state: WriterState::Active { pid: 1001 }, process: 1001 },
                WriterSummary { slot: 1, state: WriterState::Active { pid: 1002 }, process: 1002 },
            ],
            processes: sample_processes(now, u64::from(step) * interval.as_secs()),
            blocks_in_use: (PROFILES.len() as u32, Capacities::default().coordinators * Capacities::default().writers),
            dropped: Dropped::default(),
            errors: newest_first,
        };
        report = Some(reporter.report(&snapshot, Health::snapshot_at(now)));
    }
    let mut report = report.expect("twelve snapshots were reported");
    report.events.sort();
    report.demo = true;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_data_is_deterministic() {
        let render = || {
            let mut out = Vec::new();
            crate::format::json::write_report(&mut out, &sample_report()).unwrap();
            out
        };
        assert_eq!(render(), render());
    }
}
