//! `coordmetrics generate`: the original `scripts/generate_coordinator_metrics.py`, with its
//! flags, for existing cron lines and systemd units. Three modes: export the segment as it is
//! (no mode flag), the deterministic sample data (`--sample-data`), or the 13 coordinators
//! driven through the real client (`--benchmark --iterations N`).

use std::path::PathBuf;

use anyhow::Context;
use coordmetrics::{Capacities, Collector, SegmentOptions};
use coordmetrics_exporter::sink;
use coordmetrics_report::format::prometheus::PrometheusOptions;
use coordmetrics_report::format::Format;
use coordmetrics_report::generator::run_benchmark;
use coordmetrics_report::model::Report;
use coordmetrics_report::sample;

use crate::{format_parser, one_report};

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Output file (its directory is created if needed).
    #[arg(long, short, default_value = "docs/dashboard/metrics.json", value_name = "PATH")]
    output: PathBuf,
    /// Output format; prometheus includes the original collector's names (--compat-names).
    #[arg(long, short, default_value = "json", value_parser = format_parser())]
    format: Format,
    /// Execute each of the 13 Victor coordinators --iterations times through the real client,
    /// in a private temporary segment, and export that.
    #[arg(long, short, conflicts_with = "sample_data")]
    benchmark: bool,
    /// Executions of each coordinator with --benchmark.
    #[arg(long, short, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Write the deterministic sample data (marked as demo data).
    #[arg(long, short)]
    sample_data: bool,
    /// Show the benchmark's progress and the busiest coordinators.
    #[arg(long, short)]
    verbose: bool,
    /// Segment to export when neither --benchmark nor --sample-data is given.
    #[arg(long, env = "COORDMETRICS_SEGMENT", default_value = coordmetrics::DEFAULT_SEGMENT_PATH, value_name = "PATH")]
    segment: PathBuf,
}

pub fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let report = if args.sample_data {
        sample::sample_report()
    } else if args.benchmark {
        benchmark(args.iterations, args.verbose)?
    } else {
        one_report(&args.segment)?
    };
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let options = PrometheusOptions { compat_names: true, ..PrometheusOptions::default() };
    sink::write_atomic(&args.output, |w| args.format.write(w, &report, &options))
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "{} executions of {} coordinators ({} failed) written to {}",
        report.overall.executions,
        report.coordinators.len(),
        report.overall.errors,
        args.output.display()
    );
    if args.verbose {
        let mut busiest: Vec<_> = report.coordinators.iter().collect();
        busiest.sort_by_key(|c| std::cmp::Reverse(c.totals.executions));
        for coordinator in busiest.iter().take(5) {
            println!("  {}: {} executions", coordinator.totals.name, coordinator.totals.executions);
        }
    }
    Ok(())
}

/// The report of a benchmark run in a private segment, which is removed afterwards: like the
/// original's fresh collector, the output holds the benchmark's executions only.
fn benchmark(iterations: u32, verbose: bool) -> anyhow::Result<Report> {
    let dir = std::env::temp_dir().join(format!("coordmetrics-generate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let segment = dir.join("segment");
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 16, events: 8, writers: 4, errors: 64 },
        ..SegmentOptions::default()
    };
    let report = Collector::open_with(&segment, &options)
        .with_context(|| format!("cannot create the benchmark segment {}", segment.display()))
        .and_then(|collector| {
            run_benchmark(&collector, iterations, |iteration| {
                if verbose && iteration % 10 == 0 {
                    println!("  iteration {}/{iterations}", iteration + 1);
                }
            });
            one_report(&segment)
        });
    let _ = coordmetrics::remove_segment(&segment);
    let _ = std::fs::remove_dir(&dir);
    report
}
