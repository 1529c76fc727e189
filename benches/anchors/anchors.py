"""Times XGBoost's own prediction paths on one thread, on the engine bench's rows (features.py):
``inplace_predict`` (trees only) and ``pred_contribs`` (exact TreeSHAP), at batches of 1, 100 and
10,000 rows. Prints one line per measurement, ``<name> <batch> <ns per row, median> <min>``:

    target/anchors/venv/bin/python benches/anchors/anchors.py FEATURES.npy MODEL.json [seconds]
"""

import statistics
import sys
import time

import numpy as np
import xgboost

BATCHES = (1, 100, 10_000)


def per_row(call, rows, seconds):
    """Median and minimum ns per row over repeated calls filling about ``seconds``."""
    call()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - start) / rows)
    return statistics.median(times), min(times)


def main():
    features, model = np.load(sys.argv[1]), sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    booster = xgboost.Booster(model_file=model)
    booster.set_param({"nthread": 1})
    version = xgboost.__version__
    for batch in BATCHES:
        rows = np.ascontiguousarray(features[:batch])
        matrix = xgboost.DMatrix(rows, missing=np.nan, nthread=1)
        measured = {
            f"xgboost-{version}-inplace_predict": lambda: booster.inplace_predict(rows, missing=np.nan),
            f"xgboost-{version}-pred_contribs": lambda: booster.predict(matrix, pred_contribs=True),
        }
        for name, call in measured.items():
            median, fastest = per_row(call, batch, seconds)
            print(f"{name} {batch} {median:.0f} {fastest:.0f}", flush=True)


if __name__ == "__main__":
    main()
