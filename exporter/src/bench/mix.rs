//! What `coordmetrics bench` records: a fixed mix of operations over the 13 coordinators of
//! [`PROFILES`] and one analytics event, cheap to compute so that the bench measures the
//! client, and the prediction of the totals it adds to a segment.

use coordmetrics_exporter::workload::{Names, Op, Totals};
use coordmetrics_report::sample::PROFILES;

/// The analytics event of the mix.
pub const EVENT: &str = "bench_operation";

const COORDINATORS: [&str; PROFILES.len()] = {
    let mut names = [""; PROFILES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = PROFILES[i].name;
        i += 1;
    }
    names
};

/// Every name the mix records, registered in this order.
pub const NAMES: Names = Names { coordinators: &COORDINATORS, tracked: None, events: &[EVENT] };

/// What operation number `n` of thread `thread` does. A quarter each: an execution (1 in 20
/// failed, durations spread over 20 us to 100 ms), a cache hit, a cache miss, an analytics
/// event; the coordinator turns with `n`.
#[inline(always)]
pub fn op(thread: u64, n: u64) -> Op {
    let coordinator = ((n + thread) % COORDINATORS.len() as u64) as usize;
    match n % 4 {
        0 => {
            let nanos = 20_000 + ((n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 200_000) * 500;
            Op::Record { coordinator, nanos, ok: (n / 4) % 20 != 0 }
        }
        1 => Op::CacheHit { coordinator, by_name: false },
        2 => Op::CacheMiss { coordinator, by_name: false },
        _ => Op::Event { event: 0, count: 1, by_name: false },
    }
}

/// What a fresh segment must show once each `(thread, operations)` has performed its first
/// `operations` operations; predicted on every core, as a long run has billions of them.
pub fn expected(threads: &[(u64, u64)]) -> Totals {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let share = threads.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = threads
            .chunks(share)
            .map(|part| {
                let ops = part.iter().flat_map(|&(thread, operations)| (0..operations).map(move |n| op(thread, n)));
                scope.spawn(move || Totals::predict(&NAMES, ops))
            })
            .collect();
        parts.into_iter().fold(Totals::predict(&NAMES, []), |mut sum, part| {
            sum.add(&part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            sum
        })
    })
}

#[cfg(test)]
mod tests {
    use coordmetrics::Collector;
    use coordmetrics_exporter::workload::Handles;

    use super::*;

    #[test]
    fn the_segment_shows_what_was_predicted() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Collector::open(dir.path().join("segment")).unwrap();
        let handles = Handles::resolve(&collector, &NAMES);
        let threads = [(3, 1000), (4, 777)];
        for (thread, operations) in threads {
            (0..operations).for_each(|n| handles.apply(&op(thread, n)));
        }
        let expected = expected(&threads);
        assert_eq!(expected.operations(), 1777);
        assert_eq!(Totals::of(&collector.snapshot().unwrap(), &NAMES), expected);
    }
}
