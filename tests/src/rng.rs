//! The seeded generator of the tests: SplitMix64, shared with the exporter's sample data and
//! demo so that one implementation serves both.

pub use coordmetrics_report::sample::Rng;
