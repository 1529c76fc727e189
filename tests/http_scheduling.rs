//! Where the workers run. With one worker per core of the process's affinity, each worker is bound
//! to its own core; with `pin_workers` off, or a worker count that differs, none is bound. Each
//! worker asks the scheduler for the configured time slice; with none configured, it keeps the
//! kernel's. Cores and slices are read back from `/proc`, not from the code under test, and the
//! start-up log must say what they are.
//!
//! Alone in its file, so that the worker threads it reads are its own server's: each test file is a
//! process of its own. One test, so that two servers never run at once.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::{config, example_request, listening, read_answer, worker_files, Listening, EXAMPLE_RESPONSE};
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
    worker_files("status")
        .iter()
        .map(|status| allowed_cores(status))
        .collect()
}

/// The time slice, in ns, in a thread's `/proc/.../sched`; `None` where the kernel shows none.
fn slice_in(sched: &str) -> Option<u64> {
    sched
        .lines()
        .find_map(|line| line.strip_prefix("se.slice"))
        .map(|value| value.trim_start_matches([' ', ':']).trim().parse().unwrap())
}

/// Whether this kernel keeps a time slice per thread: EEVDF's custom slices came with Linux 6.12.
fn kernel_keeps_slices() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap()) >= (6, 12)
}

/// The kernel's own slice: the calling thread's, which nothing asked to change.
fn kernel_slice() -> Option<u64> {
    slice_in(&std::fs::read_to_string("/proc/thread-self/sched").unwrap())
}

/// What a server's workers were given, as `/proc` shows it, and what its start-up log said.
struct Placement {
    /// The cores each worker may run on.
    cores: Vec<BTreeSet<usize>>,
    /// Each worker's time slice, in ns.
    slices: Vec<Option<u64>>,
    /// The fields of the `serving connections` line.
    logged: serde_json::Value,
}

/// Runs a server with `config`, has every worker answer one request (so each has started and
/// placed itself), and returns where its workers run.
async fn placement(config: HttpConfig) -> Placement {
    let workers = config.workers;
    let captured = Captured::default();
    let logging = captured.log("xgserve=info");
    let Listening {
        address, stop, server, ..
    } = listening(config).await;
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
    let slices: Vec<Option<u64>> = worker_files("sched").iter().map(|sched| slice_in(sched)).collect();
    assert_eq!(slices.len(), workers, "{slices:?}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    drop(logging);
    let entries = captured.entries();
    let serving = entries
        .iter()
        .find(|entry| entry["fields"]["message"] == "serving connections")
        .unwrap_or_else(|| panic!("no `serving connections` line: {entries:?}"));
    Placement {
        cores,
        slices,
        logged: serving["fields"].clone(),
    }
}

/// A server with `workers` workers, `pin_workers` and the default time slice.
fn workers(workers: usize, pin_workers: bool) -> HttpConfig {
    HttpConfig {
        workers,
        pin_workers,
        ..config()
    }
}

#[tokio::test]
async fn workers_run_where_and_for_as_long_as_configured_and_the_log_says_so() {
    cores_follow_the_affinity().await;
    slices_follow_the_configuration().await;
}

async fn cores_follow_the_affinity() {
    let process = allowed_cores(&std::fs::read_to_string("/proc/self/status").unwrap());
    let count = process.len();

    let Placement {
        cores: bound, logged, ..
    } = placement(workers(count, true)).await;
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

    for (count, pin) in [(count, false), (count + 1, true)] {
        let Placement {
            cores: unbound, logged, ..
        } = placement(workers(count, pin)).await;
        assert!(
            unbound.iter().all(|cores| *cores == process),
            "{count} workers, pin {pin}: none bound, but {unbound:?}"
        );
        assert_eq!(logged["workers"], count as u64, "{logged}");
        assert_eq!(logged["pinned_to"], "None", "{logged}");
    }
}

async fn slices_follow_the_configuration() {
    let kernel = kernel_slice();
    let keeps = kernel_keeps_slices();
    // Asked for, granted as the kernel clamps it (0.1-100 ms); or nothing, where it keeps no slices.
    let default = config().worker_slice;
    assert_eq!(default, Some(Duration::from_micros(100)));
    for (asked, granted_us) in [
        (default, 100),
        (Some(Duration::from_micros(50)), 100),
        (Some(Duration::from_millis(3)), 3000),
    ] {
        let Placement { slices, logged, .. } = placement(HttpConfig {
            worker_slice: asked,
            ..workers(2, false)
        })
        .await;
        if keeps {
            let granted = Some(granted_us * 1000);
            assert!(
                slices.iter().all(|&slice| slice == granted),
                "asked {asked:?}: {slices:?}"
            );
            assert_eq!(logged["slice_us"], format!("Some({granted_us})"), "{logged}");
        } else {
            assert!(
                slices.iter().all(|&slice| slice == kernel),
                "asked {asked:?}: {slices:?}"
            );
            assert_eq!(logged["slice_us"], "None", "{logged}");
        }
    }

    let Placement { slices, logged, .. } = placement(HttpConfig {
        worker_slice: None,
        ..workers(2, false)
    })
    .await;
    assert!(
        slices.iter().all(|&slice| slice == kernel),
        "kept the kernel's {kernel:?}: {slices:?}"
    );
    assert_eq!(logged["slice_us"], "None", "{logged}");
}
