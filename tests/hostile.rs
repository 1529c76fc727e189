//! Hostile bodies against the real binary on a port-0-style free port: each is answered quickly with a
//! 4xx, and the process's peak memory stays bounded. The bound: a request holds at most
//! `--max-body-bytes` of body (8 MiB by default) plus its decoded columns, so the server's peak
//! resident memory stays under 64 MiB through all of them (it idles at ~13 MB).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use common::process::{start_server, Process};

/// The server on a free port, with a 1 s request timeout for the slow-loris case.
fn start() -> (Process, u16) {
    let logs = common::repo().join("target/hostile");
    std::fs::create_dir_all(&logs).unwrap();
    start_server("server", &["--request-timeout-ms", "1000"], &[], &logs)
}

/// Sends raw bytes (in pieces, `pause` apart) and returns the status code and how long the answer took.
fn exchange(port: u16, head: &str, body: &[u8], pieces: usize, pause: Duration) -> (u16, Duration) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let size = body.len().div_ceil(pieces.max(1)).max(1);
    for chunk in body.chunks(size) {
        // The server may answer (and close) before the body is all sent.
        if stream.write_all(chunk).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, started.elapsed())
}

fn post(port: u16, body: &[u8]) -> (u16, Duration) {
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    exchange(port, &head, body, 1, Duration::ZERO)
}

fn peak_rss_kib(server: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hostile_bodies_get_a_quick_4xx_and_memory_stays_bounded() {
    let (server, port) = start();
    let quick = Duration::from_secs(3);
    // The peak so far is the start's (the model, its parity check, the binary): what the hostile
    // bodies may add is measured from there, so the bound holds for debug and release builds.
    let at_start = peak_rss_kib(&server);

    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let columns: String = format!(
        "{{{}}}",
        (0..1_000_000)
            .map(|i| format!("\"c{i}\":[1]"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge_string = format!("{{\"year\": [\"{}\"]}}", "x".repeat(7 * 1024 * 1024));
    let beyond = br#"{"model": ["Focus"], "year": [1e400], "transmission": ["Manual"], "mileage": [1], "fuelType": ["Petrol"], "tax": [1], "mpg": [1], "engineSize": [1]}"#;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("100,000 nested arrays", nested.into_bytes(), 400),
        ("10^6 tiny columns (~12 MB)", columns.into_bytes(), 413),
        ("a 7 MiB string in a number column", huge_string.into_bytes(), 422),
        (
            "NaN and Infinity literals",
            br#"{"year": [NaN], "mpg": [Infinity]}"#.to_vec(),
            400,
        ),
        ("a number beyond f64", beyond.to_vec(), 400),
    ];
    for (what, body, status) in cases {
        let (got, took) = post(port, &body);
        assert_eq!(got, status, "{what}");
        assert!(took < quick, "{what} took {took:?}");
    }

    // A 1 GB Content-Length is refused before any of it is read.
    let head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n";
    let (got, took) = exchange(port, head, b"", 1, Duration::ZERO);
    assert_eq!(got, 413, "a 1 GB Content-Length");
    assert!(took < quick, "took {took:?}");

    // Slow loris: a body trickling in a byte at a time is cut off by the request timeout (1 s here).
    let body = br#"{"model": ["Focus"], "year": [2019]}"#;
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len() * 100
    );
    let (got, took) = exchange(port, &head, body, body.len(), Duration::from_millis(100));
    assert_eq!(got, 503, "a trickling body");
    assert!(took < quick, "took {took:?}");

    let peak = peak_rss_kib(&server);
    let added = peak.saturating_sub(at_start);
    assert!(added < 32 * 1024, "peak RSS {peak} KiB, {added} KiB over the start's");
    eprintln!("peak RSS through the hostile bodies: {peak} KiB, {added} KiB over the start's {at_start} KiB");
}
