//! The segment's fine buckets as a Prometheus native histogram: a schema, a zero bucket, and
//! the populated positive buckets as spans and deltas.
//!
//! The fine buckets are schema 3 already (`coordmetrics::histogram`): bucket `k` covers
//! `(2^((k-1)/8), 2^(k/8)]` seconds. A lower schema `s` merges them exactly, since by
//! Prometheus's definition bucket `i` of schema `s-1` is buckets `2i-1` and `2i` of schema `s`:
//! fine bucket `k` belongs to bucket `ceil(k / 2^(3-s))` of schema `s`.

use coordmetrics::histogram::{self, BUCKETS, MAX_INDEX, MIN_INDEX, SCHEMA};

/// Lowest schema offered: one bucket per power of two.
pub const MIN_SCHEMA: i32 = 0;

/// How fine the native histogram is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeOptions {
    /// Schema, from [`SCHEMA`] (the segment's own, 8 buckets per power of two) down to
    /// [`MIN_SCHEMA`].
    pub schema: i32,
    /// Lower the schema until a series has at most this many populated buckets (as
    /// client_golang's `NativeHistogramMaxBucketNumber`); 0 for no limit. [`MIN_SCHEMA`] is
    /// kept even if it has more.
    pub max_buckets: u32,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self { schema: SCHEMA, max_buckets: 0 }
    }
}

/// A run of consecutive buckets: `offset` from the end of the previous span (from 0 for the
/// first), `length` buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Gap before the span, in buckets.
    pub offset: i32,
    /// Buckets in the span.
    pub length: u32,
}

/// A native histogram's buckets, as the exposition carries them.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeBuckets {
    /// Schema of the positive buckets.
    pub schema: i32,
    /// Upper bound of the zero bucket, seconds: the segment's underflow bound.
    pub zero_threshold: f64,
    /// Observations in the zero bucket: the segment's underflow count.
    pub zero_count: u64,
    /// Runs of populated buckets.
    pub spans: Vec<Span>,
    /// Each populated bucket's count minus the previous one's (the first: its count).
    pub deltas: Vec<i64>,
}

/// The native histogram of the fine bucket counts `fine` (as a snapshot holds them).
///
/// Observations above the segment's last finite bound (128 s) are only known to be above it;
/// they are put in the bucket that starts there, as the classic histogram puts them in `+Inf`:
/// a quantile that lands there reads as 128 s to one bucket width above, never lower.
pub fn native_buckets(fine: &[u64], options: NativeOptions) -> NativeBuckets {
    let mut schema = options.schema.clamp(MIN_SCHEMA, SCHEMA);
    let mut buckets = merged(fine, schema);
    while options.max_buckets > 0 && buckets.len() > options.max_buckets as usize && schema > MIN_SCHEMA {
        schema -= 1;
        buckets = merged(fine, schema);
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut deltas = Vec::with_capacity(buckets.len());
    let mut previous: Option<(i32, u64)> = None;
    for &(index, count) in &buckets {
        match previous {
            Some((last, _)) if index == last + 1 => spans.last_mut().expect("a span is open").length += 1,
            Some((last, _)) => spans.push(Span { offset: index - last - 1, length: 1 }),
            None => spans.push(Span { offset: index, length: 1 }),
        }
        let previous_count = previous.map_or(0, |(_, count)| count);
        // Wrapping: counts read from a corrupt segment may be anything, and this must not
        // panic; real counts stay far below 2^63.
        deltas.push((count as i64).wrapping_sub(previous_count as i64));
        previous = Some((index, count));
    }
    NativeBuckets {
        schema,
        zero_threshold: histogram::upper_bound_seconds(0),
        zero_count: fine.first().copied().unwrap_or(0),
        spans,
        deltas,
    }
}

/// The populated buckets of schema `schema` as (index, count), ascending: the fine buckets above
/// the underflow one merged `2^(3 - schema)` to one.
fn merged(fine: &[u64], schema: i32) -> Vec<(i32, u64)> {
    let width = 1 << (SCHEMA - schema);
    let mut out: Vec<(i32, u64)> = Vec::new();
    for (position, &count) in fine.iter().enumerate().take(BUCKETS).skip(1) {
        if count == 0 {
            continue;
        }
        // The overflow bucket (position BUCKETS - 1) becomes k = MAX_INDEX + 1, the bucket
        // starting at the last finite bound.
        let k = (MIN_INDEX + position as i32).min(MAX_INDEX + 1);
        let index = (k + width - 1).div_euclid(width);
        match out.last_mut() {
            Some((last, total)) if *last == index => *total = total.saturating_add(count),
            _ => out.push((index, count)),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Expands spans and deltas back into (index, count) pairs.
    pub(crate) fn expand(native: &NativeBuckets) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        let mut index = 0;
        let mut count = 0i64;
        let mut deltas = native.deltas.iter();
        for span in &native.spans {
            // The first offset counts from bucket 0, the others from the end of the previous span.
            index += span.offset;
            for _ in 0..span.length {
                count += deltas.next().expect("a delta per bucket");
                out.push((index, u64::try_from(count).expect("counts are not negative")));
                index += 1;
            }
        }
        assert!(deltas.next().is_none(), "as many deltas as buckets");
        out
    }

    /// The upper bound of bucket `index` of `schema`, seconds.
    fn upper_bound(schema: i32, index: i32) -> f64 {
        2f64.powf(f64::from(index) / f64::from(1 << schema))
    }

    fn sample_fine() -> Vec<u64> {
        let mut fine = vec![0u64; BUCKETS];
        fine[0] = 4; // underflow
        for nanos in [1_500u64, 1_600, 2_000_000, 2_100_000, 2_200_000, 90_000_000, 1_000_000_000] {
            fine[histogram::bucket_index(nanos)] += 1;
        }
        fine[BUCKETS - 1] = 2; // above 128 s
        fine
    }

    #[test]
    fn schema_3_carries_every_fine_bucket_at_its_bounds() {
        let fine = sample_fine();
        let native = native_buckets(&fine, NativeOptions::default());
        assert_eq!(native.schema, 3);
        assert_eq!(native.zero_count, 4);
        assert_eq!(native.zero_threshold, histogram::upper_bound_seconds(0));
        let expanded = expand(&native);
        let populated: Vec<(usize, u64)> =
            fine.iter().enumerate().skip(1).filter(|(_, &c)| c > 0).map(|(i, &c)| (i, c)).collect();
        assert_eq!(expanded.len(), populated.len());
        for (&(index, count), &(position, fine_count)) in expanded.iter().zip(&populated) {
            assert_eq!(count, fine_count);
            if position < BUCKETS - 1 {
                let bound = histogram::upper_bound_seconds(position);
                assert!((upper_bound(3, index) / bound - 1.0).abs() < 1e-12, "bucket {index} vs fine {position}");
            } else {
                assert_eq!(index, MAX_INDEX + 1, "the overflow starts at the last finite bound");
            }
        }
        assert_eq!(native.spans[0].offset, MIN_INDEX + histogram::bucket_index(1_500) as i32);
        let total: u64 = expanded.iter().map(|&(_, c)| c).sum::<u64>() + native.zero_count;
        assert_eq!(total, fine.iter().sum::<u64>(), "no observation lost");
    }

    #[test]
    fn lower_schemas_merge_exactly() {
        let mut fine = vec![0u64; BUCKETS];
        for (i, count) in fine.iter_mut().enumerate() {
            *count = (i as u64 * 7919) % 5;
        }
        for schema in MIN_SCHEMA..=SCHEMA {
            let native = native_buckets(&fine, NativeOptions { schema, max_buckets: 0 });
            assert_eq!(native.schema, schema);
            let expanded = expand(&native);
            assert!(expanded.windows(2).all(|w| w[0].0 < w[1].0), "ascending, distinct");
            // Each merged bucket holds exactly the finite fine buckets inside its bounds.
            for &(index, count) in &expanded {
                let (lower, upper) = (upper_bound(schema, index - 1), upper_bound(schema, index));
                let inside: u64 = (1..BUCKETS - 1)
                    .filter(|&p| {
                        let bound = histogram::upper_bound_seconds(p);
                        bound > lower * (1.0 + 1e-12) && bound <= upper * (1.0 + 1e-12)
                    })
                    .map(|p| fine[p])
                    .sum();
                let width = 1 << (SCHEMA - schema);
                let overflow = if index == (MAX_INDEX + width).div_euclid(width) { fine[BUCKETS - 1] } else { 0 };
                assert_eq!(count, inside + overflow, "schema {schema} bucket {index}");
            }
            let total: u64 = expanded.iter().map(|&(_, c)| c).sum::<u64>() + native.zero_count;
            assert_eq!(total, fine.iter().sum::<u64>());
        }
    }

    #[test]
    fn the_cap_lowers_the_schema_until_the_buckets_fit() {
        let mut fine = vec![1u64; BUCKETS];
        fine[0] = 0;
        // 217 populated fine buckets: schema 2 has 109, 1 has 55, 0 has 28.
        let cases = [(0, 3), (217, 3), (216, 2), (109, 2), (108, 1), (55, 1), (30, 0), (5, 0)];
        for (max_buckets, schema) in cases {
            let native = native_buckets(&fine, NativeOptions { schema: SCHEMA, max_buckets });
            assert_eq!(native.schema, schema, "cap {max_buckets}");
            assert!(max_buckets == 0 || schema == MIN_SCHEMA || expand(&native).len() <= max_buckets as usize);
        }
    }

    #[test]
    fn garbage_counts_do_not_panic() {
        let mut fine = vec![u64::MAX; BUCKETS];
        fine[7] = 0;
        fine[8] = 1;
        fine[9] = 1 << 63; // i64::MIN as a count: minus the previous 1 overflows unless wrapped
        for schema in MIN_SCHEMA..=SCHEMA {
            for max_buckets in [0, 3] {
                let native = native_buckets(&fine, NativeOptions { schema, max_buckets });
                assert_eq!(native.deltas.len(), native.spans.iter().map(|s| s.length as usize).sum::<usize>());
            }
        }
    }

    #[test]
    fn gaps_open_new_spans_and_deltas_follow_counts() {
        let mut fine = vec![0u64; BUCKETS];
        let first = 100;
        fine[first] = 5;
        fine[first + 1] = 3;
        fine[first + 4] = 9;
        let native = native_buckets(&fine, NativeOptions::default());
        let k = MIN_INDEX + first as i32;
        assert_eq!(native.spans, vec![Span { offset: k, length: 2 }, Span { offset: 2, length: 1 }]);
        assert_eq!(native.deltas, vec![5, -2, 6]);
        let empty = native_buckets(&[0; BUCKETS], NativeOptions::default());
        assert!(empty.spans.is_empty() && empty.deltas.is_empty() && empty.zero_count == 0);
    }
}
