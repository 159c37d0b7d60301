//! The Prometheus protobuf exposition: length-delimited `io.prometheus.client.MetricFamily`
//! messages, the only format (in Prometheus 2.x) that carries native histograms.
//!
//! The latency histogram carries both representations in one message: the native buckets of
//! [`native`](super::native) (schema, zero bucket, spans and deltas) for a scraper with native
//! histograms enabled, and the classic cumulative buckets, as in the text format, for one
//! without. Everything else is the same families as the text ([`model`](super::model)).
//!
//! The `--compat-names` histogram in milliseconds is classic only: a native bucket's bounds
//! are powers of `2^(2^-schema)` of the unit, and the segment's fine buckets are those of
//! seconds, which in milliseconds (a factor of 1000, no power of two) are not.

use std::io::{self, Write};

use coordmetrics::histogram::{self, Resolution};
use prost::Message;

use super::client_model::{Bucket, BucketSpan, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use super::model::{Family, HistogramUnit, Kind, Value};
use super::native::{native_buckets, NativeOptions};

/// What a scraper sends in `Accept` to ask for this format, and the Content-Type of the answer.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Writes `families` as delimited protobuf, classic buckets at `resolution` per power of two
/// and native buckets as `native` says.
///
/// # Errors
/// Only those of `out`.
pub fn write_families(
    out: &mut dyn Write,
    families: &[Family],
    resolution: Resolution,
    native: NativeOptions,
) -> io::Result<()> {
    let mut buffer = Vec::new();
    for family in families {
        buffer.clear();
        let message = MetricFamily {
            name: Some(format!("{}{}", family.name, family.kind.suffix())),
            help: Some(family.help.into()),
            r#type: Some(match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            } as i32),
            metric: family
                .samples
                .iter()
                .map(|sample| metric(family.kind, sample.label, sample.value, resolution, native))
                .collect(),
        };
        message.encode_length_delimited(&mut buffer).map_err(io::Error::other)?;
        out.write_all(&buffer)?;
    }
    Ok(())
}

fn metric(
    kind: Kind,
    label: Option<(&str, &str)>,
    value: Value,
    resolution: Resolution,
    native: NativeOptions,
) -> Metric {
    let label = label
        .map(|(name, value)| LabelPair { name: Some(name.into()), value: Some(value.into()) })
        .into_iter()
        .collect();
    let mut metric = Metric { label, ..Metric::default() };
    match (kind, value) {
        (_, Value::Histogram { buckets, sum, unit }) => {
            metric.histogram = Some(histogram(buckets, sum, unit, resolution, native));
        }
        (Kind::Counter, value) => metric.counter = Some(Counter { value: Some(value.as_f64()) }),
        (_, value) => metric.gauge = Some(Gauge { value: Some(value.as_f64()) }),
    }
    metric
}

fn histogram(fine: &[u64], sum: f64, unit: HistogramUnit, resolution: Resolution, options: NativeOptions) -> Histogram {
    let classic = histogram::coarsen(fine, resolution);
    let count = classic.last().map_or(0, |b| b.cumulative);
    let mut out = Histogram {
        sample_count: Some(count),
        sample_sum: Some(sum),
        // The +Inf bucket is optional in this format (the count is its value): left out.
        bucket: classic
            .iter()
            .filter(|b| b.le.is_finite())
            .map(|b| Bucket { cumulative_count: Some(b.cumulative), upper_bound: Some(b.le * unit.per_second()) })
            .collect(),
        ..Histogram::default()
    };
    if unit == HistogramUnit::Seconds {
        let native = native_buckets(fine, options);
        out.schema = Some(native.schema);
        out.zero_threshold = Some(native.zero_threshold);
        out.zero_count = Some(native.zero_count);
        out.positive_span = native
            .spans
            .iter()
            .map(|span| BucketSpan { offset: Some(span.offset), length: Some(span.length) })
            .collect();
        out.positive_delta = native.deltas;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::model::Sample;
    use crate::format::native::{tests::expand, NativeBuckets, Span};
    use coordmetrics::histogram::BUCKETS;

    /// Decodes every delimited message of `bytes`.
    fn decode(mut bytes: &[u8]) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(MetricFamily::decode_length_delimited(&mut bytes).expect("a delimited MetricFamily"));
        }
        out
    }

    fn fine() -> Vec<u64> {
        let mut fine = vec![0u64; BUCKETS];
        fine[0] = 3;
        for (nanos, times) in [(5_000u64, 2), (5_200, 1), (40_000_000, 7), (45_000_000, 1), (2_000_000_000, 4)] {
            fine[histogram::bucket_index(nanos)] += times;
        }
        fine[BUCKETS - 1] = 1;
        fine
    }

    fn families(fine: &[u64]) -> Vec<Family<'_>> {
        vec![
            Family {
                name: "x_executions".into(),
                help: "Executions.",
                kind: Kind::Counter,
                samples: vec![Sample { label: Some(("coordinator", "A\"b")), value: Value::Unsigned(19) }],
            },
            Family {
                name: "x_in_flight".into(),
                help: "In flight.",
                kind: Kind::Gauge,
                samples: vec![Sample { label: None, value: Value::Signed(-1) }],
            },
            Family {
                name: "x_duration_seconds".into(),
                help: "Latency.",
                kind: Kind::Histogram,
                samples: vec![Sample {
                    label: Some(("coordinator", "A")),
                    value: Value::Histogram { buckets: fine, sum: 9.5, unit: HistogramUnit::Seconds },
                }],
            },
        ]
    }

    #[test]
    fn counters_and_gauges_decode_as_written() {
        let fine = fine();
        let mut out = Vec::new();
        write_families(&mut out, &families(&fine), Resolution::new(4).unwrap(), NativeOptions::default()).unwrap();
        let decoded = decode(&out);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0].name.as_deref(), Some("x_executions_total"));
        assert_eq!(decoded[0].r#type, Some(MetricType::Counter as i32));
        let counter = &decoded[0].metric[0];
        assert_eq!(counter.label[0].value.as_deref(), Some("A\"b"));
        assert_eq!(counter.counter.as_ref().unwrap().value, Some(19.0));
        assert_eq!(decoded[1].r#type, Some(MetricType::Gauge as i32));
        assert!(decoded[1].metric[0].label.is_empty());
        assert_eq!(decoded[1].metric[0].gauge.as_ref().unwrap().value, Some(-1.0));
    }

    #[test]
    fn the_histogram_carries_native_and_classic_buckets() {
        let fine = fine();
        for schema in 0..=3 {
            let options = NativeOptions { schema, max_buckets: 0 };
            let mut out = Vec::new();
            write_families(&mut out, &families(&fine), Resolution::new(2).unwrap(), options).unwrap();
            let family = &decode(&out)[2];
            assert_eq!(family.r#type, Some(MetricType::Histogram as i32));
            let h = family.metric[0].histogram.as_ref().unwrap();
            assert_eq!(h.sample_count, Some(fine.iter().sum()));
            assert_eq!(h.sample_sum, Some(9.5));
            // Classic: the text format's buckets but +Inf, which the count stands for.
            let classic = histogram::coarsen(&fine, Resolution::new(2).unwrap());
            assert_eq!(h.bucket.len(), classic.len() - 1);
            for (bucket, expected) in h.bucket.iter().zip(&classic) {
                assert_eq!(
                    (bucket.upper_bound, bucket.cumulative_count),
                    (Some(expected.le), Some(expected.cumulative))
                );
            }
            // Native: the spans and deltas decode to the fine buckets merged to the schema.
            let decoded = NativeBuckets {
                schema: h.schema.unwrap(),
                zero_threshold: h.zero_threshold.unwrap(),
                zero_count: h.zero_count.unwrap(),
                spans: h
                    .positive_span
                    .iter()
                    .map(|s| Span { offset: s.offset.unwrap(), length: s.length.unwrap() })
                    .collect(),
                deltas: h.positive_delta.clone(),
            };
            assert_eq!(decoded, native_buckets(&fine, options));
            assert_eq!(decoded.schema, schema);
            assert_eq!(decoded.zero_count, 3, "the underflow bucket is the zero bucket");
            assert_eq!(decoded.zero_threshold, histogram::upper_bound_seconds(0));
            // native.rs proves the merging; here: nothing lost between the segment and the wire.
            let expanded: u64 = expand(&decoded).iter().map(|&(_, count)| count).sum();
            assert_eq!(expanded + decoded.zero_count, fine.iter().sum::<u64>(), "schema {schema}");
        }
    }

    #[test]
    fn the_milliseconds_histogram_is_classic_only() {
        let fine = fine();
        let mut families = families(&fine);
        families[2].samples[0].value =
            Value::Histogram { buckets: &fine, sum: 9500.0, unit: HistogramUnit::Milliseconds };
        let mut out = Vec::new();
        write_families(&mut out, &families, Resolution::new(2).unwrap(), NativeOptions::default()).unwrap();
        let h = decode(&out)[2].metric[0].histogram.clone().unwrap();
        assert_eq!((h.sample_count, h.sample_sum), (Some(fine.iter().sum()), Some(9500.0)));
        let classic = histogram::coarsen(&fine, Resolution::new(2).unwrap());
        for (bucket, expected) in h.bucket.iter().zip(&classic) {
            assert_eq!(
                (bucket.upper_bound, bucket.cumulative_count),
                (Some(expected.le * 1e3), Some(expected.cumulative))
            );
        }
        // No schema and no zero threshold: Prometheus reads it as a classic histogram.
        assert_eq!((h.schema, h.zero_threshold, h.zero_count), (None, None, None));
        assert!(h.positive_span.is_empty() && h.positive_delta.is_empty());
    }

    #[test]
    fn an_empty_histogram_is_still_native() {
        let empty = vec![0u64; BUCKETS];
        let mut out = Vec::new();
        write_families(&mut out, &families(&empty), Resolution::new(4).unwrap(), NativeOptions::default()).unwrap();
        let h = decode(&out)[2].metric[0].histogram.clone().unwrap();
        // Prometheus tells a native histogram by its buckets or a zero threshold above 0.
        assert!(h.zero_threshold.unwrap() > 0.0);
        assert_eq!((h.sample_count, h.zero_count), (Some(0), Some(0)));
        assert!(h.positive_span.is_empty() && h.positive_delta.is_empty());
    }
}
