//! `coordmetrics inspect`: what a segment holds, for a person or a script (`--json`): its
//! header, how full each table and the block pool are, the updates dropped by reason, each
//! writer slot's state and each coordinator's totals.

use std::path::PathBuf;

use coordmetrics::{SegmentOptions, SegmentReader, WriterState};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Segment to inspect.
    #[arg(long, env = "COORDMETRICS_SEGMENT", default_value = coordmetrics::DEFAULT_SEGMENT_PATH, value_name = "PATH")]
    segment: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Inspection {
    segment: String,
    layout_version: u32,
    segment_id: String,
    created: String,
    size_bytes: u64,
    capacity: Table,
    used: Table,
    dropped: Dropped,
    writers: Vec<Writer>,
    coordinators: Vec<CoordinatorRow>,
    events: Vec<(String, u64)>,
}

#[derive(Serialize)]
struct Table {
    blocks: usize,
    coordinators: usize,
    events: usize,
    writers: usize,
    errors: usize,
}

#[derive(Serialize)]
struct Dropped {
    updates: u64,
    no_writer: u64,
    no_block: u64,
    name: u64,
    blocks: u64,
    coordinators: u64,
    events: u64,
    writers: u64,
}

#[derive(Serialize)]
struct Writer {
    slot: u32,
    pid: u32,
    state: &'static str,
}

#[derive(Serialize)]
struct CoordinatorRow {
    name: String,
    executions: u64,
    errors: u64,
    cache_hits: u64,
    cache_misses: u64,
    in_flight: i64,
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let reader = SegmentReader::open(&args.segment, &SegmentOptions::default())?;
    let snapshot = reader.snapshot();
    let info = reader.info();
    let capacities = info.capacities;
    let inspection = Inspection {
        segment: info.path.display().to_string(),
        layout_version: info.layout_version,
        segment_id: format!("{:016x}", info.segment_id),
        created: coordmetrics_report::time::format(info.created),
        size_bytes: info.size,
        capacity: Table {
            blocks: snapshot.blocks_in_use.1 as usize,
            coordinators: capacities.coordinators as usize,
            events: capacities.events as usize,
            writers: capacities.writers as usize,
            errors: capacities.errors as usize,
        },
        used: Table {
            blocks: snapshot.blocks_in_use.0 as usize,
            coordinators: snapshot.coordinators.len(),
            events: snapshot.events.len(),
            writers: snapshot.writers.len(),
            errors: snapshot.errors.len(),
        },
        dropped: Dropped {
            updates: snapshot.dropped.updates,
            no_writer: snapshot.dropped.no_writer,
            no_block: snapshot.dropped.no_block,
            name: snapshot.dropped.name,
            blocks: snapshot.dropped.blocks,
            coordinators: snapshot.dropped.coordinators,
            events: snapshot.dropped.events,
            writers: snapshot.dropped.writers,
        },
        writers: snapshot
            .writers
            .iter()
            .map(|w| {
                let (pid, state) = match w.state {
                    WriterState::Active { pid } => (pid, "active"),
                    WriterState::Parked { pid } => (pid, "parked"),
                    WriterState::Dead { pid } => (pid, "dead"),
                    WriterState::Free => (0, "free"),
                };
                Writer { slot: w.slot, pid, state }
            })
            .collect(),
        coordinators: snapshot
            .coordinators
            .iter()
            .map(|c| CoordinatorRow {
                name: c.name.clone(),
                executions: c.executions,
                errors: c.errors,
                cache_hits: c.cache_hits,
                cache_misses: c.cache_misses,
                in_flight: c.in_flight,
            })
            .collect(),
        events: snapshot.events.clone(),
    };
    if args.json {
        crate::print_stdout(serde_json::to_string_pretty(&inspection)? + "\n")
    } else {
        crate::print_stdout(render_text(&inspection))
    }
}

fn render_text(i: &Inspection) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "segment       {}", i.segment);
    let _ = writeln!(
        out,
        "layout        version {}, {:.1} MiB, id {}",
        i.layout_version,
        i.size_bytes as f64 / 1048576.0,
        i.segment_id
    );
    let _ = writeln!(out, "created       {}", i.created);
    let _ = writeln!(
        out,
        "used          coordinators {}/{}, events {}/{}, writers {}/{}, errors {}/{}, blocks {}/{}",
        i.used.coordinators,
        i.capacity.coordinators,
        i.used.events,
        i.capacity.events,
        i.used.writers,
        i.capacity.writers,
        i.used.errors,
        i.capacity.errors,
        i.used.blocks,
        i.capacity.blocks
    );
    let _ = writeln!(
        out,
        "dropped       updates {} (no writer slot {}, no block {}, name refused {}), coordinator names {}, \
         event names {}, writer claims {}, block claims {}",
        i.dropped.updates,
        i.dropped.no_writer,
        i.dropped.no_block,
        i.dropped.name,
        i.dropped.coordinators,
        i.dropped.events,
        i.dropped.writers,
        i.dropped.blocks
    );
    let _ = writeln!(out, "\nwriters");
    let _ = writeln!(out, "  {:>5}  {:>8}  state", "slot", "pid");
    for w in &i.writers {
        let _ = writeln!(out, "  {:>5}  {:>8}  {}", w.slot, w.pid, w.state);
    }
    let _ = writeln!(out, "\ncoordinators");
    let _ = writeln!(
        out,
        "  {:<32} {:>12} {:>8} {:>10} {:>10} {:>9}",
        "name", "executions", "errors", "hits", "misses", "in flight"
    );
    for c in &i.coordinators {
        let _ = writeln!(
            out,
            "  {:<32} {:>12} {:>8} {:>10} {:>10} {:>9}",
            c.name.escape_debug().to_string(),
            c.executions,
            c.errors,
            c.cache_hits,
            c.cache_misses,
            c.in_flight
        );
    }
    if !i.events.is_empty() {
        let _ = writeln!(out, "\nanalytics events");
        for (name, count) in &i.events {
            let _ = writeln!(out, "  {:<32} {:>12}", name.escape_debug().to_string(), count);
        }
    }
    out
}
