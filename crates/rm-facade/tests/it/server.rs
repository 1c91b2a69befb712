//! The `/metrics` endpoint: status codes, shutdown, and a manager that is gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use rm_facade::ResourceManager;

use crate::one_node;

fn request(addr: SocketAddr, text: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_endpoint_answers_by_method_and_path() {
    let manager = ResourceManager::from_config(one_node(4, "")).unwrap();
    let server = manager
        .serve_metrics_on("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr();
    let ok = request(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("rm_utilization_ratio"), "{ok}");
    let head = request(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    // HEAD: the length of the body, and no body.
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("a content length");
    assert!(length.parse::<usize>().unwrap() > 100, "{head}");
    let post = request(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
    let garbage = request(addr, "GARBAGE\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert!(request(addr, "GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(request(addr, "GET / HTTP/1.1\r\n\r\n").contains("/metrics"));
    // A client that sends nothing and hangs up does not stop the endpoint.
    drop(TcpStream::connect(addr).unwrap());
    assert!(request(addr, "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    // Once the manager is gone, scrapes get 503 (after the last render's short freshness).
    drop(manager);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(request(addr, "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
}

/// Times one scrape, from connect to the end of the answer.
fn scrape(addr: SocketAddr) -> (std::time::Duration, String) {
    let started = std::time::Instant::now();
    let answer = request(addr, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    (started.elapsed(), answer)
}

/// A client sending one byte every half second never holds the endpoint: a scraper polling
/// meanwhile is answered at once every time, and the slow client is dropped.
#[test]
fn a_slow_loris_client_does_not_hold_the_endpoint() {
    let manager = ResourceManager::from_config(one_node(4, "")).unwrap();
    let server = manager
        .serve_metrics_on("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr();
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let started = std::time::Instant::now();
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        started.elapsed()
    });
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..15 {
        let (took, answer) = scrape(addr);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        slowest = slowest.max(took);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        slowest < std::time::Duration::from_millis(500),
        "slowest scrape {slowest:?}"
    );
    // The slow client was cut off by the head timeout, long before it finished trickling.
    let trickled = slow.join().unwrap();
    assert!(
        trickled < std::time::Duration::from_secs(20),
        "{trickled:?}"
    );
}

/// Two hundred scrapes at once are all answered, within a bound, sharing renders.
#[test]
fn two_hundred_concurrent_scrapes_are_all_answered() {
    let manager = ResourceManager::from_config(one_node(4, "")).unwrap();
    let server = manager
        .serve_metrics_on("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr();
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || scrape(addr)))
        .collect();
    for client in clients {
        let (_, answer) = client.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("rm_utilization_ratio"));
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_address_in_use_is_a_typed_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let manager = ResourceManager::from_config(one_node(4, "")).unwrap();
    let err = manager
        .serve_metrics_on(taken.local_addr().unwrap())
        .unwrap_err();
    assert!(matches!(err, rm_facade::Error::Serve { .. }), "{err}");
    // The operating system's error is kept as the source, not flattened into the message.
    let source = std::error::Error::source(&err).expect("a source");
    assert_eq!(
        source
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind),
        Some(std::io::ErrorKind::AddrInUse),
        "{source}"
    );
}

#[test]
fn without_prometheus_there_is_nothing_to_render() {
    let manager =
        ResourceManager::from_config(one_node(4, "[metrics]\nprometheus = false")).unwrap();
    assert!(matches!(
        manager.render(),
        Err(rm_facade::Error::PrometheusDisabled)
    ));
    // The dashboard still works from the collector.
    manager.collect().unwrap();
    assert_eq!(manager.dashboard().utilization_by_type.len(), 1);
}

/// The one test in this binary that installs a global recorder: an explicit opt-in, after
/// which the host's own `metrics` macros land in the manager's exporter; a second install
/// is refused.
#[test]
fn installing_the_exporter_globally_is_an_explicit_opt_in() {
    let manager = ResourceManager::from_config(one_node(4, "")).unwrap();
    let exporter = manager.exporter().unwrap();
    exporter.install_global().unwrap();
    metrics::counter!("host_jobs_total").increment(3);
    assert!(exporter.render().contains("host_jobs_total 3"));
    assert!(matches!(
        exporter.install_global(),
        Err(rm_facade::Error::GlobalRecorderTaken)
    ));
}
