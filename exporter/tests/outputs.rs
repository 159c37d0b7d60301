//! Output paths as users give them to `snapshot --output` and `run --prom/--json`: symbolic
//! links are followed and stay links, special files are never replaced, `-` and /dev/stdout
//! print (docs/FORMATS.md, "Where the files go").

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin, run_args, run_bounded, wait_until, Exporter, Guarded};
use coordmetrics::{Capacities, Collector, SegmentOptions};

const TIMEOUT: Duration = Duration::from_secs(60);
const SERIES: &str = "victor_coordinator_executions_total{coordinator=\"x\"} 1\n";

/// A segment in `dir` where coordinator "x" ran once.
fn recorded_segment(dir: &Path) -> PathBuf {
    let path = dir.join("segment");
    let options = SegmentOptions {
        capacities: Capacities { coordinators: 4, events: 4, writers: 4, errors: 4 },
        ..SegmentOptions::default()
    };
    Collector::open_with(&path, &options).unwrap().coordinator("x").record(Duration::from_millis(1), true);
    path
}

/// `coordmetrics snapshot --segment SEGMENT ARGS` in `cwd`: (exit code, stdout, stderr).
fn snapshot(cwd: &Path, segment: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let output = run_bounded(bin().current_dir(cwd).arg("snapshot").arg("--segment").arg(segment).args(args), TIMEOUT);
    (output.status.code().unwrap_or(-1), output.stdout, String::from_utf8(output.stderr).unwrap())
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn snapshot_follows_symbolic_links_which_stay_links() {
    let dir = tempfile::tempdir().unwrap();
    let segment = recorded_segment(dir.path());
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("out.prom"), "old\n").unwrap();
    std::os::unix::fs::symlink("real/out.prom", dir.path().join("out.prom")).unwrap();
    // A link to a file that does not exist yet.
    std::os::unix::fs::symlink("real/metrics.json", dir.path().join("metrics.json")).unwrap();

    for (format, name) in [("prometheus", "out.prom"), ("json", "metrics.json")] {
        let (code, stdout, stderr) = snapshot(dir.path(), &segment, &["--format", format, "--output", name]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.is_empty());
        let link = dir.path().join(name);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real").join(name), "the link is kept");
    }
    assert!(std::fs::read_to_string(real.join("out.prom")).unwrap().contains(SERIES));
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(document["overall_stats"]["total_executions"], 1);
    assert_eq!(listing(&real), ["metrics.json", "out.prom"], "no temporary file left");
    assert_eq!(listing(dir.path()), ["metrics.json", "out.prom", "real", "segment"]);
}

#[test]
fn snapshot_never_replaces_a_special_file() {
    let dir = tempfile::tempdir().unwrap();
    let segment = recorded_segment(dir.path());
    let at = |name: &str| dir.path().join(name);
    std::fs::create_dir(at("directory")).unwrap();
    assert!(Command::new("mkfifo").arg(at("fifo")).status().unwrap().success());
    let _socket = std::os::unix::net::UnixListener::bind(at("socket")).unwrap();
    std::os::unix::fs::symlink("fifo", at("link")).unwrap();
    let mut cases = vec![
        ("directory", "directory is a directory"),
        ("fifo", "fifo is a FIFO"),
        ("socket", "socket is a socket"),
        ("link", "fifo is a FIFO"),
    ];
    // A twin of /dev/null, made here so that nothing outside the test is ever at risk.
    let device = Command::new("mknod").arg(at("device")).args(["c", "1", "3"]).status().is_ok_and(|s| s.success());
    if device {
        cases.push(("device", "device is a character device"));
    } else {
        eprintln!("\n*** device case SKIPPED: mknod needs root (CI runs as root) ***\n");
    }
    let before = listing(dir.path());
    for (name, what) in &cases {
        let path = at(name);
        let (code, stdout, stderr) = snapshot(dir.path(), &segment, &["--output", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("coordmetrics: error: cannot write {}: ", path.display()))
                && stderr.contains(what)
                && stderr.contains("not a regular file: refusing to replace it"),
            "{stderr}"
        );
    }
    assert_eq!(listing(dir.path()), before, "nothing replaced, no temporary file");
    let kind = |name: &str| std::fs::symlink_metadata(at(name)).unwrap().file_type();
    assert!(kind("directory").is_dir() && kind("fifo").is_fifo() && kind("socket").is_socket());
    assert!(kind("link").is_symlink() && (!device || kind("device").is_char_device()));
}

#[test]
fn dash_and_dev_stdout_print_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let segment = recorded_segment(dir.path());
    for output in ["-", "/dev/stdout"] {
        let (code, stdout, stderr) = snapshot(dir.path(), &segment, &["--output", output]);
        assert_eq!(code, 0, "{stderr}");
        assert!(String::from_utf8(stdout).unwrap().contains(SERIES));
        let (code, stdout, stderr) = snapshot(dir.path(), &segment, &["--format", "json", "--output", output]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&stdout).unwrap()["overall_stats"]["total_executions"],
            1
        );
    }
    assert_eq!(listing(dir.path()), ["segment"], "no file named - and no temporary file");
}

#[test]
fn run_follows_links_and_counts_writes_refused_by_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let segment = recorded_segment(dir.path());
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let prom = dir.path().join("out.prom");
    std::os::unix::fs::symlink(real.join("out.prom"), &prom).unwrap();
    // A FIFO as metrics.json: never replaced, and never read back at startup (that would block).
    let fifo = dir.path().join("metrics.json");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());

    let mut exporter = Exporter::start(&run_args(&segment, &prom, &fifo, "100ms"));
    exporter.wait_for_log("is a FIFO, not a regular file", TIMEOUT);
    wait_until(TIMEOUT, "a write error counted in the .prom file behind the link", || {
        std::fs::read_to_string(real.join("out.prom"))
            .is_ok_and(|text| text.contains(SERIES) && !text.contains("coordmetrics_write_errors_total 0\n"))
    });
    exporter.signal("TERM");
    assert_eq!(exporter.wait_exit(TIMEOUT), 0);
    assert_eq!(std::fs::read_link(&prom).unwrap(), real.join("out.prom"));
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(listing(&real), ["out.prom"]);
}

#[test]
fn run_prints_each_snapshot_to_standard_output_with_dash() {
    let dir = tempfile::tempdir().unwrap();
    let segment = recorded_segment(dir.path());
    let mut child = bin()
        .current_dir(dir.path())
        .args(["run", "--prom", "-", "--json", "metrics.json", "--interval", "100ms", "--segment"])
        .arg(&segment)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = Guarded(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = 0;
    while seen < 2 {
        let line =
            lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("two snapshots printed");
        seen += usize::from(line + "\n" == SERIES);
    }
    // Stopped cleanly before looking, so that no rewrite of metrics.json is under way.
    assert!(Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap().success());
    wait_until(TIMEOUT, "the exporter's exit", || child.0.try_wait().unwrap().is_some());
    assert_eq!(listing(dir.path()), ["metrics.json", "segment"], "no file named - and no temporary file");
}
