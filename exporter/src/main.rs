//! `coordmetrics`: the exporter sidecar and its tools.
#![forbid(unsafe_code)]

mod bench;
mod cleanup;
mod demo;
mod generate;
mod inspect;
mod run;
mod workers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser, Subcommand};
use coordmetrics::histogram::Resolution;
use coordmetrics::{SegmentOptions, SegmentReader};
use coordmetrics_exporter::config::{RunArgs, Settings};
use coordmetrics_exporter::{dashboard, logging, sink};
use coordmetrics_report::format::prometheus;
use coordmetrics_report::format::Format;
use coordmetrics_report::model::Report;
use coordmetrics_report::reporter::Reporter;
use coordmetrics_report::sample;

/// Shared-memory metrics sidecar for multi-process coordinator services.
///
/// Coordinator processes record into a lock-free shared-memory segment through the
/// `coordmetrics` client library; this program snapshots the segment and atomically rewrites a
/// Prometheus text file (for node_exporter's textfile collector) and a metrics.json (for the
/// bundled dashboard), and can serve both over HTTP on loopback.
#[derive(Parser, Debug)]
#[command(name = "coordmetrics", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sidecar: snapshot the segment every interval and rewrite the output files.
    ///
    /// Signals: TERM and INT write a final snapshot and exit 0; HUP reloads the configuration;
    /// USR1 takes a snapshot now. A missing or corrupt segment is logged and reported in the
    /// health metrics (coordmetrics_up 0) while the previous good files are kept.
    Run(RunArgs),
    /// Take one snapshot and print it (or write it atomically with --output): for cron and
    /// systemd timers.
    Snapshot(SnapshotArgs),
    /// Run a synthetic workload of the 13 Victor coordinators through the real client in
    /// several processes, with the exporter and the dashboard on a loopback URL.
    Demo(demo::DemoArgs),
    /// Write deterministic sample data (marked as demo data) for trying the dashboard or
    /// dashboards built on the Prometheus names.
    SampleData(SampleArgs),
    /// The original scripts/generate_coordinator_metrics.py, with its flags: export the
    /// segment, the sample data (--sample-data) or a benchmark of the 13 coordinators
    /// (--benchmark --iterations N) to --output in --format.
    Generate(generate::GenerateArgs),
    /// Drive the real client from threads in several processes: ns/op, ops/s, and a check
    /// that the segment's totals equal the operations performed.
    Bench(bench::BenchArgs),
    /// Show a segment's header, capacities, writers and coordinators.
    Inspect(inspect::InspectArgs),
    /// Remove a stale segment: one with no live writer, or with --force one with live
    /// writers, of another layout version or damaged. Never a file that is not a segment.
    Cleanup(cleanup::CleanupArgs),
    /// Write the dashboard's static files into a directory, to serve beside a metrics.json.
    Dashboard(DashboardArgs),
    /// Check a configuration file and print the settings it results in.
    CheckConfig(CheckConfigArgs),
    /// Write the man page and shell completions (for packaging).
    #[command(hide = true)]
    GenerateAssets(GenerateArgs),
    /// One worker process of `demo`.
    #[command(hide = true)]
    DemoWorker(demo::WorkerArgs),
}

/// `--format`: one of [`Format::NAMES`], with clap's list of possible values in help and errors.
fn format_parser() -> impl TypedValueParser<Value = Format> {
    clap::builder::PossibleValuesParser::new(Format::NAMES).try_map(|name| name.parse::<Format>())
}

/// A report of one snapshot of `segment` taken now, as a fresh exporter would make it.
fn one_report(segment: &Path) -> anyhow::Result<Report> {
    let reader = SegmentReader::open(segment, &SegmentOptions::default())?;
    Ok(Reporter::single(&reader.snapshot()))
}

#[derive(clap::Args, Debug)]
struct SnapshotArgs {
    /// Segment to read.
    #[arg(long, env = "COORDMETRICS_SEGMENT", default_value = coordmetrics::DEFAULT_SEGMENT_PATH, value_name = "PATH")]
    segment: PathBuf,
    /// Output format.
    #[arg(long, default_value = "prometheus", value_parser = format_parser())]
    format: Format,
    /// Where to write: `-` or /dev/stdout for standard output, else a file replaced atomically
    /// (temporary file beside it, then rename). A symbolic link is followed and the file it
    /// points to is replaced in its own directory, so the link stays; a directory, FIFO,
    /// socket or device is never replaced (error).
    #[arg(long, short, value_name = "PATH", default_value = "-")]
    output: PathBuf,
    /// Prefix of the coordinator metric names.
    #[arg(long, env = "COORDMETRICS_NAMESPACE", default_value = coordmetrics_report::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Also emit the original collector's names (promtool's linter flags their _ms unit).
    #[arg(long)]
    compat_names: bool,
    /// Classic histogram buckets per power of two: 1, 2, 4 or 8.
    #[arg(long, default_value_t = Resolution::DEFAULT, value_parser = parse_resolution)]
    bucket_resolution: Resolution,
}

#[derive(clap::Args, Debug)]
struct SampleArgs {
    /// File to write, replaced like `snapshot --output` (`-` for standard output).
    #[arg(long, short, value_name = "PATH")]
    output: PathBuf,
    /// Output format.
    #[arg(long, default_value = "json", value_parser = format_parser())]
    format: Format,
}

#[derive(clap::Args, Debug)]
struct DashboardArgs {
    /// Directory to write the dashboard into (created if needed).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
}

#[derive(clap::Args, Debug)]
struct CheckConfigArgs {
    /// Configuration file.
    #[arg(long, env = "COORDMETRICS_CONFIG", default_value = coordmetrics_exporter::config::DEFAULT_CONFIG, value_name = "PATH")]
    config: PathBuf,
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Directory for coordmetrics.1 and completions/.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
}

fn parse_resolution(text: &str) -> Result<Resolution, String> {
    let value: u32 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    Resolution::new(value).map_err(|_| format!("use {}", Resolution::SUPPORTED))
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("coordmetrics: error: {error:#}");
            error.downcast_ref::<cleanup::Refused>().map_or(ExitCode::FAILURE, cleanup::Refused::exit_code)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let settings = Settings::resolve(&args)?;
            run::run(settings, Some(args), &run::Limits::default())
        }
        Command::Snapshot(args) => snapshot(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::DemoWorker(args) => demo::worker(&args),
        Command::SampleData(args) => {
            let report = sample::sample_report();
            sink::write_atomic(&args.output, |w| {
                args.format.write(w, &report, &prometheus::PrometheusOptions::default())
            })
            .with_context(|| format!("cannot write {}", args.output.display()))?;
            // On standard error: the data itself may be on standard output (`--output -`).
            eprintln!("sample data (marked as demo data) written to {}", args.output.display());
            Ok(())
        }
        Command::Generate(args) => generate::generate(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Cleanup(args) => cleanup::cleanup(&args),
        Command::Dashboard(args) => {
            dashboard::write_to(&args.output).with_context(|| format!("cannot write {}", args.output.display()))?;
            println!(
                "dashboard written to {}: serve that directory with a metrics.json beside coordinator_performance.html",
                args.output.display()
            );
            Ok(())
        }
        Command::CheckConfig(args) => {
            let settings = Settings::resolve(&RunArgs { config: Some(args.config.clone()), ..RunArgs::default() })?;
            println!("{} is valid; effective settings:\n{settings:#?}", args.config.display());
            Ok(())
        }
        Command::GenerateAssets(args) => generate_assets(&args),
    }
}

fn snapshot(args: &SnapshotArgs) -> anyhow::Result<()> {
    let report = one_report(&args.segment)?;
    let options = prometheus::PrometheusOptions {
        namespace: args.namespace.clone(),
        compat_names: args.compat_names,
        bucket_resolution: args.bucket_resolution,
    };
    if !prometheus::is_valid_namespace(&options.namespace) {
        anyhow::bail!("invalid namespace {:?}", options.namespace);
    }
    let render = |w: &mut dyn Write| args.format.write(w, &report, &options);
    sink::write_atomic(&args.output, render).with_context(|| format!("cannot write {}", args.output.display()))
}

/// Writes `text` to standard output (a closed pipe is no error).
fn print_stdout(text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    Ok(sink::write_stdout(text.as_ref())?)
}

fn generate_assets(args: &GenerateArgs) -> anyhow::Result<()> {
    let completions = args.output.join("completions");
    std::fs::create_dir_all(&completions)?;
    let command = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(args.output.join("coordmetrics.1"), page)?;
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), "coordmetrics", &completions)?;
    }
    println!("man page and completions written to {}", args.output.display());
    Ok(())
}
