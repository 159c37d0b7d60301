//! The HTTP listener under careless and hostile clients, over real sockets: connections that
//! trickle their request a byte at a time, and many clients at once.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{http_get, run_args, wait_until, Exporter};
use coordmetrics::Collector;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The listener's deadline for a whole request (`http::REQUEST_DEADLINE`), and a margin.
const DEADLINE_AND_MARGIN: Duration = Duration::from_secs(5 + 15);

/// An exporter serving a small segment over HTTP, its first snapshot served.
fn serve(dir: &Path) -> Exporter {
    let segment = dir.join("segment");
    let collector = Collector::open(&segment).unwrap();
    collector.coordinator("ChatCoordinator").record(Duration::from_millis(3), true);
    let (prom, json) = (dir.join("out.prom"), dir.join("metrics.json"));
    let exporter = Exporter::start(&[run_args(&segment, &prom, &json, "1h"), vec!["--listen", "127.0.0.1:0"]].concat());
    wait_until(TIMEOUT, "first snapshot served", || exporter.get("/healthz").0 == 200);
    exporter
}

/// Opens `count` connections and sends each one byte of a request every `period` until
/// dropped: the slow-loris client of issue 14.
struct Trickle {
    streams: Vec<TcpStream>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start(address: SocketAddr, count: usize, period: Duration) -> Self {
        let streams: Vec<TcpStream> = (0..count).map(|_| TcpStream::connect(address).unwrap()).collect();
        let mut writers: Vec<TcpStream> = streams.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for byte in request.iter().cycle() {
                for writer in &mut writers {
                    // Fails once the server has closed the connection: that is the point.
                    let _ = writer.write_all(&[*byte]);
                }
                let next = Instant::now() + period;
                while Instant::now() < next {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self { streams, stop, thread: Some(thread) }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn slow_connections_neither_stop_scrapes_nor_outlive_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = serve(dir.path());
    let address = exporter.address.unwrap();
    let expected = std::fs::read(dir.path().join("out.prom")).unwrap();
    let slow = Trickle::start(address, 200, Duration::from_secs(3));
    for n in 0..50 {
        let (status, body) = http_get(address, "/metrics");
        assert_eq!(status, 200, "scrape {n} under 200 slow connections");
        assert_eq!(body, expected, "scrape {n}");
    }
    // Still sending a byte every 3 s, each slow connection is closed by the server once its
    // whole request has taken longer than the deadline: a per-read timeout never would.
    for (n, stream) in slow.streams.iter().enumerate() {
        let mut stream = stream.try_clone().unwrap();
        stream.set_read_timeout(Some(DEADLINE_AND_MARGIN)).unwrap();
        let mut buffer = [0u8; 256];
        match stream.read(&mut buffer) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("slow connection {n} still open: {error}"),
        }
    }
    drop(slow);
    assert_eq!(exporter.get("/healthz").0, 200, "served after them too");
}

#[test]
fn a_hundred_concurrent_clients_are_all_served() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = serve(dir.path());
    let address = exporter.address.unwrap();
    let expected = Arc::new(std::fs::read(dir.path().join("out.prom")).unwrap());
    let clients = 100;
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (start, expected) = (Arc::clone(&start), Arc::clone(&expected));
            std::thread::spawn(move || {
                start.wait();
                let (status, body) = http_get(address, "/metrics");
                status == 200 && body == *expected
            })
        })
        .collect();
    let served = threads.into_iter().map(|t| t.join().unwrap()).filter(|&ok| ok).count();
    assert_eq!(served, clients, "every client answered in full, none refused");
}
