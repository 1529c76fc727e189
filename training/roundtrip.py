"""Exporter round trip: fits pipelines that use every transformer the exporter supports, exports them,
and writes their predictions over the whole data set for the Rust engine to match.

    python training/roundtrip.py --out target/reference/roundtrip [--data ../shared/data/ford.csv]

Each pipeline lands in ``<out>/<name>/`` as a bundle plus ``predictions.json`` (the pipeline's float32
output for every row of the data set, null where it refuses the row).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder,
                                   StandardScaler)
from xgboost import XGBClassifier, XGBRegressor

from train import DEFAULT_DATA, read_ford
from xgserve_export import CategoryMap, ExportError, KeepOrReplace, Strip, export
from xgserve_export.export import _predict_each


def regressor():
    features = ColumnTransformer([
        ("scaled", Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]),
         ["year", "mpg"]),
        ("minmax", Pipeline([("impute", SimpleImputer(strategy="median")),
                             ("scale", MinMaxScaler(feature_range=(-1, 2), clip=True))]), ["mileage"]),
        ("logtax", Pipeline([("log", FunctionTransformer(np.log1p)),
                             ("scale", StandardScaler(with_mean=False))]), ["tax"]),
        ("gearbox", Pipeline([("strip", Strip()),
                              ("impute", SimpleImputer(missing_values=None, strategy="constant", fill_value="Manual")),
                              ("onehot", OneHotEncoder(handle_unknown="ignore", drop="first", sparse=False))]),
         ["transmission"]),
        ("fuel", Pipeline([("strip", Strip()),
                           ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))]),
         ["fuelType"]),
        ("model", Pipeline([("strip", Strip()), ("map", CategoryMap(default=-0.5))]), ["model"]),
        ("engine", "passthrough", ["engineSize"]),
    ], remainder="drop")
    return Pipeline([("features", features),
                     ("xgb", XGBRegressor(n_estimators=60, max_depth=5, tree_method="hist", random_state=3))])


def classifier():
    """Strict encoders (unknown categories are refused), a sparse ColumnTransformer output, and a
    remainder passthrough."""
    features = ColumnTransformer([
        ("fuel", Pipeline([("strip", Strip()), ("group", KeepOrReplace(["Petrol", "Diesel"], "Other")),
                           ("onehot", OneHotEncoder(handle_unknown="error"))]), ["fuelType"]),
        ("gearbox", Pipeline([("strip", Strip()), ("ordinal", OrdinalEncoder())]), ["transmission"]),
        ("drop-model", "drop", ["model"]),
        ("year", StandardScaler(), ["year"]),
    ], remainder="passthrough", sparse_threshold=0.99)
    return Pipeline([("features", features),
                     ("xgb", XGBClassifier(n_estimators=30, max_depth=3, random_state=5))])


def refused_pipeline():
    features = ColumnTransformer([("poly", FunctionTransformer(np.sqrt), ["mileage"])])
    return Pipeline([("features", features), ("xgb", XGBRegressor(n_estimators=2))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    data = read_ford(args.data)
    train, _ = train_test_split(data, test_size=0.2, random_state=1234)
    X_train = train.drop(columns="price")
    X_all = data.drop(columns="price")
    targets = {"regressor": train["price"], "classifier": (train["price"] > train["price"].median()).astype(int)}

    for name, build in [("regressor", regressor), ("classifier", classifier)]:
        pipeline = build().fit(X_train, targets[name])
        out = args.out / name
        manifest = export(pipeline, out, f"roundtrip_{name}", X_train)
        predictions, refused = _predict_each(pipeline, X_all)
        (out / "predictions.json").write_text(json.dumps({"predictions": predictions, "refused": refused}))
        print(f"{name}: exported {manifest['version']}, {len(predictions)} predictions, {len(refused)} refused")

    try:
        export(refused_pipeline().fit(X_train, train["price"]), args.out / "refused", "refused", X_train)
    except ExportError as error:
        print(f"refused as expected: {error}")
    else:
        raise SystemExit("the exporter accepted np.sqrt, which the engine does not implement")


if __name__ == "__main__":
    main()
