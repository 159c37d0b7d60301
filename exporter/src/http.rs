//! The HTTP listener: `/metrics` (in the format the scraper asks for), `/metrics.json`,
//! `/healthz` and the dashboard, served by hyper's HTTP/1 server on a single-threaded tokio
//! runtime of its own thread.
//!
//! Limits, so that careless or hostile clients cannot stop the scrapes:
//! - one request per connection, and the whole of it (reading the head, writing the answer)
//!   within [`REQUEST_DEADLINE`], however slowly the client trickles bytes;
//! - request heads above [`MAX_HEAD`] are answered 431 (by hyper);
//! - at most [`MAX_CONNECTIONS`] connections at once, each a small task rather than a thread;
//!   beyond that, new connections wait in the kernel's accept queue, none is refused;
//! - GET and HEAD only, exact-match routing over a fixed set of paths and embedded assets
//!   (nothing is read from disk, so there is no path to traverse).

use std::convert::Infallible;
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::dashboard;
use coordmetrics_report::format::negotiate::{negotiate, Exposition};
use coordmetrics_report::format::prometheus::Dialect;

/// Time a connection gets for its whole request and response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper's smallest read buffer).
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// What the server answers with; replaced after every snapshot.
#[derive(Clone, Debug, Default)]
pub struct Content {
    /// The Prometheus text (0.0.4).
    pub prometheus: Bytes,
    /// The same families as OpenMetrics text.
    pub openmetrics: Bytes,
    /// The same families as delimited protobuf, with native histograms.
    pub protobuf: Bytes,
    /// metrics.json.
    pub json: Bytes,
    /// Whether the last snapshot succeeded.
    pub healthy: bool,
    /// Why not, if not.
    pub problem: Option<String>,
}

/// Shared handle on the served content.
pub type SharedContent = Arc<RwLock<Content>>;

/// Serves `listener` on a background thread until the process exits.
///
/// # Errors
/// The runtime or the thread could not be created.
pub fn spawn(listener: TcpListener, content: SharedContent) -> io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    std::thread::Builder::new().name("coordmetrics-http".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, content).await,
                Err(error) => log::error!("http: cannot serve: {error}"),
            }
        });
    })
}

async fn serve(listener: tokio::net::TcpListener, content: SharedContent) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors or a connection reset before accept: wait a little
                // rather than spin, and keep serving.
                log::debug!("http: accept: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let content = Arc::clone(&content);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let content = content.read().map(|c| c.clone()).unwrap_or_default();
                async move { Ok::<_, Infallible>(answer(&request, &content)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_DEADLINE)
                .keep_alive(false)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(REQUEST_DEADLINE, connection).await {
                Ok(Err(error)) => log::debug!("http: {error}"),
                Err(_) => log::debug!("http: request not done within {REQUEST_DEADLINE:?}: closed"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

/// The answer to `request`, from `content`.
fn answer<B>(request: &Request<B>, content: &Content) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = match request.uri().path() {
        "/metrics" => {
            let accept = request.headers().get(ACCEPT).and_then(|value| value.to_str().ok());
            let format = negotiate(accept);
            let body = match format {
                Exposition::Text(Dialect::Prometheus) => &content.prometheus,
                Exposition::Text(Dialect::OpenMetrics) => &content.openmetrics,
                Exposition::Protobuf => &content.protobuf,
            };
            let mut response = with_type(StatusCode::OK, format.content_type(), body.clone());
            response.headers_mut().insert(VARY, HeaderValue::from_static("Accept"));
            response
        }
        "/metrics.json" if content.json.is_empty() => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "no snapshot of the segment yet\n")
        }
        "/metrics.json" => with_type(StatusCode::OK, "application/json", content.json.clone()),
        "/healthz" if content.healthy => plain(StatusCode::OK, "ok\n"),
        "/healthz" => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", content.problem.as_deref().unwrap_or("no snapshot yet")),
        ),
        path => {
            let name = if path == "/" { dashboard::INDEX } else { path.trim_start_matches('/') };
            return match dashboard::find(name) {
                Some(asset) => {
                    let mut response = with_type(StatusCode::OK, asset.content_type, Bytes::from_static(asset.bytes));
                    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    response
                }
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            };
        }
    };
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body.into())
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, accept: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(accept) = accept {
            builder = builder.header(ACCEPT, accept);
        }
        builder.body(()).unwrap()
    }

    fn content() -> Content {
        Content {
            prometheus: Bytes::from_static(b"text"),
            openmetrics: Bytes::from_static(b"om"),
            protobuf: Bytes::from_static(b"pb"),
            json: Bytes::from_static(b"{}"),
            healthy: true,
            problem: None,
        }
    }

    #[test]
    fn metrics_in_the_negotiated_format() {
        for (accept, body) in [
            (None, "text"),
            (Some("application/openmetrics-text; version=1.0.0"), "om"),
            (Some(coordmetrics_report::format::protobuf::CONTENT_TYPE), "pb"),
        ] {
            let response = answer(&request("GET", "/metrics", accept), &content());
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[VARY], "Accept");
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
            let format = negotiate(accept);
            assert_eq!(response.headers()[CONTENT_TYPE], format.content_type());
            assert_eq!(body_of(response), body);
        }
    }

    fn body_of(response: Response<Full<Bytes>>) -> String {
        use hyper::body::Body;
        let mut body = response.into_body();
        let frame =
            std::pin::Pin::new(&mut body).poll_frame(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        match frame {
            std::task::Poll::Ready(Some(Ok(frame))) => String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap(),
            _ => String::new(),
        }
    }

    #[test]
    fn statuses() {
        let cases = [
            ("GET", "/healthz", StatusCode::OK),
            ("HEAD", "/metrics.json", StatusCode::OK),
            ("GET", "/", StatusCode::OK),
            ("POST", "/metrics", StatusCode::METHOD_NOT_ALLOWED),
            ("GET", "/nowhere", StatusCode::NOT_FOUND),
            ("GET", "/../etc/passwd", StatusCode::NOT_FOUND),
            ("GET", "/%2e%2e/Cargo.toml", StatusCode::NOT_FOUND),
        ];
        for (method, path, status) in cases {
            assert_eq!(answer(&request(method, path, None), &content()).status(), status, "{method} {path}");
        }
        let unhealthy = Content { healthy: false, json: Bytes::new(), ..content() };
        assert_eq!(answer(&request("GET", "/healthz", None), &unhealthy).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer(&request("GET", "/metrics.json", None), &unhealthy).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
