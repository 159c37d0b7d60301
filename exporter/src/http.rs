//! A small HTTP/1.1 server for `/metrics`, `/metrics.json`, `/healthz` and the dashboard.
//!
//! Deliberately minimal: GET and HEAD only, one request per connection, request heads bounded
//! to 8 KiB and 5 seconds, at most 32 connections served at once, exact-match routing over a
//! fixed set of paths (nothing is read from disk, so there is no path to traverse).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::dashboard;
use crate::format::negotiate::{negotiate, Exposition};
use crate::format::prometheus::Dialect;

const MAX_HEAD: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 32;

/// What the server answers with; replaced after every snapshot.
#[derive(Clone, Debug, Default)]
pub struct Content {
    /// The Prometheus text (0.0.4).
    pub prometheus: Arc<Vec<u8>>,
    /// The same families as OpenMetrics text.
    pub openmetrics: Arc<Vec<u8>>,
    /// The same families as delimited protobuf, with native histograms.
    pub protobuf: Arc<Vec<u8>>,
    /// metrics.json.
    pub json: Arc<Vec<u8>>,
    /// Whether the last snapshot succeeded.
    pub healthy: bool,
    /// Why not, if not.
    pub problem: Option<String>,
}

/// Shared handle on the served content.
pub type SharedContent = Arc<RwLock<Content>>;

/// Serves `listener` on a background thread until the process exits.
pub fn spawn(listener: TcpListener, content: SharedContent) -> io::Result<std::thread::JoinHandle<()>> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("coordmetrics-http".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                let _ = respond(&mut stream, false, 503, "text/plain; charset=utf-8", &[], b"busy\n");
                continue;
            }
            let content = Arc::clone(&content);
            let finished = Arc::clone(&active);
            let spawned = std::thread::Builder::new().name("coordmetrics-http-conn".into()).spawn(move || {
                if let Err(error) = handle(&mut stream, &content) {
                    log::debug!("http: {error}");
                }
                finished.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })
}

fn handle(stream: &mut TcpStream, content: &SharedContent) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = match read_head(stream) {
        Ok(head) => head,
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            return respond(stream, false, 431, "text/plain; charset=utf-8", &[], b"request head too large\n");
        }
        Err(error) => return Err(error),
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            stream,
            false,
            405,
            "text/plain; charset=utf-8",
            &[("Allow", "GET, HEAD")],
            b"method not allowed\n",
        );
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let content = content.read().map(|c| c.clone()).unwrap_or_default();
    let no_store = [("Cache-Control", "no-store")];
    match path {
        "/metrics" => {
            let format = negotiate(header(&head, "accept"));
            let body = match format {
                Exposition::Text(Dialect::Prometheus) => &content.prometheus,
                Exposition::Text(Dialect::OpenMetrics) => &content.openmetrics,
                Exposition::Protobuf => &content.protobuf,
            };
            let headers = [("Cache-Control", "no-store"), ("Vary", "Accept")];
            respond(stream, head_only, 200, format.content_type(), &headers, body)
        }
        "/metrics.json" if content.json.is_empty() => {
            respond(stream, head_only, 503, "text/plain; charset=utf-8", &no_store, b"no snapshot of the segment yet\n")
        }
        "/metrics.json" => respond(stream, head_only, 200, "application/json", &no_store, &content.json),
        "/healthz" if content.healthy => {
            respond(stream, head_only, 200, "text/plain; charset=utf-8", &no_store, b"ok\n")
        }
        "/healthz" => {
            let body = format!("unhealthy: {}\n", content.problem.as_deref().unwrap_or("no snapshot yet"));
            respond(stream, head_only, 503, "text/plain; charset=utf-8", &no_store, body.as_bytes())
        }
        _ => {
            let name = if path == "/" { dashboard::INDEX } else { path.trim_start_matches('/') };
            match dashboard::find(name) {
                Some(asset) => {
                    respond(stream, head_only, 200, asset.content_type, &[("Cache-Control", "no-cache")], asset.bytes)
                }
                None => respond(stream, head_only, 404, "text/plain; charset=utf-8", &[], b"not found\n"),
            }
        }
    }
}

/// The value of the first header `name` (lower case) in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Reads up to the end of the request head; `InvalidData` if it exceeds [`MAX_HEAD`].
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn respond(
    stream: &mut TcpStream,
    head_only: bool,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}
