//! Watchdogs: the `cm-writer` child process, killed by pid if it outlives its deadline, and a
//! deadline for work done in threads of the test process.

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use coordmetrics::Capacities;

use crate::segment::capacities_arg;
use crate::workload::Workload;

/// How long any child or watched piece of work may take before the test fails. Generous:
/// the tests run unoptimised on shared machines, and no test asserts on speed.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The command line of one `cm-writer` run (see `src/bin/cm-writer.rs` for the modes).
#[derive(Clone, Debug)]
pub struct WriterCommand {
    args: Vec<String>,
}

impl WriterCommand {
    /// `cm-writer MODE` recording its share of `workload` into the segment at `segment`
    /// (created with `capacities` if it does not exist yet).
    pub fn new(mode: &str, segment: &Path, capacities: &Capacities, workload: &Workload) -> Self {
        let command = Self { args: vec![mode.to_owned()] };
        command
            .arg("--segment", segment.display())
            .arg("--capacities", capacities_arg(capacities))
            .arg("--processes", workload.processes)
            .arg("--threads", workload.threads)
            .arg("--iterations", workload.iterations)
    }

    /// Adds `--flag value`.
    pub fn arg(mut self, flag: &str, value: impl Display) -> Self {
        self.args.extend([flag.to_owned(), value.to_string()]);
        self
    }

    /// Starts the helper binary at `exe` (pass `cm_writer!()`).
    pub fn spawn(&self, exe: &str) -> Writer {
        Writer::spawn(exe, &self.args)
    }
}

/// A running `cm-writer`, its stdout lines readable with a timeout. Killed (SIGKILL, by pid)
/// and reaped if it is dropped while still running, so a failing test leaves no orphan.
#[derive(Debug)]
pub struct Writer {
    child: Child,
    lines: Receiver<String>,
    status: Option<ExitStatus>,
}

impl Writer {
    /// Starts `exe` with `args`; stdout is captured line by line, stderr is inherited.
    pub fn spawn(exe: &str, args: &[String]) -> Self {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {exe}: {error}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, status: None }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints; panics if none comes within [`DEADLINE`].
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                panic!("cm-writer {} printed nothing for {DEADLINE:?}", self.pid())
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait();
                panic!("cm-writer {} exited ({status}) without printing", self.pid())
            }
        }
    }

    /// Reads lines until one starts with `prefix`, and returns the rest of it.
    pub fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let line = self.next_line();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Waits for the child to exit; kills it and panics if it runs past [`DEADLINE`].
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.child.try_wait().expect("waiting for cm-writer") {
                Some(status) => {
                    self.status = Some(status);
                    return status;
                }
                None if Instant::now() >= deadline => {
                    self.kill();
                    panic!("cm-writer {} still running after {DEADLINE:?}", self.pid());
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Waits for the child and asserts that it exited successfully.
    pub fn wait_success(&mut self) {
        let status = self.wait();
        assert!(status.success(), "cm-writer {} failed: {status}", self.pid());
    }

    /// Sends SIGKILL to the child's pid and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if self.status.is_none() {
            // `Child::kill` sends SIGKILL to this child's pid only; it is ours and not yet
            // reaped, so the pid cannot have been reused.
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("reaping cm-writer"));
        }
        self.status.expect("reaped")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `work` on a new thread and returns its result; panics if it takes longer than
/// [`DEADLINE`] (a deadlock in the code under test fails the test instead of hanging it),
/// and re-raises the thread's panic if it panicked.
pub fn within_deadline<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    match receiver.recv_timeout(DEADLINE) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => panic!("the test did not finish within {DEADLINE:?}"),
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it returns"),
        },
    }
}

/// Whether this machine lets a test run processes in pid namespaces of their own
/// (`unshare --pid --fork --mount-proc`, which needs root), as containers run them. Under
/// `CI=true` a machine that cannot is a failure, not a skip; elsewhere the caller skips, and
/// this says so loudly.
pub fn pid_namespaces_available(test: &str) -> bool {
    let works = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !works {
        skip_unless_ci(test, "`unshare --pid --fork --mount-proc`");
    }
    works
}

/// Says loudly that `test` is skipped because `what` needs root here; under `CI=true`, which
/// runs as root, fails instead: a skipped test in CI would be a hidden failure.
pub fn skip_unless_ci(test: &str, what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {what} does not work here (CI runs as root, where it must)"
    );
    eprintln!("SKIPPED {test}: {what} needs root; run the suite as root to test it");
}

impl WriterCommand {
    /// Starts the helper binary at `exe` as the first process (pid 1) of a new pid namespace
    /// with its own `/proc`, as a container's process runs; killing it kills the namespace.
    pub fn spawn_in_pid_namespace(&self, exe: &str) -> Writer {
        let mut args: Vec<String> =
            ["--pid", "--fork", "--mount-proc", "--kill-child", exe].iter().map(|a| a.to_string()).collect();
        args.extend(self.args.iter().cloned());
        Writer::spawn("unshare", &args)
    }
}
