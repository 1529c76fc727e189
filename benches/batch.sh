#!/usr/bin/env bash
# Batch scoring of a large file: `xgserve predict` on a CSV of ten million rows generated from the
# Ford rows (cycled), with --threads 1 and 2 and with a Parquet output, against the Python
# pipeline's predict on the same file in chunks (benches/batch/pipeline.py, in the reference venv
# .venv; its XGBoost uses every core, as it does by default). Rounds alternate; each run prints its
# rows per second and its peak RSS (GNU time's maximum resident set size).
# Usage: benches/batch.sh [rounds, default 2] [rows, default 10000000]. Needs the Ford data set
# (XGSERVE_DATA, default ../shared/data/ford.csv); the generated file stays in target/batch.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
rows=${2:-10000000}
home=target/batch
data=$(realpath "${XGSERVE_DATA:-../shared/data/ford.csv}")
mkdir -p "$home"
[[ -x .venv/bin/python ]] || { echo "no .venv: run tests/run once (it makes the reference venv)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --quiet
input=$home/cars-$rows.csv
if [[ ! -s $input ]]; then
  python3 - "$data" "$input" "$rows" <<'PY'
import sys
data, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
header, *lines = open(data, newline="").read().splitlines()
with open(out, "w") as f:
    f.write(header + "\n")
    for start in range(0, rows, len(lines)):
        f.write("\n".join(lines[: min(len(lines), rows - start)]) + "\n")
PY
fi
echo "$(nproc) cores; $rows rows, $(( $(stat -c %s "$input") >> 20 )) MiB of CSV; $rounds rounds"

measure() { # name command...: prints rows/s and peak RSS
  local name=$1; shift
  /usr/bin/time -o "$home/time.txt" -f '%e %M' "$@" >/dev/null
  local seconds rss_kib
  read -r seconds rss_kib < "$home/time.txt"
  printf '%-34s %8.1f s  %10.0f rows/s  peak RSS %5d MiB\n' "$name" "$seconds" "$(echo "$rows / $seconds" | bc -l)" $(( rss_kib >> 10 ))
}

for round in $(seq "$rounds"); do
  echo "round $round"
  measure "xgserve predict --threads 1" target/release/xgserve predict --quiet --threads 1 --input "$input" --output "$home/out.csv"
  measure "xgserve predict --threads 2" target/release/xgserve predict --quiet --threads 2 --input "$input" --output "$home/out.csv"
  measure "xgserve predict --threads 2, .parquet" target/release/xgserve predict --quiet --threads 2 --input "$input" --output "$home/out.parquet"
  # The pipeline's own clock leaves out its training; GNU time's RSS includes it.
  /usr/bin/time -o "$home/time.txt" -f '%M' \
    .venv/bin/python -W ignore benches/batch/pipeline.py "$data" "$input" "$home/python.csv" > "$home/python.txt"
  read -r counted seconds < "$home/python.txt"
  printf '%-34s %8.1f s  %10.0f rows/s  peak RSS %5d MiB\n' "Python pipeline, chunks of 100,000" "$seconds" \
    "$(echo "$counted / $seconds" | bc -l)" $(( $(cat "$home/time.txt") >> 10 ))
done
cmp -s <(tail -n +2 "$home/out.csv") <(tail -n +2 "$home/python.csv") \
  && echo "xgserve's predictions equal the pipeline's, line for line" \
  || echo "xgserve's CSV and the pipeline's differ (float formatting or values): compare them"
