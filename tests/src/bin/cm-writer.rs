//! The writer process of the multi-process tests: records one process's share of a
//! [`Workload`] into a segment through the real client.
//!
//! ```text
//! cm-writer MODE --segment PATH --capacities C,E,W,R
//!           --processes P --threads T --iterations I [--process N] [--wait-for FILE]
//!           [--memory BYTES]
//! ```
//!
//! Modes:
//! - `workload`: records process N's share, prints `segment-id ID` and exits 0;
//! - `hold`: records process N's share, sets the memory gauge of the first coordinator, starts
//!   a tracker, prints `ready` and sleeps until it is killed;
//! - `fork`: records process 0's share, forks; the child records process 2's share while the
//!   parent records process 1's; the parent prints `forked CHILD_PID` once the child exited 0;
//! - `hits`: records `--iterations` cache hits of the first coordinator from one thread, prints
//!   `ready dropped N` (the updates its collector counted as dropped) and sleeps until killed;
//! - `spin`: records cache hits of the first coordinator without end, printing `dropped N`
//!   (its collector's count) after every 10,000, until killed.
//!
//! With `--wait-for FILE` the process spins until FILE exists before opening the segment, so
//! that a test can release many processes at once. Failures exit 2 with a message on stderr.
//!
//! `cm-writer lock-byte PATH OFFSET` takes the kernel's open-file-description lock on byte
//! OFFSET of the file at PATH, as a live owner of that slot would, prints `locked` and sleeps
//! until it is killed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use coordmetrics::{Collector, SegmentOptions};
use coordmetrics_tests::segment::{options, parse_capacities};
use coordmetrics_tests::workload::{Handles, Workload, NAMES};

struct Args {
    mode: String,
    segment: PathBuf,
    options: SegmentOptions,
    workload: Workload,
    process: u32,
    wait_for: Option<PathBuf>,
    memory: u64,
}

fn parse() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().ok_or("missing mode")?;
    let mut flags = HashMap::new();
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(flag, value);
    }
    let text = |name: &str| flags.get(name).cloned().ok_or_else(|| format!("missing {name}"));
    let number = |name: &str, default: Option<u64>| match flags.get(name) {
        Some(value) => value.parse::<u64>().map_err(|e| format!("{name}: {e}")),
        None => default.ok_or_else(|| format!("missing {name}")),
    };
    let small =
        |name: &str, default: Option<u64>| u32::try_from(number(name, default)?).map_err(|e| format!("{name}: {e}"));
    let capacities = text("--capacities")?;
    let capacities = parse_capacities(&capacities).ok_or("--capacities: expected C,E,W,R")?;
    Ok(Args {
        mode,
        segment: text("--segment")?.into(),
        options: options(capacities, Duration::from_secs(10)),
        workload: Workload {
            processes: small("--processes", None)?,
            threads: small("--threads", None)?,
            iterations: small("--iterations", None)?,
        },
        process: small("--process", Some(0))?,
        wait_for: flags.get("--wait-for").map(PathBuf::from),
        memory: number("--memory", Some(0))?,
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, path, offset] = &argv[..] {
        if mode == "lock-byte" {
            if let Err(message) = hold_lock(path, offset) {
                eprintln!("cm-writer: {message}");
                std::process::exit(2);
            }
        }
    }
    if let Err(message) = parse().and_then(|args| run(&args)) {
        eprintln!("cm-writer: {message}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if let Some(go) = &args.wait_for {
        while !go.exists() {
            std::thread::yield_now();
        }
    }
    let collector = Collector::open_with(&args.segment, &args.options).map_err(|error| format!("open: {error}"))?;
    let handles = Handles::resolve(&collector, &NAMES);
    match args.mode.as_str() {
        "workload" => {
            args.workload.run_process(&handles, args.process);
            let id = collector.segment_info().map_or(0, |info| info.segment_id);
            println!("segment-id {id}");
            Ok(())
        }
        "hold" => {
            args.workload.run_process(&handles, args.process);
            handles.coordinator(0).set_memory_bytes(args.memory);
            let _in_flight = handles.tracked().track();
            println!("ready");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "fork" => fork(args, &handles),
        "hits" => {
            let coordinator = handles.coordinator(0);
            for _ in 0..args.workload.iterations {
                coordinator.cache_hit();
            }
            println!("ready dropped {}", collector.dropped_updates());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "spin" => loop {
            let coordinator = handles.coordinator(0);
            for _ in 0..10_000 {
                coordinator.cache_hit();
            }
            let _timed = coordinator.track();
            println!("dropped {}", collector.dropped_updates());
        },
        other => Err(format!("unknown mode {other}")),
    }
}

fn hold_lock(path: &str, offset: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let offset: libc::off_t = offset.parse().map_err(|e| format!("offset: {e}"))?;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("{path}: {e}"))?;
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: offset,
        l_len: 1,
        l_pid: 0,
    };
    // SAFETY:
    // - the descriptor is open for the duration of the call and `lock` is a valid, initialised
    //   `flock` that `F_OFD_SETLK` only reads.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } != 0 {
        return Err(format!("lock: {}", std::io::Error::last_os_error()));
    }
    println!("locked");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn fork(args: &Args, handles: &Handles) -> Result<(), String> {
    args.workload.run_process(handles, 0);
    // SAFETY:
    // - the scoped threads of `run_process` have been joined, so only this thread runs Rust
    //   code; the child only records through the client (whose fork hook is installed) and
    //   leaves with `_exit`, never returning into the parent's stack.
    let child = unsafe { libc::fork() };
    match child {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            args.workload.run_process(handles, 2);
            // SAFETY:
            // - `_exit` ends the child without running the parent's atexit handlers or
            //   flushing its copy of the parent's stdio buffers.
            unsafe { libc::_exit(0) }
        }
        child => {
            args.workload.run_process(handles, 1);
            let mut status = 0;
            // SAFETY:
            // - `child` is our own child process and `status` a valid, writable int.
            let reaped = unsafe { libc::waitpid(child, &mut status, 0) };
            if reaped != child || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                return Err(format!("forked child {child} failed: status {status:#x}"));
            }
            println!("forked {child}");
            Ok(())
        }
    }
}
