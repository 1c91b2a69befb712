//! [`MetricsServer`]: `/metrics` over HTTP/1.1 on hyper, in a small runtime of its own.
//!
//! Why hyper: a scrape endpoint faces slow clients, many clients at once and clients that
//! give up; hyper's HTTP/1 server (with tokio's I/O and timers) parses requests to the
//! standard, answers malformed ones with `400`, times out a request head that does not arrive
//! (`header_read_timeout`), and serves each connection as its own task, so one slow client
//! never holds the others. What is ours is small: the routes, a deadline on the whole
//! exchange, a bound on connections, and one render shared by the scrapes that arrive while it
//! is fresh (rendering walks every series, and is done on a blocking thread so the listener
//! keeps answering).
//!
//! Nothing here is visible in the public API: [`MetricsServer`] is a handle, and the runtime
//! is private to the server's thread.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use crate::periodic::Periodic;

/// Produces the body of a scrape, or `None` when there is nothing to serve any more.
pub(crate) type Render = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one exchange (request and response) may take in all.
const DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 512;
/// How long a render is served again to later scrapes: scrapers a second apart each see
/// fresh figures, a burst of them shares one render.
const FRESH: Duration = Duration::from_millis(250);
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running `/metrics` endpoint. Dropping it (or [`MetricsServer::shutdown`]) stops it and
/// joins its threads.
#[derive(Debug)]
#[must_use = "dropping the server stops it: keep the handle for as long as it should serve"]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    upkeep: Option<Periodic>,
    serving: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (before returning, so a bind error is the caller's) and serves `render`
    /// at `/metrics`; runs `upkeep` every `interval`.
    pub(crate) fn start(
        addr: SocketAddr,
        render: Render,
        upkeep: Arc<dyn Fn() + Send + Sync>,
        interval: Duration,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let serving = std::thread::Builder::new()
            .name("rm-metrics-http".into())
            .spawn(move || runtime.block_on(serve(listener, render, stopped)))?;
        let mut server = MetricsServer {
            addr,
            stop: Some(stop),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.upkeep.take();
        if let Some(thread) = self.serving.take() {
            let _ = thread.join();
        }
    }
}

/// The last render and when it was made.
type Cached = Option<(Instant, Arc<Option<String>>)>;

/// Accepts connections until `stopped`, each served as a task of its own.
async fn serve(listener: TcpListener, render: Render, mut stopped: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let cache: Arc<tokio::sync::Mutex<Cached>> = Arc::new(tokio::sync::Mutex::new(None));
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        // A failed accept affects that client only.
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (render, cache) = (render.clone(), cache.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                answer(request, render.clone(), cache.clone())
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // The whole exchange has a deadline; a client that trickles its request or stops
            // reading the answer is dropped with its connection.
            let _ = tokio::time::timeout(DEADLINE, connection).await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn answer(
    request: Request<Incoming>,
    render: Render,
    cache: Arc<tokio::sync::Mutex<Cached>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    // hyper leaves the body out of an answer to HEAD and keeps its length.
    Ok(match request.uri().path() {
        "/metrics" => match rendered(&render, &cache).await.as_ref() {
            Some(body) => {
                let mut response = Response::new(Full::new(Bytes::from(body.clone())));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(METRICS_TYPE),
                );
                response
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, "stopped\n"),
        },
        "/" => text(StatusCode::OK, "resource manager metrics: /metrics\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

/// The render for a scrape: the last one while fresh, else a new one, made once however many
/// scrapes wait for it, on a blocking thread.
async fn rendered(render: &Render, cache: &tokio::sync::Mutex<Cached>) -> Arc<Option<String>> {
    let mut cached = cache.lock().await;
    if let Some((at, body)) = cached.as_ref()
        && at.elapsed() < FRESH
    {
        return body.clone();
    }
    let render = render.clone();
    let body = Arc::new(
        tokio::task::spawn_blocking(move || render())
            .await
            .unwrap_or(None),
    );
    *cached = Some((Instant::now(), body.clone()));
    body
}
