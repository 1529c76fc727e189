"""Small models saved by one XGBoost version, with that version's own predictions, as test fixtures.

Run it once per XGBoost version, each in its own environment (see fixture-requirements/):

    python training/make_version_fixtures.py --out tests/fixtures/xgboost

It writes ``<out>/<xgboost version>/<case>.json`` and ``.ubj`` (the same booster in both formats) and
``<case>.expected.json``: the input rows (null = NaN) and the float32 predictions, margins and exact
contributions (``pred_contribs``: one per feature, then the bias) libxgboost gives for them. Inputs include NaN, zeros and values exactly equal to split thresholds. It also writes
models the engine must refuse (dart, gblinear, multi-class, categorical splits), under ``refuse-*``.

``--add-contributions`` adds the contributions to fixtures written before they were recorded,
loading each saved model in the version that saved it and leaving the models as they are.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import xgboost as xgb

VERSION = tuple(int(p) for p in xgb.__version__.split(".")[:2])
FEATURES = 5


def training_data(rng, rows=400):
    X = rng.normal(size=(rows, FEATURES)) * np.array([1.0, 10.0, 0.1, 100.0, 1.0])
    X[rng.random(X.shape) < 0.1] = np.nan
    X[rng.random(X.shape) < 0.05] = 0.0
    X[:, 4] = np.round(X[:, 4])  # a few repeated values, so thresholds sit on data points
    signal = np.nan_to_num(X[:, 0]) + 0.1 * np.nan_to_num(X[:, 1]) - 2 * np.nan_to_num(X[:, 2])
    return X, signal


def labels(objective, signal, rng):
    if objective in ("binary:logistic", "binary:logitraw"):
        return (signal + rng.normal(size=signal.shape) > 0).astype(np.float64)
    if objective == "reg:logistic":
        return 1 / (1 + np.exp(-signal))
    if objective in ("count:poisson",):
        return rng.poisson(np.exp(np.clip(signal, -3, 3) / 2)).astype(np.float64)
    if objective in ("reg:gamma", "reg:tweedie"):
        return np.exp(np.clip(signal, -3, 3) / 2) + 0.01
    return signal * 100 + 3000


def thresholds(booster):
    """(feature, threshold) of every split in the model, read from its JSON dump."""
    found = set()
    for tree in booster.get_dump(dump_format="json"):
        stack = [json.loads(tree)]
        while stack:
            node = stack.pop()
            if "split" in node:
                found.add((int(str(node["split"]).lstrip("f")), float(np.float32(node["split_condition"]))))
                stack += node["children"]
    return sorted(found)


def probe_rows(booster, rng, rows=160):
    X = rng.normal(size=(rows, FEATURES)) * np.array([1.0, 10.0, 0.1, 100.0, 1.0])
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    extra = []
    for feature, value in thresholds(booster):
        row = rng.normal(size=FEATURES)
        row[feature] = value  # exactly on the threshold: XGBoost sends it right (x < t is false)
        extra.append(row)
        below = row.copy()
        below[feature] = np.nextafter(np.float32(value), np.float32(-np.inf))
        extra.append(below)
    extra.append(np.full(FEATURES, np.nan))
    extra.append(np.zeros(FEATURES))
    extra.append(np.array([1e30, -1e30, 3e38, -3e38, 1e-30]))
    return np.vstack([X] + extra).astype(np.float32)


def predict(booster, X):
    dmatrix = xgb.DMatrix(X, missing=np.nan)
    kwargs = {}
    best = booster.attr("best_iteration")
    if best is not None:
        # What the scikit-learn wrapper does, and so what the engine does.
        kwargs["iteration_range"] = (0, int(best) + 1)
    return (booster.predict(dmatrix, **kwargs).astype(np.float32),
            booster.predict(dmatrix, output_margin=True, **kwargs).astype(np.float32))


def cases():
    objectives = ["reg:squarederror", "reg:pseudohubererror", "reg:logistic", "binary:logistic",
                  "binary:logitraw", "count:poisson", "reg:gamma", "reg:tweedie"]
    if VERSION >= (1, 7):
        objectives.append("reg:absoluteerror")
    for objective in objectives:
        yield objective.replace(":", "-"), {"objective": objective}, {}
    yield "hist-depth8", {"objective": "reg:squarederror", "tree_method": "hist", "max_depth": 8}, {}
    yield "forest", {"objective": "reg:squarederror", "num_parallel_tree": 3, "subsample": 0.8,
                     "colsample_bynode": 0.8}, {}
    yield "early-stopping", {"objective": "reg:squarederror", "eta": 0.8}, {"early_stopping_rounds": 2}
    yield "refuse-dart", {"objective": "reg:squarederror", "booster": "dart"}, {}
    yield "refuse-gblinear", {"objective": "reg:squarederror", "booster": "gblinear"}, {}
    yield "refuse-multiclass", {"objective": "multi:softprob", "num_class": 3}, {}



def train(name, params, extra, X, signal, rng):
    y = labels(params["objective"], signal, rng)
    if params["objective"] == "multi:softprob":
        y = np.digitize(signal, [-0.5, 0.5]).astype(np.float64)
    dtrain = xgb.DMatrix(X, label=y, missing=np.nan)
    kwargs = {}
    if "early_stopping_rounds" in extra:
        half = len(y) // 2
        dvalid = xgb.DMatrix(X[half:], label=y[half:], missing=np.nan)
        kwargs = {"evals": [(dvalid, "valid")], "early_stopping_rounds": extra["early_stopping_rounds"],
                  "verbose_eval": False}
    return xgb.train({"max_depth": 4, "seed": 7, **params}, dtrain, num_boost_round=12, **kwargs)


def categorical(rng):
    X = rng.integers(0, 4, size=(300, 2)).astype(np.float64)
    y = X[:, 0] * 3 + X[:, 1]
    dtrain = xgb.DMatrix(X, label=y, feature_types=["c", "q"], enable_categorical=True)
    return xgb.train({"tree_method": "hist", "max_depth": 3, "max_cat_to_onehot": 1}, dtrain, 4)


def sigmoid_cap(out):
    """libxgboost's sigmoid where its exponent cap matters: a margin near -99.5 (set through
    base_margin, since no trained model reaches it), written to ``sigmoid-cap.expected.json``."""
    rng = np.random.default_rng(99)
    X = rng.normal(size=(50, 2))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 1}, xgb.DMatrix(X, label=(X[:, 0] > 0)), 1)
    probe = xgb.DMatrix(X[:1], base_margin=np.array([-100.0]))
    margin = float(booster.predict(probe, output_margin=True)[0])
    prediction = float(booster.predict(probe)[0])
    (out / "sigmoid-cap.expected.json").write_text(json.dumps({"margin": margin, "prediction": prediction}))


def contributions(booster, rows):
    """libxgboost's exact path-dependent TreeSHAP values, float32, a row per probe row."""
    kwargs = {}
    best = booster.attr("best_iteration")
    if best is not None:
        kwargs["iteration_range"] = (0, int(best) + 1)
    values = booster.predict(xgb.DMatrix(rows, missing=np.nan), pred_contribs=True, **kwargs)
    return [[float(v) for v in row] for row in values.astype(np.float32)]


def add_contributions(out):
    for expected_path in sorted(out.glob("*.expected.json")):
        expected = json.loads(expected_path.read_text())
        if "rows" not in expected:
            continue
        booster = xgb.Booster(model_file=str(out / expected_path.name.replace(".expected.json", ".json")))
        rows = np.array([[np.nan if v is None else v for v in row] for row in expected["rows"]], dtype=np.float64)
        expected["contributions"] = contributions(booster, rows)
        expected_path.write_text(json.dumps(expected))
    print(f"added contributions to {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--add-contributions", action="store_true")
    args = parser.parse_args()
    out = args.out / xgb.__version__
    if args.add_contributions:
        add_contributions(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    X, signal = training_data(rng)
    for name, params, extra in cases():
        booster = train(name, params, extra, X, signal, rng)
        booster.save_model(str(out / f"{name}.json"))
        booster.save_model(str(out / f"{name}.ubj"))
        if name.startswith("refuse-"):
            continue
        probe = probe_rows(booster, rng)
        predictions, margins = predict(booster, probe)
        (out / f"{name}.expected.json").write_text(json.dumps({
            "xgboost": xgb.__version__,
            "objective": params["objective"],
            "rows": [[None if np.isnan(v) else float(v) for v in row] for row in probe],
            "predictions": [float(p) for p in predictions],
            "margins": [float(m) for m in margins],
            "contributions": contributions(booster, probe),
        }))
    if VERSION >= (1, 6):
        try:
            booster = categorical(rng)
        except Exception as error:  # noqa: BLE001 - older versions cannot train categorical splits
            print(f"no categorical fixture: {error}")
        else:
            booster.save_model(str(out / "refuse-categorical.json"))
            booster.save_model(str(out / "refuse-categorical.ubj"))
    sigmoid_cap(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
