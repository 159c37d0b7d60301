//! The benchmark of the original generator (`scripts/generate_coordinator_metrics.py
//! --benchmark --iterations N`): each of the 13 Victor coordinators executed `N` times through
//! the real client, with the demo's deterministic latencies, failures, cache lookups and
//! analytics events. `coordmetrics generate` and the Python `coordmetrics.generate` both run it.

use coordmetrics::Collector;

use crate::sample::{Rng, EVENTS, PROFILES};

/// Seed of the benchmark's generator: the same run records the same durations every time.
const SEED: u64 = 13;

/// Records `iterations` executions of each of the 13 coordinators into `collector`, calling
/// `on_iteration` with each iteration's index (for progress) before it runs.
pub fn run_benchmark(collector: &Collector, iterations: u32, mut on_iteration: impl FnMut(u32)) {
    let coordinators: Vec<_> = PROFILES.iter().map(|p| (p, collector.coordinator(p.name))).collect();
    let mut rng = Rng::new(SEED);
    for iteration in 0..iterations {
        on_iteration(iteration);
        for (profile, coordinator) in &coordinators {
            profile.record(coordinator, profile.sample_duration(&mut rng), &mut rng);
            profile.look_up_cache(coordinator, &mut rng);
        }
        collector.record_analytics_event(EVENTS[iteration as usize % EVENTS.len()], 1);
    }
}
