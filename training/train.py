"""Trains the Ford used-car price model exactly as the original pipeline did, and exports the bundle.

    python training/train.py [--data ../shared/data/ford.csv] [--out models/ford_used_car_price]
                             [--predictions FILE] [--contributions FILE]

``--predictions`` also writes the pipeline's float32 prediction for every row of the data set, which
the parity tests compare with the Rust engine; ``--contributions`` XGBoost's exact per-feature
contributions (``pred_contribs``: one per model feature, then the bias) for every row.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.metrics import mean_absolute_error, mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from xgboost import DMatrix, XGBRegressor

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "training"))

from xgserve_export import CategoryMap, KeepOrReplace, Strip, export  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ford.csv"
# The request body the Bento service was documented with; the API docs' example.
EXAMPLE = {"model": ["C-MAX", "EcoSport"], "year": [2014, 2019], "price": [8295, 18995],
           "transmission": ["Semi-Auto", "Automatic"], "mileage": [40000, 1400],
           "fuelType": ["Diesel", "Petrol"], "tax": [160, 150], "mpg": [50.4, 44.1],
           "engineSize": [2.0, 1.0]}
DEFAULT_OUT = REPO / "models" / "ford_used_car_price"


def read_ford(path):
    data = pd.read_csv(path)
    # Every model name in the file has a leading space.
    data["model"] = data["model"].str.strip()
    return data


def build_pipeline():
    """The original's ColumnTransformer and regressor, with its closures replaced by known steps."""
    features = ColumnTransformer(
        [
            ("LogStandardize", Pipeline([("Log1P", FunctionTransformer(np.log1p)),
                                         ("Scaler", StandardScaler())]), ["mileage", "tax"]),
            ("OneHot", Pipeline([("Strip", Strip()),
                                 ("OneHotEncoder", OneHotEncoder(handle_unknown="ignore",
                                                                 sparse=False))]),
             ["transmission"]),
            ("ReplaceOneHot", Pipeline([("Strip", Strip()),
                                        ("Replacer", KeepOrReplace(["Petrol", "Diesel"], "Others")),
                                        ("OneHotEncoder", OneHotEncoder(handle_unknown="ignore",
                                                                        sparse=False))]),
             ["fuelType"]),
            ("StringToNumeric", Pipeline([("Strip", Strip()),
                                          ("Frequency", CategoryMap(default=0.0))]), ["model"]),
            ("Standardize", StandardScaler(), ["year", "mpg", "engineSize"]),
        ],
        remainder="drop",
        n_jobs=1,
    )
    regressor = XGBRegressor(max_depth=None, n_estimators=100, random_state=214)
    return Pipeline([("FeatureEngineering", features), ("Regressor", regressor)])


def split_ford(data):
    """The original pipeline's split: 80% to train on, 20% to test, always the same rows."""
    return train_test_split(data, test_size=0.2, random_state=1234)


def fitted_pipeline(path):
    """The pipeline fitted as ``main`` fits it, on the training split of the data set at ``path``."""
    train, _ = split_ford(read_ford(path))
    return build_pipeline().fit(train.drop(columns="price"), train["price"])


def parity_features(pipeline, bundle):
    """The bundle's parity cases (nulls, unknown and padded categories, extremes) that the pipeline
    does not refuse, read from its parity.json as the engine reads them, as the pipeline hands them
    to the regressor (float32, NaN for missing): the cases' indices and their features. The few
    cases with a feature beyond float32's range (infinite as the booster reads it) are left out: a
    DMatrix refuses them."""
    parity = json.loads((bundle / "parity.json").read_text())
    spec = json.loads((bundle / "preprocess.json").read_text())
    text = {column["name"] for column in spec["inputs"] if column["type"] == "string"}
    cases = pd.DataFrame({name: pd.Series(values, dtype=object if name in text else np.float64)
                          for name, values in parity["inputs"].items()})
    kept = [i for i in range(len(cases)) if str(i) not in parity["refused"]]
    features = np.asarray(pipeline[:-1].transform(cases.iloc[kept]), dtype=np.float32)
    finite = ~np.isinf(features).any(axis=1)
    return [i for i, ok in zip(kept, finite) if ok], features[finite]


def metrics(y_true, y_pred):
    y_pred = np.clip(y_pred, 0.0, np.inf)
    y_true = np.asarray(y_true, dtype=np.float64)
    return {
        "rmse": float(mean_squared_error(y_true, y_pred) ** 0.5),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mape_percent": float(np.nanmean(np.abs((y_true - y_pred) / y_true)) * 100),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--contributions", type=Path)
    args = parser.parse_args()

    data = read_ford(args.data)
    train, test = split_ford(data)
    X_train, y_train = train.drop(columns="price"), train["price"]
    X_test, y_test = test.drop(columns="price"), test["price"]

    pipeline = build_pipeline()
    pipeline.fit(X_train, y_train)
    scores = {"train": metrics(y_train, pipeline.predict(X_train)),
              "test": metrics(y_test, pipeline.predict(X_test))}
    for split, values in scores.items():
        print(f"{split:>5}: RMSE {values['rmse']:.2f}  MAE {values['mae']:.2f}  "
              f"MAPE {values['mape_percent']:.2f}%")

    manifest = export(pipeline, args.out, "ford_used_car_price", X_train, metrics=scores, example=EXAMPLE)
    print(f"wrote {args.out} (version {manifest['version']})")

    if args.predictions:
        everything = np.asarray(pipeline.predict(data.drop(columns="price")), dtype=np.float32)
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        args.predictions.write_text(json.dumps({"predictions": [float(p) for p in everything]}))
        print(f"wrote {len(everything)} predictions to {args.predictions}")

    if args.contributions:
        # The features as the pipeline hands them to the regressor, into a DMatrix as its predict
        # makes one (NaN is missing).
        features = pipeline[:-1].transform(data.drop(columns="price"))
        contributions = pipeline[-1].get_booster().predict(DMatrix(features, missing=np.nan), pred_contribs=True)
        parity = parity_contributions(pipeline, args.out)
        args.contributions.parent.mkdir(parents=True, exist_ok=True)
        args.contributions.write_text(json.dumps({"contributions": contributions.astype(np.float32).tolist(),
                                                  "parity": parity}))
        print(f"wrote {len(contributions)} rows of contributions and {len(parity['rows'])} parity cases' "
              f"to {args.contributions}")


def parity_contributions(pipeline, bundle):
    """``pred_contribs`` for the parity cases ``parity_features`` keeps: ``rows`` the cases'
    indices, ``contributions`` theirs (XGBoost gives no reference for the ones it leaves out)."""
    kept, features = parity_features(pipeline, bundle)
    contributions = pipeline[-1].get_booster().predict(DMatrix(features, missing=np.nan), pred_contribs=True)
    return {"rows": kept, "contributions": contributions.astype(np.float32).tolist()}


if __name__ == "__main__":
    main()
