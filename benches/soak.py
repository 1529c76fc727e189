#!/usr/bin/env python3
"""Soak, overload, hot reloads and shutdown under load, against the release server on loopback.

Usage: benches/soak.py [--seconds 60] (cargo build --release first; needs wrk, from apt).

1. Soak: `--seconds` of 2-row POST /predict at 64 connections (wrk): errors, req/s, p99, and RSS
   after a 5 s warm-up against RSS at the end (goal: zero errors, growth under 10%).
2. Overload: with every permit held by a request whose body never ends, 64 connections of 2-row
   requests (wrk), all over the limit: 503s with Retry-After, their p99 (goal: under 10 ms). Then a
   real overload, 64 connections of 2,000-row requests against `--max-concurrency 2` (asyncio
   client): every request answered 200 or 503 with Retry-After, no connection lost.
3. Hot reloads: 100 POST /admin/reload, one after another, under 16 connections of 2-row requests
   (wrk): failed requests and failed reloads (goal: zero).
4. SIGTERM under load: 32 connections of 1,000-row requests; SIGTERM while they run. Every request
   the server had begun (bytes written before the signal) must complete with a 200; the process must
   exit 0. Requests written after the signal may be refused; they are counted apart.

Stdlib only, so it runs with the machine's python3. The second client of 2 and the client of 4 are
asyncio on raw sockets, so they can tell each answer's status and failures apart; every client
shares the two cores with the server.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BINARY = REPO / "target/release/xgserve"
BUNDLE = REPO / "models/ford_used_car_price"
TOKEN = "soak-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def body(rows):
    """`rows` cars cycled from the bundle's parity cases (nulls and unknown categories included)."""
    parity = json.load(open(BUNDLE / "parity.json"))
    usable = [i for i, p in enumerate(parity["predictions"]) if p is not None]
    picked = [usable[i % len(usable)] for i in range(rows)]
    return json.dumps({name: [values[i] for i in picked] for name, values in parity["inputs"].items()})


class Server:
    def __init__(self, *args):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="xgserve-soak-", suffix=".log", delete=False)
        # The default log level, as `cargo run --release` runs it.
        env = dict(os.environ, RUST_LOG="info", XGSERVE_API_KEY=TOKEN)
        self.process = subprocess.Popen(
            [BINARY, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--grpc-port", "0", *args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _, _ = http("GET", self.port, "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"server not ready; see {self.log.name}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def http(method, port, path, payload=b"", headers=()):
    """One blocking request on a fresh connection: status, headers (lowercase names), body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = [f"{method} {path} HTTP/1.1", "Host: soak", f"Content-Length: {len(payload)}",
                "Connection: close", *headers]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, rest


def wrk(port, connections, seconds, body_file):
    script = REPO / "benches/load/post.lua"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script,
         "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{port}/predict"],
        env=dict(os.environ, BODY_FILE=body_file), capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"requests": requests, "failed": non_2xx + socket_errors,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99": re.search(r"\s99%\s+(\S+)", out).group(1), "raw": out}


async def exchange(reader, writer, request):
    """Writes one request, reads its answer: (status, headers)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1]), headers


def post(payload):
    return (f"POST /predict HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(payload)}\r\n\r\n{payload}").encode()


async def clients(port, connections, request, until, results, stop_at=None):
    """`connections` keep-alive clients posting `request` until `until()`; each result is
    (started, finished, status, headers, error)."""
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not until():
                started = time.monotonic()
                try:
                    status, headers = await exchange(reader, writer, request)
                    results.append((started, time.monotonic(), status, headers, None))
                except (OSError, asyncio.IncompleteReadError) as e:
                    results.append((started, time.monotonic(), None, {}, repr(e)))
                    return
        finally:
            writer.close()
    await asyncio.gather(*(one() for _ in range(connections)), return_exceptions=True)


def soak(seconds, work):
    server = Server()
    try:
        wrk(server.port, 64, 5, work / "rows2.json")
        start = rss_mb(server.process.pid)
        result = wrk(server.port, 64, seconds, work / "rows2.json")
        end = rss_mb(server.process.pid)
        growth = (end - start) / start * 100
        print(f"soak: {seconds} s at 64 connections, 2-row: {result['requests']} requests, "
              f"{result['failed']} failed, {result['rps']:.0f} req/s, p99 {result['p99']}; "
              f"RSS {start:.1f} MB after warm-up, {end:.1f} MB at the end ({growth:+.1f}%)")
        return result["failed"] == 0 and growth < 10
    finally:
        server.stop()


def overload(work):
    """Every permit is held by a request whose body never finishes, so every other prediction is
    over the limit: wrk measures the 503s alone. Then a real overload (2,000-row requests, far more
    than the permits) checks that every shed request gets its 503 and keeps its connection."""
    server = Server("--max-concurrency", "4", "--request-timeout-ms", "120000")
    holders = []
    try:
        for _ in range(4):
            holder = socket.create_connection(("127.0.0.1", server.port))
            holder.sendall(f"POST /predict HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {TOKEN}\r\n"
                           f"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{".encode())
            holders.append(holder)
        time.sleep(0.2)
        out = subprocess.run(
            ["wrk", "-t2", "-c64", "-d10s", "--latency", "-s", REPO / "benches/load/shed.lua",
             f"http://127.0.0.1:{server.port}/predict"],
            env=dict(os.environ, BODY_FILE=str(work / "rows2.json"), TOKEN=TOKEN),
            capture_output=True, text=True, check=True).stdout
        shed, retry, other = map(int, re.search(r"shed (\d+) retry_after (\d+) other (\d+)", out).groups())
        p50 = re.search(r"\s50%\s+(\S+)", out).group(1)
        p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        print(f"overload, every permit held: 64 connections of 2-row requests for 10 s: {shed} shed with 503 "
              f"({retry} with Retry-After: 1), {other} other; {rps:.0f} req/s, p50 {p50}, p99 {p99}")
        quick = to_ms(p99) < 10 and shed == retry and other == 0 and shed > 0
    finally:
        for holder in holders:
            holder.close()
        server.stop()

    server = Server("--max-concurrency", "2")
    try:
        request = post((work / "rows2000.json").read_text())
        results = []
        deadline = time.monotonic() + 10
        asyncio.run(clients(server.port, 64, request, lambda: time.monotonic() > deadline, results))
        shed = [r for r in results if r[2] == 503]
        served = [r for r in results if r[2] == 200]
        retry_after = all(r[3].get("retry-after") == "1" for r in shed)
        other = [r for r in results if r[2] not in (200, 503)]
        kinds = sorted({str(r[2] or r[4])[:60] for r in other})
        print(f"overload, real: 64 connections of 2,000-row requests against --max-concurrency 2 for 10 s "
              f"(asyncio client): {len(served)} served, {len(shed)} shed with 503 (Retry-After on all: "
              f"{retry_after}), {len(other)} failed {kinds if kinds else ''}")
        return quick and bool(shed) and retry_after and not other
    finally:
        server.stop()


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def reloads(work):
    server = Server()
    try:
        loader = {}

        def reload_100():
            ok = 0
            time.sleep(1)  # wrk is under way
            began = time.monotonic()
            for _ in range(100):
                status, _, _ = http("POST", server.port, "/admin/reload",
                                    headers=[f"Authorization: Bearer {TOKEN}"])
                ok += status == 200
            loader["ok"] = ok
            loader["took"] = time.monotonic() - began

        thread = threading.Thread(target=reload_100)
        thread.start()
        result = wrk(server.port, 16, 12, work / "rows2.json")
        thread.join()
        print(f"hot reloads: {loader['ok']}/100 reloads answered 200 while 16 connections sent "
              f"{result['requests']} 2-row requests in 12 s: {result['failed']} failed "
              f"({result['rps']:.0f} req/s, p99 {result['p99']}; the 100 reloads took {loader['took']:.1f} s)")
        return loader["ok"] == 100 and result["failed"] == 0
    finally:
        server.stop()


def sigterm(work):
    server = Server()
    request = post((work / "rows1000.json").read_text())
    results = []
    signalled = {}

    async def run():
        task = asyncio.ensure_future(
            clients(server.port, 32, request, lambda: "at" in signalled, results))
        await asyncio.sleep(3)
        signalled["at"] = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await task

    asyncio.run(run())
    code = server.process.wait(timeout=60)
    at = signalled["at"]
    before = [r for r in results if r[0] < at]
    failed_before = [r for r in before if r[2] != 200]
    after = [r for r in results if r[0] >= at]
    kinds = sorted({str(r[2] or r[4]) for r in failed_before})
    print(f"SIGTERM under load: 32 connections of 1,000-row requests; {len(before)} requests begun "
          f"before the signal, {len(failed_before)} of them failed {kinds if kinds else ''}; "
          f"{len(after)} begun after it ({sum(r[2] == 200 for r in after)} answered 200); exit code {code}")
    return not failed_before and code == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    if not BINARY.exists():
        raise SystemExit("build the release binary first: cargo build --release")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rows in (2, 1000, 2000):
            (work / f"rows{rows}.json").write_text(body(rows))
        print(f"xgserve soak: {os.cpu_count()} cores, clients on the same machine")
        outcomes = {"soak": soak(args.seconds, work), "overload": overload(work),
                    "hot reloads": reloads(work), "SIGTERM under load": sigterm(work)}
    missed = [name for name, ok in outcomes.items() if not ok]
    print("all goals met" if not missed else f"goals missed: {', '.join(missed)}")
    raise SystemExit(1 if missed else 0)


if __name__ == "__main__":
    main()
