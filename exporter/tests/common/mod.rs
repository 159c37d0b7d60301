//! Helpers shared by the exporter's integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `coordmetrics` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coordmetrics"))
}

/// A peer program from Debian's packages. Missing under `CI=true` is a failure; elsewhere the
/// test is skipped, loudly.
pub fn require_peer(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is required under CI=true: run scripts/install-test-deps.sh"
        );
        eprintln!("\n*** SKIPPED: {program} is not installed (scripts/install-test-deps.sh installs it) ***\n");
    }
    found
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("command timed out after {timeout:?}: {command:?}");
        }
    }
}

/// `promtool check metrics` on `text`: (exit code, combined output).
pub fn promtool_check(promtool: &Path, text: &[u8]) -> (i32, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child.stdin.take().unwrap().write_all(text).unwrap();
    let output = child.wait_with_output().unwrap();
    let mut combined = String::from_utf8_lossy(&output.stdout).into_owned();
    combined.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), combined)
}

/// The flags of `coordmetrics run` for `segment`, the two outputs and `interval`.
pub fn run_args<'a>(segment: &'a Path, prom: &'a Path, json: &'a Path, interval: &'a str) -> Vec<&'a str> {
    vec![
        "--segment",
        segment.to_str().unwrap(),
        "--prom",
        prom.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--interval",
        interval,
    ]
}

/// A running `coordmetrics run`, killed by pid when dropped.
pub struct Exporter {
    pub child: Child,
    pub address: Option<SocketAddr>,
    pub log: mpsc::Receiver<String>,
}

impl Exporter {
    /// Starts `coordmetrics run` with `args`; waits (bounded) for the listener when `--listen`
    /// is among them.
    pub fn start(args: &[&str]) -> Self {
        let mut child =
            bin().arg("run").args(args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn run");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[exporter] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut exporter = Self { child, address: None, log };
        if args.contains(&"--listen") {
            let line = exporter.wait_for_log("http://", Duration::from_secs(20));
            let address = line.split("http://").nth(1).unwrap().trim_end_matches('/').parse().unwrap();
            exporter.address = Some(address);
        }
        exporter
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Sends a signal by name (TERM, USR1, HUP, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "exporter did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(self.address.expect("started with --listen"), path)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `address`: (status, body).
pub fn http_get(address: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    http_request(address, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
}

/// Sends a raw request; returns (status, body), de-chunked.
pub fn http_request(address: SocketAddr, request: &str) -> (u16, Vec<u8>) {
    let response = http_exchange(address, request);
    (response.status, response.body)
}

/// An HTTP response as a test sees it.
pub struct Response {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends a raw request; returns the whole response.
pub fn http_exchange(address: SocketAddr, request: &str) -> Response {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = &response[split + 4..];
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_vec() };
    Response { status, head, body }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

/// A free TCP port on 127.0.0.1 (bound and released; the tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed by pid when dropped.
pub struct Guarded(pub Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `python3`, if it can import `module` (installed by scripts/install-test-deps.sh). Missing
/// under `CI=true` is a failure; elsewhere the test is skipped, loudly.
pub fn require_python_module(module: &str) -> Option<PathBuf> {
    let python = require_peer("python3")?;
    let import = format!("import {module}");
    if run_bounded(Command::new(&python).args(["-c", &import]), Duration::from_secs(60)).status.success() {
        return Some(python);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "python {module} is required under CI=true");
    eprintln!("\n*** SKIPPED: python {module} missing (scripts/install-test-deps.sh installs it) ***\n");
    None
}

/// `coordmetrics ARGS` as the first process (pid 1) of a pid namespace of its own, as in a
/// container; `None` (a loud skip) where `unshare` needs root we do not have, and a failure
/// under `CI=true`, which runs as root.
pub fn spawn_in_pid_namespace(args: &[&str]) -> Option<Guarded> {
    let works = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !works {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "unshare --pid must work under CI=true (root)");
        eprintln!("\n*** SKIPPED: unshare --pid needs root (CI runs as root) ***\n");
        return None;
    }
    let child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_coordmetrics"))
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    Some(Guarded(child))
}
