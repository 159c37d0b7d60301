//! Shared helpers of the coordmetrics integration tests.
//!
//! - [`segment`]: a private segment in a temporary directory, small capacities, byte patching;
//! - [`workload`]: the deterministic workload of `coordmetrics_exporter::workload`, which a test
//!   can both record (in threads of this process or of `cm-writer` child processes) and predict
//!   exactly, and the assertion that a snapshot shows the prediction;
//! - [`process`]: the `cm-writer` helper process with a watchdog, and a watchdog for threads;
//! - [`executor`]: a minimal `block_on` for the async API;
//! - [`rng`]: a seeded PRNG, so every run records the same thing.

pub mod executor;
pub mod process;
pub mod rng;
pub mod segment;
pub mod workload;

/// The path of the `cm-writer` helper binary, for [`process::WriterCommand::spawn`].
///
/// A macro because `CARGO_BIN_EXE_*` is only set when integration tests are compiled.
#[macro_export]
macro_rules! cm_writer {
    () => {
        env!("CARGO_BIN_EXE_cm-writer")
    };
}
