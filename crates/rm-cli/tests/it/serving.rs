//! `rmctl simulate --metrics-addr`: the address is announced once bound (with the port it
//! got), and `--keep-serving` serves the replay's final state until the process is stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// Stops the serving process however the test ends (it serves until stopped).
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_finished_replay_keeps_serving_its_final_state() {
    let child = Command::new(env!("CARGO_BIN_EXE_rmctl"))
        .args([
            "simulate",
            "--quiet",
            "--metrics-addr",
            "127.0.0.1:0",
            "--keep-serving",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Stop(child);
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let mut announced = Vec::new();
    let url = loop {
        let line = lines.next().expect("rmctl says where it serves").unwrap();
        announced.push(line.clone());
        if let Some(rest) = line.strip_prefix("serving the final state at http://") {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // The first announcement names the bound port, not port 0.
    let first = announced
        .iter()
        .find(|l| l.starts_with("serving live metrics at http://"))
        .expect("announced before the replay");
    assert!(!first.contains("127.0.0.1:0/"), "{first}");
    let mut stream = TcpStream::connect(&url).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    drop(child);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("rm_grants_total"), "{answer}");
}

#[test]
fn keep_serving_needs_an_address() {
    let output = Command::new(env!("CARGO_BIN_EXE_rmctl"))
        .args(["simulate", "--quiet", "--keep-serving"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--keep-serving needs --metrics-addr")
    );
}
