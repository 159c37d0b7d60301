//! A small HTTP load generator for the exporter's listener (loopback only), used by
//! `bench/http-load.sh`: `clients` threads each GET a path in a loop, a new connection per
//! request as Prometheus's scrapes over a closed connection do, while `slow` more connections
//! trickle a request one byte every 3 s (reopened when the server closes them, so that many are
//! always open). Prints requests per second, p50, p99 and the failures.
//!
//! `cargo run --release --example http_load -- ADDRESS PATH CLIENTS SECONDS SLOW`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, path, clients, seconds, slow] = args.as_slice() else {
        eprintln!("usage: http_load ADDRESS PATH CLIENTS SECONDS SLOW");
        std::process::exit(2);
    };
    let address: SocketAddr = address.parse().expect("ADDRESS: an ip:port");
    assert!(address.ip().is_loopback(), "loopback addresses only");
    let clients: usize = clients.parse().expect("CLIENTS");
    let duration = Duration::from_secs_f64(seconds.parse().expect("SECONDS"));
    let slow: usize = slow.parse().expect("SLOW");

    let stop = Arc::new(AtomicBool::new(false));
    let trickler = (slow > 0).then(|| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || trickle(address, slow, &stop))
    });
    // Let the slow connections settle in before measuring.
    std::thread::sleep(Duration::from_secs(if slow > 0 { 1 } else { 0 }));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n");
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                while started.elapsed() < duration {
                    let begun = Instant::now();
                    match get(address, &request) {
                        Some(200) => latencies.push(begun.elapsed()),
                        _ => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for thread in threads {
        let (mine, failed) = thread.join().expect("client thread");
        latencies.extend(mine);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(trickler) = trickler {
        trickler.join().expect("trickle thread");
    }
    latencies.sort();
    let at = |q: f64| latencies.get(((q * latencies.len() as f64).ceil() as usize).saturating_sub(1)).copied();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "clients {clients:>3}  slow {slow:>3}  requests/s {:>8.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  ok {}  failed {failures}",
        latencies.len() as f64 / elapsed,
        ms(at(0.5)),
        ms(at(0.99)),
        ms(latencies.last().copied()),
        latencies.len(),
    );
}

/// One request on a new connection; the status, or `None` if it failed.
fn get(address: SocketAddr, request: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(10)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let head = std::str::from_utf8(response.get(..12)?).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}

/// Keeps `count` connections sending one byte of a request every 3 s until `stop`.
fn trickle(address: SocketAddr, count: usize, stop: &AtomicBool) {
    let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut streams: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    for byte in request.iter().cycle() {
        for slot in &mut streams {
            if slot.is_none() {
                *slot = TcpStream::connect(address).ok();
            }
            if let Some(stream) = slot {
                if stream.write_all(&[*byte]).is_err() {
                    // Closed by the server: open another one next round.
                    *slot = None;
                }
            }
        }
        let next = Instant::now() + Duration::from_secs(3);
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
