//! Binding the workers to cores: with one worker per core of the process's affinity, each worker is
//! bound to its own core; with `pin_workers` off, or a worker count that differs, none is bound.
//! The cores are read back from `/proc`, not from the code under test, and the start-up log must
//! name them.
//!
//! Alone in its file, so that the worker threads it reads are its own server's: each test file is a
//! process of its own. One test, so that two servers never run at once.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;

use common::http::{config, example_request, listening, read_answer, worker_statuses, Listening, EXAMPLE_RESPONSE};
use common::logs::Captured;
use tokio::io::AsyncWriteExt;
use xgserve::http::HttpConfig;

/// The cores in a `Cpus_allowed_list` line of `/proc/.../status`, such as `0-1` or `0,2-3`.
fn cores_in(list: &str) -> BTreeSet<usize> {
    let mut cores = BTreeSet::new();
    for range in list.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        cores.extend(first.parse::<usize>().unwrap()..=last.parse::<usize>().unwrap());
    }
    cores
}

fn allowed_cores(status: &str) -> BTreeSet<usize> {
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    cores_in(list)
}

/// The cores each of this process's worker threads may run on.
fn worker_cores() -> Vec<BTreeSet<usize>> {
    worker_statuses().iter().map(|status| allowed_cores(status)).collect()
}

/// Runs a server with `workers` and `pin_workers`, has every worker answer one request (so each
/// has started and bound itself), and returns the cores each worker may run on, and what the
/// server's `serving connections` line said.
async fn cores_of_workers(workers: usize, pin_workers: bool) -> (Vec<BTreeSet<usize>>, serde_json::Value) {
    let captured = Captured::default();
    let logging = captured.log("xgserve=info");
    let Listening {
        address, stop, server, ..
    } = listening(HttpConfig {
        workers,
        pin_workers,
        ..config()
    })
    .await;
    let request = example_request();
    // Dealt in turn: one connection per worker.
    for _ in 0..workers {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.ends_with(EXAMPLE_RESPONSE.trim()), "{answer}");
    }
    let cores = worker_cores();
    assert_eq!(cores.len(), workers, "{cores:?}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    drop(logging);
    let entries = captured.entries();
    let serving = entries
        .iter()
        .find(|entry| entry["fields"]["message"] == "serving connections")
        .unwrap_or_else(|| panic!("no `serving connections` line: {entries:?}"));
    (cores, serving["fields"].clone())
}

#[tokio::test]
async fn one_worker_per_core_binds_each_to_its_own_core_and_nothing_else_binds() {
    let process = allowed_cores(&std::fs::read_to_string("/proc/self/status").unwrap());
    let count = process.len();

    let (bound, logged) = cores_of_workers(count, true).await;
    assert!(
        bound.iter().all(|cores| cores.len() == 1),
        "each worker on one core: {bound:?}"
    );
    let used: BTreeSet<usize> = bound.iter().flatten().copied().collect();
    assert_eq!(used, process, "every core of the process, one worker each: {bound:?}");
    // Worker i on the i-th core of the process, as the start-up log says.
    let cores: Vec<usize> = process.iter().copied().collect();
    assert_eq!(logged["workers"], count as u64, "{logged}");
    assert_eq!(logged["pinned_to"], format!("Some({cores:?})"), "{logged}");

    for (workers, pin) in [(count, false), (count + 1, true)] {
        let (unbound, logged) = cores_of_workers(workers, pin).await;
        assert!(
            unbound.iter().all(|cores| *cores == process),
            "{workers} workers, pin {pin}: none bound, but {unbound:?}"
        );
        assert_eq!(logged["workers"], workers as u64, "{logged}");
        assert_eq!(logged["pinned_to"], "None", "{logged}");
    }
}
