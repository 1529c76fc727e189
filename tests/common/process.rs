//! Child processes for tests that run real binaries: started with their output in a log file,
//! killed when dropped, waited for on a loopback port.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed when dropped; its output goes to a log file.
pub struct Process {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, command: &mut Command, log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// As [`Process::spawn`], but the caller reads stdout (`child.stdout`); stderr is the test's.
    pub fn spawn_piped(name: &str, command: &mut Command) -> Process {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process {
            child,
            name: name.to_owned(),
            log: PathBuf::new(),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of the log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.tail());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on the port.
pub fn wait_for_port(port: u16, process: &mut Process, within: Duration) {
    let deadline = Instant::now() + within;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        process.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {port}:\n{}",
            process.name,
            process.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `xgserve serve` on a free loopback port with extra arguments and environment, once it listens.
pub fn start_server(name: &str, args: &[&str], envs: &[(&str, &str)], log_dir: &Path) -> (Process, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_xgserve"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        // gRPC on a free port too, unless the test chooses one.
        .args(if args.contains(&"--grpc-port") {
            &[][..]
        } else {
            &["--grpc-port", "0"][..]
        })
        .args(args)
        .envs(envs.iter().copied());
    let mut server = Process::spawn(name, &mut command, log_dir);
    wait_for_port(port, &mut server, Duration::from_secs(30));
    (server, port)
}

/// One raw HTTP request on a fresh loopback connection, read until the server closes it (at most
/// 10 s): the answer's head and body.
pub fn http_exchange(port: u16, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

/// A plain HTTP GET on loopback; the status line and body.
pub fn http_get(port: u16, path: &str) -> (String, String) {
    let (head, body) = http_exchange(port, &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
    (head.lines().next().unwrap_or("").to_owned(), body)
}

/// A counter or gauge from the Prometheus `/metrics` on `port`; `None` while nothing listens there
/// yet (a process starting) or the metric is not shown.
pub fn metric(port: u16, name: &str) -> Option<f64> {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    let (status, metrics) = http_get(port, "/metrics");
    status.contains("200").then_some(())?;
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// Sends SIGTERM and waits for the exit status.
pub fn terminate(process: &mut Process, within: Duration) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not stop after SIGTERM:\n{}",
            process.name,
            process.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after `within`.
pub fn wait_until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A program of the Python environment `tests/run` makes (`.venv`, or `XGSERVE_VENV`).
pub fn venv_bin(program: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("XGSERVE_VENV").map_or_else(|| repo.join(".venv"), PathBuf::from);
    venv.join("bin").join(program)
}

/// Runs the xgserve binary in the repository to its end: (success, stdout, stderr).
pub fn xgserve(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xgserve"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
