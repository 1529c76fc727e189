//! The listener and the threads that serve its connections.
//!
//! Each worker thread runs its own single-threaded tokio runtime, and the accept loop deals the
//! connections to the workers in turn. A connection stays on its worker, so its requests never
//! cross cores. Against tokio's work-stealing runtime, on the 2-row `/predict` at 16 connections,
//! this saved 0.3-0.9 µs of the 22-24 µs of CPU a request costs, in wake-ups and stealing between
//! workers, and served more requests in every run (README, Performance).
//!
//! Dealing in turn, rather than letting every worker accept, keeps the shares even: workers that
//! race for the listener took uneven shares of the connections, and the busier one was the limit.
//!
//! With one worker per core of the process's affinity, each worker is bound to its own core
//! (`--pin-workers`, on by default), so the kernel never puts two workers on one core while the
//! other core runs something else. In nine alternating pairs of runs of the 2-row `/predict` at 16
//! connections, with wrk on the same two cores, bound workers served more in eight of them with two
//! wrk threads (a median 1,248 req/s more) and in seven with one; the p99 with two wrk threads stayed
//! about 2 ms either way (README, Performance).
//!
//! That tail was the scheduler's slice. Under Linux's EEVDF scheduler a thread just woken may wait
//! while the running one uses up its slice, 1.4 ms here by default; a thread that asks for a shorter
//! slice (`sched_setattr`, 6.12 and later) is put first, which is what the kernel offers
//! latency-sensitive tasks. So a worker that a request woke on a core where wrk ran waited up to a
//! slice. Each worker now asks for 100 µs (`--worker-slice-us`), the shortest the kernel grants, and
//! runs soon after its request comes. With two wrk threads this cut the 2-row p99 to under 2 ms in
//! most runs, at no cost in rate (README, Performance). It needs no privilege, and older kernels
//! ignore it.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::AppState;

/// A connection on its way to a worker, with its part in the graceful shutdown.
type Dealt = (std::net::TcpStream, Watcher);

/// Serves until `shutdown` resolves, then marks the server not ready and finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut workers = Workers::start(&state).await?;
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        match stream.into_std() {
            Ok(stream) => workers.deal(stream, graceful.watcher()),
            Err(error) => tracing::warn!(%error, "cannot hand an accepted connection to a worker"),
        }
    }
    state.stop_ready();
    drop(listener);
    // Every connection dealt holds a watcher, so this also waits for those not yet started.
    graceful.shutdown().await;
    workers.stop().await;
    Ok(())
}

/// The worker threads, and where the next connection goes.
struct Workers {
    /// One per worker: unbounded, because the listener's backlog, not this queue, is what holds
    /// connections back, and a worker takes each one at once.
    queues: Vec<mpsc::UnboundedSender<Dealt>>,
    /// Joined at the end of `run`, so no worker outlives the server.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The worker the next connection goes to.
    next: usize,
}

impl Workers {
    /// One thread per `--workers`, or per core when that is 0; returns once each has placed itself.
    async fn start(state: &AppState) -> std::io::Result<Self> {
        let count = worker_count(state.config.workers);
        let cores = if state.config.pin_workers {
            cores_to_pin(count)
        } else {
            None
        };
        let slice = state.config.worker_slice;
        let header_read_timeout = state.config.header_read_timeout;
        let service = TowerToHyperService::new(super::router(state.clone()));
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut placed = Vec::with_capacity(count);
        for index in 0..count {
            // Built here, so that a runtime that cannot be built fails the start, not a thread.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (queue, mut dealt) = mpsc::unbounded_channel::<Dealt>();
            let (granted, slice_granted) = tokio::sync::oneshot::channel();
            let service = service.clone();
            let core = cores.as_ref().map(|cores| cores[index]);
            let thread = std::thread::Builder::new()
                .name(format!("xgserve-http-{index}"))
                .spawn(move || {
                    let _ = granted.send(place(core, slice));
                    runtime.block_on(async move {
                        while let Some((stream, watcher)) = dealt.recv().await {
                            serve(stream, watcher, service.clone(), header_read_timeout);
                        }
                    });
                })?;
            queues.push(queue);
            threads.push(thread);
            placed.push(slice_granted);
        }
        let mut granted = Vec::with_capacity(count);
        for slice in placed {
            // A thread that died before answering holds no slice.
            granted.push(slice.await.ok().flatten());
        }
        // What every worker holds, so the log says what the kernel did, not what was asked.
        let slice_us = match granted.first() {
            Some(&first) if granted.iter().all(|&slice| slice == first) => first.map(|slice| slice.as_micros()),
            _ => None,
        };
        tracing::info!(workers = count, pinned_to = ?cores, ?slice_us, "serving connections");
        Ok(Self {
            queues,
            threads,
            next: 0,
        })
    }

    /// Hands a connection to the next worker in turn.
    fn deal(&mut self, stream: std::net::TcpStream, watcher: Watcher) {
        // A worker stops only once its queue is closed, so the send cannot fail.
        let _ = self.queues[self.next].send((stream, watcher));
        self.next = (self.next + 1) % self.queues.len();
    }

    /// Closes the queues and waits for every worker to finish its connections and exit.
    async fn stop(self) {
        drop(self.queues);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Serves one HTTP/1.1 connection on the current worker until it closes, takes longer than
/// `header_read_timeout` to send a request's head, or the shutdown ends it after its answer in progress.
fn serve(
    stream: std::net::TcpStream,
    watcher: Watcher,
    service: TowerToHyperService<axum::Router>,
    header_read_timeout: Option<Duration>,
) {
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot serve an accepted connection");
            return;
        }
    };
    // One write per answer: the head and the body copied together cost less than a vectored write
    // of the two (about 0.5 µs of a 2-row answer's 22 µs here); bodies are small beside their rows.
    // hyper counts the head's time only with a timer; without one, a client trickling its headers,
    // or never sending any, would hold the connection for good.
    let connection = hyper::server::conn::http1::Builder::new()
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::spawn(async move {
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}

/// How many workers `configured` asks for: 0 means one per core.
pub fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The cores to bind the workers to, one each: the process's own (its CPU affinity, which a container's
/// cpuset narrows), when there are exactly as many as workers. With fewer workers (a CPU quota, or
/// `--workers`), some cores are left to the kernel anyway, so none is bound; with more, they would share.
fn cores_to_pin(workers: usize) -> Option<Vec<usize>> {
    match scheduler::allowed() {
        Ok(cores) if cores.len() == workers => Some(cores),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, "the CPU affinity is unknown; the workers are not bound");
            None
        }
    }
}

/// Binds the calling worker to `core` and asks for a time slice of `slice`, each when given, and
/// returns the slice it then holds: `None` where none was asked, the kernel keeps no slice per
/// thread, or it refused. A refusal is logged and the worker serves anyway.
fn place(core: Option<usize>, slice: Option<Duration>) -> Option<Duration> {
    if let Some(core) = core {
        if let Err(error) = scheduler::pin(core) {
            tracing::warn!(%error, core, "cannot bind a worker to its core; the kernel places it");
        }
    }
    match scheduler::ask_slice(slice?) {
        Ok(granted) => granted,
        Err(error) => {
            tracing::warn!(%error, "cannot shorten a worker's time slice; it keeps the kernel's");
            None
        }
    }
}

/// Where the calling thread runs: its CPU affinity, and its time slice.
#[cfg(target_os = "linux")]
mod scheduler {
    use std::mem::{size_of, zeroed};
    use std::time::Duration;

    /// The cores the calling thread may run on.
    pub fn allowed() -> std::io::Result<Vec<usize>> {
        // SAFETY: an all-zero `cpu_set_t` is an empty set; the kernel writes at most its size into it.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: every index is below CPU_SETSIZE, the set's size in bits.
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
            .collect())
    }

    /// Binds the calling thread to `core`.
    pub fn pin(core: usize) -> std::io::Result<()> {
        // SAFETY: as in `allowed`; `core` came from `allowed`, so it is below CPU_SETSIZE.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        unsafe { libc::CPU_SET(core, &mut set) };
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks for a time slice of `slice` for the calling thread, keeping its policy and nice value,
    /// and returns the slice the kernel says it then has. `None` where the kernel keeps no slice per
    /// thread: before Linux 6.12 it accepts the request and ignores it, and a thread outside the
    /// fair scheduler (a real-time policy an operator set) is left alone.
    pub fn ask_slice(slice: Duration) -> std::io::Result<Option<Duration>> {
        let mut attr = attributes()?;
        if !matches!(attr.sched_policy as i32, libc::SCHED_OTHER | libc::SCHED_BATCH) {
            return Ok(None);
        }
        attr.size = size_of::<libc::sched_attr>() as u32;
        attr.sched_flags = 0;
        attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: `attr` is a whole `sched_attr` of the size it declares; the kernel only reads it.
        if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let granted = attributes()?.sched_runtime;
        Ok((granted > 0).then(|| Duration::from_nanos(granted)))
    }

    /// The calling thread's scheduling attributes; for a fair policy, `sched_runtime` is its slice
    /// (0 before Linux 6.12).
    fn attributes() -> std::io::Result<libc::sched_attr> {
        // SAFETY: an all-zero `sched_attr` is a valid value; the kernel writes at most the size given.
        let mut attr: libc::sched_attr = unsafe { zeroed() };
        let size = size_of::<libc::sched_attr>() as libc::c_uint;
        if unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(attr)
    }
}

/// Elsewhere the workers are left to the operating system.
#[cfg(not(target_os = "linux"))]
mod scheduler {
    use std::time::Duration;

    pub fn allowed() -> std::io::Result<Vec<usize>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn pin(_core: usize) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn ask_slice(_slice: Duration) -> std::io::Result<Option<Duration>> {
        Ok(None)
    }
}

/// A refused or reset connection costs nothing; anything else (say, out of file descriptors) is
/// logged and waited out for a second before accepting again, as hyper's servers do.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_workers_means_one_per_core() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(super::worker_count(0), cores);
        assert_eq!(super::worker_count(3), 3);
    }
}
