//! [`MetricsServer`]: `/metrics` over HTTP/1.1 on a std thread, with periodic upkeep.
//!
//! Scrapes are rare (every few seconds) and small, so one thread answers them in turn; a
//! client that does not send its request within the read timeout is dropped, so it cannot
//! hold the endpoint. No async runtime is needed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::periodic::Periodic;

/// Produces the body of a scrape, or `None` when there is nothing to serve any more.
pub(crate) type Render = Arc<dyn Fn() -> Option<String> + Send + Sync>;

const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8 * 1024;
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running `/metrics` endpoint. Dropping it (or [`MetricsServer::shutdown`]) stops it and
/// joins its threads.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    upkeep: Option<Periodic>,
    serving: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `render` at `/metrics`; runs `upkeep` every `interval`.
    pub(crate) fn start(
        addr: SocketAddr,
        render: Render,
        upkeep: Arc<dyn Fn() + Send + Sync>,
        interval: Duration,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let serving = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("rm-metrics-http".into())
                .spawn(move || serve(&listener, &stop, &*render))?
        };
        let mut server = MetricsServer {
            addr,
            stop,
            upkeep: None,
            serving: Some(serving),
        };
        // On failure the server is dropped, which stops the serving thread.
        server.upkeep = Some(Periodic::start("rm-metrics-upkeep", interval, move || {
            upkeep()
        })?);
        Ok(server)
    }

    /// The address it listens on (with the port the system chose when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the threads.
    pub fn shutdown(self) {}
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.upkeep.take();
        // Wake the blocking accept; if the connection fails the listener is gone already.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.serving.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: &TcpListener,
    stop: &AtomicBool,
    render: &(dyn Fn() -> Option<String> + Send + Sync),
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A failed accept or a broken client affects that scrape only.
        if let Ok(stream) = stream {
            let _ = answer(stream, render);
        }
    }
}

/// Reads the request head (up to the blank line) and answers it.
fn answer(
    mut stream: TcpStream,
    render: &(dyn Fn() -> Option<String> + Send + Sync),
) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => match render() {
            Some(body) => {
                let body = if method == "HEAD" {
                    String::new()
                } else {
                    body
                };
                respond(&mut stream, "200 OK", CONTENT_TYPE, &body)
            }
            None => respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                "stopped\n",
            ),
        },
        ("GET" | "HEAD", "/") => respond(
            &mut stream,
            "200 OK",
            "text/plain; charset=utf-8",
            "resource manager metrics: /metrics\n",
        ),
        ("GET" | "HEAD", _) => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
