//! The seeded generator of the tests: SplitMix64, shared with coordmetrics-report's sample data and
//! demo so that one implementation serves both.

pub use coordmetrics_report::sample::Rng;
