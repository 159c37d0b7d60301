//! The latency histogram schema: Prometheus native-histogram schema 3.
//!
//! Bucket boundaries are powers of 2^(1/8) seconds, so every bucket is 9.05% wide and any value
//! inside it is within 4.4% of the bucket's geometric midpoint. Bucket `k` (an integer) covers
//! `(2^((k-1)/8), 2^(k/8)]` seconds, upper bound inclusive, as in Prometheus.
//!
//! The segment stores [`BUCKETS`] fine buckets: an underflow bucket for everything at or below
//! 2^([`MIN_INDEX`]/8) s (about 0.95 us), one bucket per `k` in `MIN_INDEX+1 ..= MAX_INDEX`
//! (up to 128 s), and an overflow bucket above that. Classic Prometheus buckets are sums of
//! consecutive fine buckets, so coarsening is exact ([`coarsen`]).

/// Prometheus native-histogram schema of the fine buckets.
pub const SCHEMA: i32 = 3;
/// Fine buckets per power of two.
pub const PER_OCTAVE: i32 = 1 << SCHEMA;
/// Upper bound (as `k`) of the underflow bucket: 2^-20 s, about 0.95 us.
pub const MIN_INDEX: i32 = -160;
/// Upper bound (as `k`) of the last finite bucket: 2^7 s = 128 s.
pub const MAX_INDEX: i32 = 56;
/// Number of fine buckets: underflow, one per `k` in `MIN_INDEX+1..=MAX_INDEX`, overflow.
pub const BUCKETS: usize = (MAX_INDEX - MIN_INDEX) as usize + 2;

/// 2^(j/8) for j in 0..8, written out so that boundaries are bit-identical everywhere
/// (no libm `powf` whose last digit could differ between platforms).
const OCTAVE_FRACTIONS: [f64; 8] = [
    1.0,
    1.090_507_732_665_257_7,
    1.189_207_115_002_721,
    1.296_839_554_651_009_6,
    std::f64::consts::SQRT_2,
    1.542_210_825_407_940_7,
    1.681_792_830_507_429,
    1.834_008_086_409_342_4,
];

/// Where the fine boundaries fall inside every power of two of nanoseconds.
///
/// Bucket boundaries are 10^9 * 2^(k/8) ns. Since 8 * log2(10^9) = 239 + d (d = 0.1788...), a
/// duration of `v` ns with `v = 2^e * m` (1 <= m < 2) lies in bucket `k = 8e - 239 + j`, where
/// `j` counts the thresholds 2^((i + d)/8), i = 0..8, that `m` exceeds. Scaled by 2^63 they are
/// compared with `v` shifted so that its top bit is bit 63: integers only, exact. The last
/// threshold is exactly 10^9 * 2^34 (a boundary such as 1 s then belongs to the bucket it closes,
/// as Prometheus's upper-inclusive buckets require); the others are irrational, floored.
const NANOS_THRESHOLDS: [u64; 8] = [
    9_367_390_095_664_785_123,
    10_215_211_334_214_395_865,
    11_139_766_950_770_582_417,
    12_148_001_999_904_198_769,
    13_247_490_117_328_543_392,
    14_446_490_411_353_358_019,
    15_754_009_503_455_335_899,
    17_179_869_184_000_000_000,
];
/// The integer part of 8 * log2(10^9).
const NANOS_OFFSET: i32 = 239;

/// 2^(k/8) seconds, exactly reproducible.
pub fn boundary_seconds(k: i32) -> f64 {
    power_of_two(k.div_euclid(PER_OCTAVE)) * OCTAVE_FRACTIONS[k.rem_euclid(PER_OCTAVE) as usize]
}

/// 2^exponent, exactly: built from its bits, since `powi` promises no precision.
fn power_of_two(exponent: i32) -> f64 {
    let biased = (exponent + 1023).clamp(1, 2046);
    f64::from_bits((biased as u64) << 52)
}

/// Bits below a normalised value's top bit that pick its segment of the octave.
const SEGMENT_BITS: u32 = 4;
const SEGMENTS: usize = 1 << SEGMENT_BITS;

/// One sixteenth of an octave, as seen by [`bucket_index`].
#[derive(Clone, Copy)]
struct Segment {
    /// How many of [`NANOS_THRESHOLDS`] lie below the segment.
    thresholds_below: u32,
    /// The threshold inside the segment, or `u64::MAX` (which no value exceeds) if none.
    threshold_inside: u64,
}

/// [`NANOS_THRESHOLDS`] sorted into the sixteen equal segments of an octave. Neighbouring
/// thresholds are 2^(1/8) apart, wider than a segment (1/16 of the octave's start), so a segment
/// holds at most one: the construction fails to compile otherwise.
const SEGMENT_TABLE: [Segment; SEGMENTS] = {
    let width = 1u64 << (63 - SEGMENT_BITS);
    let mut table = [Segment { thresholds_below: 0, threshold_inside: u64::MAX }; SEGMENTS];
    let mut s = 0;
    while s < SEGMENTS {
        let start = (1u64 << 63) + s as u64 * width;
        let mut i = 0;
        while i < NANOS_THRESHOLDS.len() {
            let threshold = NANOS_THRESHOLDS[i];
            if threshold < start {
                table[s].thresholds_below += 1;
            } else if threshold - start < width {
                assert!(table[s].threshold_inside == u64::MAX, "two thresholds in one segment");
                table[s].threshold_inside = threshold;
            }
            i += 1;
        }
        s += 1;
    }
    table
};

/// The fine bucket that a duration of `nanos` nanoseconds falls into.
///
/// Integer-only and branch-free: a leading-zero count, a shift, one table entry and one
/// comparison (the table says how many of the octave's eight thresholds lie below the value's
/// sixteenth of the octave, and which one, if any, lies inside it). This is on the client's
/// hot path; [`NANOS_THRESHOLDS`] defines the result.
#[inline]
pub fn bucket_index(nanos: u64) -> usize {
    // 0 and 1 ns both belong to the underflow bucket; 1 has a top bit.
    let nanos = nanos.max(1);
    let octave = 63 - nanos.leading_zeros() as i32;
    let normalised = nanos << (63 - octave);
    let segment = &SEGMENT_TABLE[(normalised >> (63 - SEGMENT_BITS)) as usize & (SEGMENTS - 1)];
    let within_octave = segment.thresholds_below as i32 + i32::from(normalised > segment.threshold_inside);
    let k = PER_OCTAVE * octave - NANOS_OFFSET + within_octave;
    // At or below MIN_INDEX: the underflow bucket 0; above MAX_INDEX: the overflow bucket.
    (k - MIN_INDEX).clamp(0, BUCKETS as i32 - 1) as usize
}

/// Upper bound of fine bucket `index`, in seconds (`+Inf` for the overflow bucket).
pub fn upper_bound_seconds(index: usize) -> f64 {
    if index + 1 >= BUCKETS {
        f64::INFINITY
    } else {
        boundary_seconds(MIN_INDEX + index as i32)
    }
}

/// Lower bound (exclusive) of fine bucket `index`, in seconds (0 for the underflow bucket).
pub fn lower_bound_seconds(index: usize) -> f64 {
    if index == 0 {
        0.0
    } else {
        upper_bound_seconds(index - 1)
    }
}

/// Estimates quantile `q` (0..=1) in seconds from fine bucket counts.
///
/// Returns the geometric midpoint of the bucket holding the observation of rank `ceil(q*n)`,
/// which is within 4.4% of that observation for every finite bucket. `None` when empty.
pub fn quantile(buckets: &[u64], q: f64) -> Option<f64> {
    // Saturating: counts read from a corrupt segment may be anything, and this must not panic.
    let total = buckets.iter().fold(0u64, |sum, &b| sum.saturating_add(b));
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut cumulative = 0u64;
    for (index, &count) in buckets.iter().enumerate() {
        cumulative = cumulative.saturating_add(count);
        if cumulative >= rank {
            let lower = lower_bound_seconds(index);
            let upper = upper_bound_seconds(index);
            return Some(if index == 0 {
                upper
            } else if upper.is_infinite() {
                lower
            } else {
                (lower * upper).sqrt()
            });
        }
    }
    None
}

/// Smallest classic bucket boundary emitted (as `k`): 2^-14 s, about 61 us.
pub const CLASSIC_MIN_INDEX: i32 = -112;
/// Largest finite classic bucket boundary emitted (as `k`): 128 s.
pub const CLASSIC_MAX_INDEX: i32 = MAX_INDEX;

/// Classic buckets per power of two: 1, 2, 4 or 8, the divisors of [`PER_OCTAVE`], so that
/// every classic boundary is a fine one and [`coarsen`] is exact. Checked once, when made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolution(u8);

impl Resolution {
    /// Every supported resolution, coarsest first.
    pub const ALL: [Resolution; 4] = [Resolution(1), Resolution(2), Resolution(4), Resolution(8)];
    /// 4 buckets per power of two: PromQL's `histogram_quantile` within about 19%.
    pub const DEFAULT: Resolution = Resolution(4);
    /// The supported values, for messages.
    pub const SUPPORTED: &'static str = "1, 2, 4 or 8";
    /// The segment's own resolution: one classic bucket per fine bucket.
    pub const FINEST: Resolution = Resolution(PER_OCTAVE as u8);

    /// The resolution of `buckets_per_octave` classic buckets per power of two.
    ///
    /// # Errors
    /// Not one of 1, 2, 4 or 8.
    pub fn new(buckets_per_octave: u32) -> Result<Self, UnsupportedResolution> {
        Self::ALL
            .into_iter()
            .find(|r| u32::from(r.0) == buckets_per_octave)
            .ok_or(UnsupportedResolution(buckets_per_octave))
    }

    /// Classic buckets per power of two.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }

    /// Fine buckets in one classic bucket.
    fn step(self) -> i32 {
        PER_OCTAVE / i32::from(self.0)
    }

    /// Classic buckets [`coarsen`] makes at this resolution, `+Inf` included.
    pub fn classic_buckets(self) -> usize {
        ((CLASSIC_MAX_INDEX - CLASSIC_MIN_INDEX) / self.step()) as usize + 2
    }
}

impl Default for Resolution {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A resolution other than 1, 2, 4 or 8 buckets per power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedResolution(pub u32);

impl std::fmt::Display for UnsupportedResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unsupported bucket resolution {}: must be {}", self.0, Resolution::SUPPORTED)
    }
}

impl std::error::Error for UnsupportedResolution {}

/// One classic (cumulative) bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassicBucket {
    /// Upper bound in seconds (`+Inf` for the last).
    pub le: f64,
    /// Observations at or below `le`.
    pub cumulative: u64,
}

/// Coarsens fine bucket counts into classic cumulative buckets with `resolution` buckets per
/// power of two between 2^([`CLASSIC_MIN_INDEX`]/8) and
/// 2^([`CLASSIC_MAX_INDEX`]/8) seconds, plus `+Inf`.
///
/// Exact: every classic boundary is a fine boundary, so each cumulative count is a plain sum of
/// fine counts. The last bucket's count equals the sum of all fine buckets.
pub fn coarsen(fine: &[u64], resolution: Resolution) -> Vec<ClassicBucket> {
    let step = resolution.step();
    let mut out = Vec::with_capacity(resolution.classic_buckets());
    let mut cumulative = 0u64;
    let mut next_fine = 0usize;
    let mut k = CLASSIC_MIN_INDEX;
    while k <= CLASSIC_MAX_INDEX {
        let last_fine = (k - MIN_INDEX) as usize;
        while next_fine <= last_fine && next_fine < fine.len() {
            cumulative = cumulative.saturating_add(fine[next_fine]);
            next_fine += 1;
        }
        out.push(ClassicBucket { le: boundary_seconds(k), cumulative });
        k += step;
    }
    cumulative = fine.iter().skip(next_fine).fold(cumulative, |sum, &b| sum.saturating_add(b));
    out.push(ClassicBucket { le: f64::INFINITY, cumulative });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_eighth_roots_of_two() {
        for (j, &f) in OCTAVE_FRACTIONS.iter().enumerate() {
            let exact = 2f64.powf(j as f64 / 8.0);
            assert!((f - exact).abs() < 1e-15, "j={j}: {f} vs {exact}");
        }
    }

    #[test]
    fn nanosecond_thresholds_are_the_boundaries() {
        let delta = 8.0 * 1e9f64.log2() - f64::from(NANOS_OFFSET);
        assert!((0.0..1.0).contains(&delta));
        for (i, &t) in NANOS_THRESHOLDS.iter().enumerate() {
            let exact = 2f64.powf(63.0 + (i as f64 + delta) / 8.0);
            assert!((t as f64 / exact - 1.0).abs() < 1e-12, "threshold {i}");
        }
        assert_eq!(NANOS_THRESHOLDS[7], 1_000_000_000 << 34);
        assert!(NANOS_THRESHOLDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_value_lands_in_the_bucket_that_contains_it() {
        let mut nanos = 1u64;
        while nanos < 300_000_000_000 {
            let index = bucket_index(nanos);
            let seconds = nanos as f64 * 1e-9;
            assert!(seconds <= upper_bound_seconds(index) * (1.0 + 1e-12), "{nanos} above its bucket");
            assert!(seconds > lower_bound_seconds(index) * (1.0 - 1e-12), "{nanos} below its bucket");
            nanos = nanos + nanos / 37 + 1;
        }
    }

    /// The definition: count the thresholds below the normalised value.
    fn bucket_index_by_counting(nanos: u64) -> usize {
        if nanos == 0 {
            return 0;
        }
        let octave = 63 - nanos.leading_zeros() as i32;
        let normalised = nanos << (63 - octave);
        let within_octave = NANOS_THRESHOLDS.iter().filter(|&&t| t < normalised).count() as i32;
        let k = PER_OCTAVE * octave - NANOS_OFFSET + within_octave;
        if k <= MIN_INDEX {
            0
        } else if k > MAX_INDEX {
            BUCKETS - 1
        } else {
            (k - MIN_INDEX) as usize
        }
    }

    #[test]
    fn the_segment_table_agrees_with_counting_thresholds() {
        // Every boundary of every octave, one either side, and the segments' own edges.
        let mut values = vec![0, 1, u64::MAX];
        for shift in 0..=63u32 {
            for &t in &NANOS_THRESHOLDS {
                let value = t >> shift;
                values.extend([value.saturating_sub(1), value, value.saturating_add(1)]);
            }
            for s in 0..SEGMENTS as u64 {
                let edge = ((1u64 << 63) + (s << (63 - SEGMENT_BITS))) >> shift;
                values.extend([edge.saturating_sub(1), edge, edge + 1]);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let random_values = if cfg!(miri) { 2_000 } else { 200_000 };
        for _ in 0..random_values {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(state >> (state % 64));
        }
        for nanos in values {
            assert_eq!(bucket_index(nanos), bucket_index_by_counting(nanos), "{nanos} ns");
        }
    }

    #[test]
    fn bounds_of_the_range() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1), 0);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_index(1_000_000_000), (0 - MIN_INDEX) as usize, "1 s is the upper bound of k=0");
        assert_eq!(bucket_index(128_000_000_000), BUCKETS - 2);
        assert_eq!(bucket_index(128_000_000_001), BUCKETS - 1);
    }

    #[test]
    fn quantile_is_within_the_schema_error() {
        let mut buckets = vec![0u64; BUCKETS];
        let values: Vec<u64> = (1..=1000u64).map(|i| i * i * 997).collect();
        for &v in &values {
            buckets[bucket_index(v)] += 1;
        }
        for q in [0.5, 0.9, 0.95, 0.99] {
            let exact = values[(q * values.len() as f64).ceil() as usize - 1] as f64 * 1e-9;
            let estimate = quantile(&buckets, q).unwrap();
            assert!((estimate / exact - 1.0).abs() <= 0.045, "q={q}: {estimate} vs {exact}");
        }
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
        assert!(quantile(&[u64::MAX; BUCKETS], 0.99).is_some(), "garbage counts do not overflow");
        assert_eq!(coarsen(&[u64::MAX; BUCKETS], Resolution::new(1).unwrap()).last().unwrap().cumulative, u64::MAX);
    }

    #[test]
    fn coarsening_is_exact() {
        let mut fine = vec![0u64; BUCKETS];
        for (i, b) in fine.iter_mut().enumerate() {
            *b = (i as u64 * 7919) % 13;
        }
        let total: u64 = fine.iter().sum();
        for resolution in Resolution::ALL {
            let classic = coarsen(&fine, resolution);
            assert_eq!(classic.last().unwrap().cumulative, total);
            assert!(classic.windows(2).all(|w| w[0].le < w[1].le && w[0].cumulative <= w[1].cumulative));
            for bucket in &classic[..classic.len() - 1] {
                let expected: u64 =
                    (0..BUCKETS).filter(|&i| upper_bound_seconds(i) <= bucket.le).map(|i| fine[i]).sum();
                assert_eq!(bucket.cumulative, expected, "le={}", bucket.le);
            }
        }
        // At 4 per power of two (a boundary every 2 fine buckets) from k = -112 (2^-14 s, about
        // 61 us) to k = 56 (128 s): (56 - -112) / 2 + 1 = 85 finite bounds, and +Inf.
        let per_two = Resolution::new(4).unwrap();
        let finite = (CLASSIC_MAX_INDEX - CLASSIC_MIN_INDEX) / (PER_OCTAVE / 4) + 1;
        assert_eq!(finite, 85);
        assert_eq!(coarsen(&fine, per_two).len(), finite as usize + 1);
        assert_eq!(per_two.classic_buckets(), finite as usize + 1);
        assert_eq!(coarsen(&fine, Resolution::FINEST).len(), (CLASSIC_MAX_INDEX - CLASSIC_MIN_INDEX) as usize + 2);
    }

    #[test]
    fn only_divisors_of_the_fine_resolution_are_resolutions() {
        let supported: Vec<u32> = (0..=16).filter(|&n| Resolution::new(n).is_ok()).collect();
        assert_eq!(supported, [1, 2, 4, 8]);
        assert!(supported.iter().all(|&n| PER_OCTAVE as u32 % n == 0));
        assert_eq!(
            Resolution::new(3).unwrap_err().to_string(),
            "unsupported bucket resolution 3: must be 1, 2, 4 or 8"
        );
        assert_eq!(Resolution::default().get(), 4);
    }
}
