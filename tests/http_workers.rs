//! The server's worker threads on a real listener: connections dealt to every worker are all served,
//! a shutdown closes the idle ones on every worker, and the workers exit when `run` returns.
//!
//! Alone in its file, so that the threads it counts are its own server's: each test file is a
//! process of its own.

mod common;

use std::time::Duration;

use common::http::{config, example_request, listening, read_answer, worker_files, Listening, EXAMPLE_RESPONSE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xgserve::http::HttpConfig;

/// For each thread of this process named as the server names its workers, how many times it has
/// waited: a worker that has served requests waited for each of them; an idle one, once.
fn worker_waits() -> Vec<u64> {
    worker_files("status")
        .iter()
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .collect()
}

#[tokio::test]
async fn every_worker_serves_and_all_stop_with_the_server() {
    const WORKERS: usize = 3;
    let Listening {
        address, stop, server, ..
    } = listening(HttpConfig {
        workers: WORKERS,
        ..config()
    })
    .await;

    // More connections than workers, so each worker gets two or three; each asks twice.
    let request = example_request();
    let mut connections = Vec::new();
    for _ in 0..7 {
        connections.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    for _ in 0..2 {
        for stream in &mut connections {
            stream.write_all(request.as_bytes()).await.unwrap();
            let answer = read_answer(stream).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with(EXAMPLE_RESPONSE.trim()), "{answer}");
        }
    }
    let waits = worker_waits();
    assert_eq!(waits.len(), WORKERS, "{waits:?}");
    // Each worker got at least two connections of two requests: it waited for each.
    assert!(waits.iter().all(|&n| n >= 4), "a worker served nothing: {waits:?}");

    // Every connection is idle now: the shutdown closes each, on whichever worker it is.
    stop.send(()).unwrap();
    for stream in &mut connections {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0))), "an idle connection was not closed: {read:?}");
    }
    let result = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "server did not stop cleanly: {result:?}"
    );
    let waits = worker_waits();
    assert!(
        waits.is_empty(),
        "workers still running after the server stopped: {waits:?}"
    );
}
