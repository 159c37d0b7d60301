//! A minimal logger to stderr (journald adds time and unit), level from `COORDMETRICS_LOG`
//! (`error`, `warn`, `info`, `debug`, `trace`; default `info`).

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("coordmetrics: {}: {}", record.level().as_str().to_lowercase(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls do nothing.
pub fn init() {
    static LOGGER: StderrLogger = StderrLogger;
    let level = std::env::var("COORDMETRICS_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
