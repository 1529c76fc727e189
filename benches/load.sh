#!/usr/bin/env bash
# Load test of the release server on loopback, one report per run:
#   2-row and 100-row POST /predict at 1 and 16 connections (req/s, p50, p99), the 2-row POST /explain
#   (the same cars with their contributions) at 16 connections, the trivial-route
#   ceiling (GET /livez) of the same server, peak RSS under load, and time from start to ready.
#   The 16-connection runs are made twice: with two wrk threads and with one. On two cores the
#   generator competes with the server for the CPU; one generator thread leaves the server more of it.
# Usage: benches/load.sh [seconds per run, default 10]. Needs wrk (apt); installs it when missing.
# The load generator shares the machine's cores with the server, so figures are a floor.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
port=${XGSERVE_LOAD_PORT:-3977}
work=$(mktemp -d)
# The server drains for a moment after SIGTERM; wait, so the next run finds the port free.
trap 'kill "$server" 2>/dev/null && wait "$server"; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
bundle = "models/ford_used_car_price"
example = json.load(open(f"{bundle}/example.json"))
json.dump(example, open(f"{work}/rows2.json", "w"))
parity = json.load(open(f"{bundle}/parity.json"))
rows = [i for i, p in enumerate(parity["predictions"]) if p is not None][:100]
body = {name: [values[i] for i in rows] for name, values in parity["inputs"].items()}
json.dump(body, open(f"{work}/rows100.json", "w"))
PY

start=$(date +%s%N)
# At the default log level, as `cargo run --release` runs it; the server's log goes to a file.
RUST_LOG=info target/release/xgserve serve --host 127.0.0.1 --port "$port" --grpc-port 0 --max-concurrency 4096 \
  > "$work/server.log" 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$server" 2>/dev/null || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
  sleep 0.001
done
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")

run() { # name connections threads [body [path, default /predict]]
  local name=$1 connections=$2 threads=$3 body=${4:-} path=${5:-/predict}
  local out
  if [[ -n $body ]]; then
    out=$(BODY_FILE="$work/$body" wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
      -s benches/load/post.lua "http://127.0.0.1:$port$path")
  else
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port/livez")
  fi
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  printf '%-22s %3s conn  wrk -t%s  %10s req/s  p50 %9s  p99 %9s  %s\n' \
    "$name" "$connections" "$threads" "$rps" "$p50" "$p99" "${errors:-no errors}"
  rps_of["$name $connections $threads"]=$rps
}
declare -A rps_of

echo "xgserve load test: $(nproc) cores, ${seconds}s per run, wrk on the same machine"
for threads in 2 1; do run "GET /livez (ceiling)" 16 "$threads"; done
run "POST /predict 2 rows" 1 1 rows2.json
for threads in 2 1; do run "POST /predict 2 rows" 16 "$threads" rows2.json; done
run "POST /predict 100 rows" 1 1 rows100.json
for threads in 2 1; do run "POST /predict 100 rows" 16 "$threads" rows100.json; done
for threads in 2 1; do run "POST /explain 2 rows" 16 "$threads" rows2.json /explain; done
# The ceiling is the faster of the two /livez runs: with one wrk thread, /livez measures wrk.
ceiling=$(awk -v a="${rps_of["GET /livez (ceiling) 16 2"]}" -v b="${rps_of["GET /livez (ceiling) 16 1"]}" \
  'BEGIN {print (a > b ? a : b)}')
for threads in 2 1; do
  share=$(awk -v p="${rps_of["POST /predict 2 rows 16 $threads"]}" -v c="$ceiling" 'BEGIN {printf "%.0f", 100 * p / c}')
  echo "2-row /predict at 16 connections, wrk -t$threads: ${share}% of the ceiling ($ceiling req/s)"
done
echo "start to ready: ${ready_ms} ms (process start to the first 200 from /readyz)"
echo "RSS: idle $((rss_idle / 1024)) MB, peak under load $(( $(awk '/VmHWM/ {print $2}' "/proc/$server/status") / 1024 )) MB"
