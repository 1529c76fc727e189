"""Times XGBoost's own prediction paths and tl2cgen's compiled trees on one thread, on the engine
bench's rows (features.py): XGBoost's ``inplace_predict`` (trees only) and ``pred_contribs``
(exact TreeSHAP), and the fastest of four tl2cgen builds (plain, quantized thresholds, branches
annotated with these rows, both) per batch, at batches of 1, 100 and 10,000 rows. Prints one line
per measurement, ``<name> <batch> <ns per row, median> <min>``; the compiled libraries are kept
beside FEATURES.npy, one per model and build. BATCHES (comma-separated) picks some of them:

    target/anchors/venv/bin/python benches/anchors/anchors.py FEATURES.npy MODEL.json [seconds [BATCHES]]
"""

import contextlib
import hashlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tl2cgen
import treelite
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


def tl2cgen_predictors(features_path, model, features):
    """One predictor per tl2cgen build, compiled with gcc the first time."""
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]
    home = Path(features_path).parent / "tl2cgen"
    home.mkdir(exist_ok=True)
    trees = treelite.frontend.load_xgboost_model(model)
    annotation = home / f"{digest}-annotation.json"
    if not annotation.exists():
        tl2cgen.annotate_branch(trees, tl2cgen.DMatrix(features, dtype="float32"), path=str(annotation),
                                nthread=1, verbose=False)
    builds = {"plain": {}, "quantize": {"quantize": 1}, "annotate": {"annotate_in": str(annotation)},
              "quantize+annotate": {"quantize": 1, "annotate_in": str(annotation)}}
    predictors = {}
    for name, params in builds.items():
        library = home / f"{digest}-{name}.so"
        if not library.exists():
            tl2cgen.export_lib(trees, toolchain="gcc", libpath=str(library), params=params, nthread=1,
                               verbose=False)
        predictors[name] = tl2cgen.Predictor(str(library), nthread=1, verbose=False)
    return predictors


def main():
    features, model = np.load(sys.argv[1]), sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    batches = [int(b) for b in sys.argv[4].split(",")] if len(sys.argv) > 4 else BATCHES
    booster = xgboost.Booster(model_file=model)
    booster.set_param({"nthread": 1})
    version = xgboost.__version__
    # tl2cgen logs its compiler's progress on stdout, which carries this script's figures.
    with contextlib.redirect_stdout(sys.stderr):
        compiled = tl2cgen_predictors(sys.argv[1], model, features)
    for batch in batches:
        rows = np.ascontiguousarray(features[:batch])
        matrix = xgboost.DMatrix(rows, missing=np.nan, nthread=1)
        measured = {
            f"xgboost-{version}-inplace_predict": lambda: booster.inplace_predict(rows, missing=np.nan),
            f"xgboost-{version}-pred_contribs": lambda: booster.predict(matrix, pred_contribs=True),
        }
        for name, call in measured.items():
            median, fastest = per_row(call, batch, seconds)
            print(f"{name} {batch} {median:.0f} {fastest:.0f}", flush=True)
        # tl2cgen: the build with the lowest median at this batch.
        rows_matrix = tl2cgen.DMatrix(rows, dtype="float32")
        timed = {name: per_row(lambda p=p: p.predict(rows_matrix), batch, seconds / 2)
                 for name, p in compiled.items()}
        best = min(timed, key=lambda name: timed[name][0])
        print(f"tl2cgen-{tl2cgen.__version__}-best {batch} {timed[best][0]:.0f} {timed[best][1]:.0f}", flush=True)
        print(f"tl2cgen at batch {batch}: the fastest build is {best}", file=sys.stderr)


if __name__ == "__main__":
    main()
