#!/usr/bin/env bash
# The engine beside XGBoost's own prediction paths, in alternating rounds on one machine, one thread
# each, on the same rows' features (the bench's parity cases, as the Python pipeline transforms them):
#   exact contributions: xgserve's tables (contributions/xgserve) against XGBoost's pred_contribs;
#   predictions: xgserve with its preprocessing (preprocess+predict/xgserve) against XGBoost's
#   inplace_predict and tl2cgen's fastest compiled build, on ready features (trees only).
# Prints each round's ns per row and the ratios, then each ratio's range over the rounds. Within a
# round each batch size's xgserve and anchor figures are taken back to back, seconds apart: this
# machine's speed drifts by tens of percent within minutes, and a ratio is only as good as the two
# figures are close in time.
# Usage: benches/anchors.sh [rounds, default 3]. Makes its venv under target/anchors (pinned in
# benches/anchors/requirements.txt) and uses the reference venv .venv (made by tests/run) for the
# features; needs the Ford data set (XGSERVE_DATA, default ../shared/data/ford.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
home=target/anchors
data=$(realpath "${XGSERVE_DATA:-../shared/data/ford.csv}")
mkdir -p "$home"
if ! cmp -s benches/anchors/requirements.txt "$home/venv/requirements.txt" 2>/dev/null; then
  rm -rf "$home/venv"
  python3 -m venv "$home/venv"
  "$home/venv/bin/pip" install -q --disable-pip-version-check -r benches/anchors/requirements.txt
  cp benches/anchors/requirements.txt "$home/venv/requirements.txt"
fi
[[ -x .venv/bin/python ]] || { echo "no .venv: run tests/run once (it makes the reference venv)" >&2; exit 1; }
.venv/bin/python -W ignore benches/anchors/features.py "$data" "$home/features.npy"
cargo bench --bench engine --no-run --quiet

: > "$home/results.txt"
for round in $(seq "$rounds"); do
  for batch in 1 100 10000; do
    # `bencher` lines: "test contributions/xgserve/100 ... bench:   1150500 ns/iter (+/- 2000)"
    cargo bench --quiet --bench engine -- "^(contributions|preprocess\\+predict)/xgserve/$batch\$" --output-format bencher \
      2>/dev/null | awk -v round="$round" '/bench:/ {
        split($2, id, "/"); gsub(",", "", $5); print round, id[1] "/xgserve", id[3], $5 / id[3] }' >> "$home/results.txt"
    "$home/venv/bin/python" benches/anchors/anchors.py "$home/features.npy" models/ford_used_car_price/model.json 3 "$batch" \
      2>> "$home/anchors.log" | awk -v round="$round" '{ print round, $1, $2, $3 }' >> "$home/results.txt"
  done
done

python3 - "$home/results.txt" "$rounds" <<'PY'
import collections, os, sys
rows = [line.split() for line in open(sys.argv[1])]
ns = collections.defaultdict(dict)  # (name, batch) -> round -> ns per row
for round_, name, batch, value in rows:
    ns[(name, int(batch))][int(round_)] = float(value)
names = sorted({name for name, _ in ns})
contribs = next(n for n in names if n.endswith("pred_contribs"))
inplace = next(n for n in names if n.endswith("inplace_predict"))
compiled = next(n for n in names if n.startswith("tl2cgen"))
pairs = [("contributions/xgserve", contribs), ("preprocess+predict/xgserve", inplace),
         ("preprocess+predict/xgserve", compiled)]
print(f"{os.cpu_count()} cores; ns per row, one thread each; {sys.argv[2]} alternating rounds")
for ours, theirs in pairs:
    print(f"\n{ours} against {theirs}")
    for batch in (1, 100, 10_000):
        a, b = ns[(ours, batch)], ns[(theirs, batch)]
        ratios = sorted(b[r] / a[r] for r in a if r in b)
        rounds = "  ".join(f"{a[r]:9.0f} / {b[r]:9.0f}" for r in sorted(a) if r in b)
        print(f"  batch {batch:>6}: {rounds}   xgserve is {ratios[0]:.1f}-{ratios[-1]:.1f}x faster")
PY
