//! Arbitrary bytes as a segment file: opening, snapshotting, reporting and formatting must
//! return errors or output, never panic, hang or touch memory outside the mapping.
#![no_main]

use std::time::Duration;

use coordmetrics::histogram::Resolution;
use coordmetrics::{OwnerPolicy, SegmentOptions, SegmentReader};
use coordmetrics_report::format::native::NativeOptions;
use coordmetrics_report::format::{json, model, prometheus, protobuf};
use coordmetrics_report::reporter::Reporter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("coordmetrics-fuzz-{}", std::process::id()));
    std::fs::write(&path, data).expect("temporary segment file");
    let options =
        SegmentOptions { open_timeout: Duration::ZERO, owners: OwnerPolicy::Any, ..SegmentOptions::default() };
    if let Ok(reader) = SegmentReader::open(&path, &options) {
        let snapshot = reader.snapshot();
        let report = Reporter::single(&snapshot);
        let options = prometheus::PrometheusOptions::default();
        prometheus::write_report(&mut Vec::new(), &report, &options).expect("in memory");
        // The native histogram of garbage bucket counts: schema 0 with a cap, the most merging.
        let native = NativeOptions { schema: 0, max_buckets: 4 };
        let families = model::families(&report, &options);
        protobuf::write_families(&mut Vec::new(), &families, options.bucket_resolution, native).expect("in memory");
        protobuf::write_families(
            &mut Vec::new(),
            &families,
            Resolution::new(1).expect("supported"),
            NativeOptions::default(),
        )
        .expect("in memory");
        json::write_report(&mut Vec::new(), &report).expect("in memory");
    }
});
