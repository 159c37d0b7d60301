//! The sidecar loop: snapshot, report, render, write, serve; react to signals.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use coordmetrics::{Collector, SegmentReader, Snapshot};
use coordmetrics_exporter::config::{RunArgs, Settings};
use coordmetrics_exporter::http::{self, Content, SharedContent};
use coordmetrics_exporter::sink;
use coordmetrics_report::format::prometheus::{self, Dialect};
use coordmetrics_report::format::{json, model, protobuf};
use coordmetrics_report::model::{Health, Report};
use coordmetrics_report::reporter::Reporter;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// Extra limits for embedded use (`demo`): stop at a deadline, report the bound address.
#[derive(Default)]
pub struct Limits {
    /// Stop (after a final snapshot) at this instant.
    pub deadline: Option<Instant>,
    /// Called once the HTTP listener is bound, with its address.
    pub on_listening: Option<Box<dyn Fn(SocketAddr)>>,
    /// Called before the final snapshot, so that it counts everything the run should report
    /// (`demo` stops its workers there).
    pub before_final: Option<Box<dyn Fn()>>,
}

/// Runs until TERM/INT (or the deadline); `reload` are the flags to re-resolve on HUP.
pub fn run(settings: Settings, reload: Option<RunArgs>, limits: &Limits) -> anyhow::Result<()> {
    let (signal_tx, signals) = mpsc::channel();
    let mut signal_source = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new().name("coordmetrics-signals".into()).spawn(move || {
        for signal in signal_source.forever() {
            if signal_tx.send(signal).is_err() {
                break;
            }
        }
    })?;

    let content: SharedContent = Arc::new(RwLock::new(Content::default()));
    if let Some(address) = settings.listen {
        let listener = TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        http::spawn(listener, Arc::clone(&content))?;
        log::info!("serving /metrics, /metrics.json, /healthz and the dashboard on http://{bound}/");
        if let Some(callback) = &limits.on_listening {
            callback(bound);
        }
    }
    log::info!(
        "exporting {} every {} to {}",
        settings.segment.display(),
        humantime::format_duration(settings.interval),
        [settings.prom.as_deref(), settings.json.as_deref()]
            .iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    );

    let mut exporter = Exporter::new(settings, content);
    loop {
        let started = Instant::now();
        exporter.tick();
        let mut next = started + exporter.settings.interval;
        if let Some(deadline) = limits.deadline {
            next = next.min(deadline);
        }
        match signals.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(SIGTERM | SIGINT) => {
                log::info!("stopping: writing a final snapshot");
                final_tick(&mut exporter, limits);
                return Ok(());
            }
            Ok(SIGHUP) => match reload.as_ref().map(Settings::resolve) {
                Some(Ok(settings)) => {
                    log::info!("configuration reloaded");
                    exporter.reconfigure(settings);
                }
                Some(Err(error)) => log::error!("reload failed, keeping the previous configuration: {error:#}"),
                None => log::info!("nothing to reload"),
            },
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("signal thread stopped"),
        }
        if limits.deadline.is_some_and(|d| Instant::now() >= d) {
            final_tick(&mut exporter, limits);
            return Ok(());
        }
    }
}

fn final_tick(exporter: &mut Exporter, limits: &Limits) {
    if let Some(before_final) = &limits.before_final {
        before_final();
    }
    exporter.tick();
}

/// One exporter's state across ticks.
struct Exporter {
    settings: Settings,
    content: SharedContent,
    reader: Option<SegmentReader>,
    reporter: Reporter,
    /// Kept across ticks: an input of each report.
    health: Health,
    /// This tick's report: of this tick's snapshot, or the last data with this tick's health
    /// when the snapshot failed; `None` until a snapshot succeeds.
    report: Option<Report>,
    /// Keeps the JSON of history points already written.
    json: json::JsonWriter,
    /// History from the previous metrics.json, applied once the segment id is known.
    saved_history: Option<json::SavedDocument>,
}

impl Exporter {
    fn new(settings: Settings, content: SharedContent) -> Self {
        for path in [settings.prom.as_deref(), settings.json.as_deref()].into_iter().flatten() {
            let removed = sink::remove_stale_temp_files(path);
            if removed > 0 {
                log::info!("removed {removed} temporary files left by an earlier exporter beside {}", path.display());
            }
        }
        // Only a regular file is read back: reading a FIFO or a terminal would block.
        let saved_history = settings
            .json
            .as_deref()
            .and_then(|path| match sink::resolve(path) {
                Ok(sink::Target::File(file)) => std::fs::read(file).ok(),
                _ => None,
            })
            .and_then(|bytes| json::SavedDocument::parse(&bytes).ok());
        Self {
            reporter: Reporter::new(settings.report),
            settings,
            content,
            reader: None,
            health: Health::default(),
            report: None,
            json: json::JsonWriter::default(),
            saved_history,
        }
    }

    fn reconfigure(&mut self, settings: Settings) {
        if settings.segment != self.settings.segment {
            self.reader = None;
        }
        self.reporter.set_options(settings.report);
        self.settings = settings;
    }

    fn tick(&mut self) {
        let started = Instant::now();
        let snapshot = self.snapshot();
        self.health.snapshot_duration = started.elapsed();
        match snapshot {
            Ok(snapshot) => {
                if let Some(previous) = self.saved_history.take() {
                    if let Some(history) = previous.history_for(snapshot.info.segment_id) {
                        log::info!("restored {} history points from the previous metrics.json", history.len());
                        self.reporter.restore_history(history);
                    }
                }
                if !self.health.up && self.health.last_error.is_some() {
                    log::info!("segment {} readable again", self.settings.segment.display());
                }
                self.health.up = true;
                self.health.last_success = Some(snapshot.taken_at);
                self.health.last_error = None;
                self.report = Some(self.reporter.report(&snapshot, self.health.clone()));
            }
            Err(error) => {
                let message = format!("{error:#}");
                if self.health.last_error.as_deref() != Some(&message) {
                    log::error!("snapshot failed: {message}; keeping the previous data");
                }
                self.health.up = false;
                self.health.snapshot_errors += 1;
                self.health.last_error = Some(message);
                self.report = self.report.take().map(|last| last.with_health(self.health.clone()));
            }
        }
        self.write_outputs();
    }

    fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        if self.reader.as_ref().is_some_and(SegmentReader::is_stale) {
            log::warn!("segment {} was replaced or removed: reopening", self.settings.segment.display());
            self.reader = None;
        }
        if self.reader.is_none() {
            if self.settings.create_segment {
                // Creating through the client applies the configured capacities and mode.
                Collector::open_with(&self.settings.segment, &self.settings.segment_options)?;
            }
            self.reader = Some(SegmentReader::open(&self.settings.segment, &self.settings.segment_options)?);
        }
        // A segment truncated under the reader reads partly as zero: such a snapshot is
        // refused, never reported (counters must not go backwards).
        Ok(self.reader.as_ref().context("no segment reader")?.try_snapshot()?)
    }

    fn write_outputs(&mut self) {
        let rendered = match render(&self.settings, self.report.as_ref(), &self.health, &mut self.json) {
            Ok(rendered) => rendered,
            Err(error) => {
                log::error!("rendering failed: {error}");
                return;
            }
        };

        let mut write_problem = None;
        let mut write = |path: Option<&Path>, bytes: &[u8]| {
            let Some(path) = path else { return };
            if let Err(error) = sink::write_atomic(path, |w| w.write_all(bytes)) {
                self.health.write_errors += 1;
                let message = format!("cannot write {}: {error}", path.display());
                log::error!("{message}; the previous file is kept, retrying next interval");
                write_problem = Some(message);
            }
        };
        write(self.settings.prom.as_deref(), &rendered.prometheus);
        if !rendered.json.is_empty() {
            write(self.settings.json.as_deref(), &rendered.json);
        }
        if let Some(problem) = write_problem {
            self.health.last_error = Some(problem);
        }
        if let Ok(mut content) = self.content.write() {
            *content = Content {
                prometheus: rendered.prometheus.into(),
                openmetrics: rendered.openmetrics.into(),
                protobuf: rendered.protobuf.into(),
                json: rendered.json.into(),
                healthy: self.health.is_healthy(),
                problem: self.health.last_error.clone(),
            };
        }
    }
}

/// Every output of one tick.
#[derive(Default)]
struct Rendered {
    prometheus: Vec<u8>,
    openmetrics: Vec<u8>,
    protobuf: Vec<u8>,
    json: Vec<u8>,
}

/// Renders `report` (or only `health` when no snapshot has worked yet) in every format the
/// settings ask for.
fn render(
    settings: &Settings,
    report: Option<&Report>,
    health: &Health,
    json: &mut json::JsonWriter,
) -> std::io::Result<Rendered> {
    let families = match report {
        Some(report) => model::families(report, &settings.prometheus),
        None => model::health_families(health, settings.interval),
    };
    let resolution = settings.prometheus.bucket_resolution;
    let mut out = Rendered::default();
    prometheus::write_families(&mut out.prometheus, &families, resolution, Dialect::Prometheus)?;
    // Only the HTTP listener negotiates formats; the .prom file is always 0.0.4 text.
    if settings.listen.is_some() {
        prometheus::write_families(&mut out.openmetrics, &families, resolution, Dialect::OpenMetrics)?;
        protobuf::write_families(&mut out.protobuf, &families, resolution, settings.native)?;
    }
    if let Some(report) = report {
        json.write(&mut out.json, report)?;
    }
    Ok(out)
}
