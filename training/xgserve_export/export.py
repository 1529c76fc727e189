"""Turns a fitted ``Pipeline(ColumnTransformer, XGBRegressor | XGBClassifier)`` into a bundle folder."""

import datetime as _dt
import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from .parity import parity_frame
from .transformers import CategoryMap, KeepOrReplace, Strip

BUNDLE_FORMAT = 1


class ExportError(ValueError):
    """The pipeline holds something the engine cannot reproduce exactly."""


def export(pipeline, out_dir, name, X_sample, metrics=None, parity_rows=300, seed=0, example=None):
    """Writes the bundle of a fitted pipeline to ``out_dir`` and returns its ``bundle.json`` content.

    ``X_sample`` is a DataFrame of the training inputs: the exporter reads the input columns' types
    from it and draws realistic values for the parity cases from it. ``example``, a columnar request
    body, becomes ``example.json``: the example of the server's API documentation.
    """
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise ExportError("expected a fitted Pipeline of exactly (ColumnTransformer, XGBModel)")
    (ct_name, ct), (model_name, model) = pipeline.steps
    if not isinstance(ct, ColumnTransformer):
        raise ExportError(f"step {ct_name!r} of type {type(ct).__name__} is not a ColumnTransformer")
    if not isinstance(model, (xgboost.XGBRegressor, xgboost.XGBClassifier)):
        raise ExportError(f"step {model_name!r} of type {type(model).__name__} is not supported")
    if isinstance(model, xgboost.XGBClassifier) and getattr(model, "n_classes_", 2) > 2:
        raise ExportError(f"step {model_name!r}: multi-class classifiers are not supported")

    spec = _column_transformer_spec(ct, X_sample)
    booster = model.get_booster()
    if int(booster.num_features()) != spec["num_features"]:
        raise ExportError(
            f"the ColumnTransformer writes {spec['num_features']} features but the booster expects "
            f"{booster.num_features()}"
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / "model.json"))
    _write_json(out / "preprocess.json", spec)

    cases = parity_frame(spec, X_sample, parity_rows, seed)
    predictions, refused = _predict_each(pipeline, cases)
    _write_json(out / "parity.json", {
        "inputs": {c: [_json_value(v) for v in cases[c]] for c in cases.columns},
        # null where the pipeline refused the row; `refused` says why.
        "predictions": predictions,
        "refused": refused,
    })

    names = ["model.json", "preprocess.json", "parity.json"]
    example_path = out / "example.json"
    if example is not None:
        _predict(pipeline, pd.DataFrame(example))  # the example must be one the pipeline scores
        _write_json(example_path, example)
        names.append("example.json")
    elif example_path.exists():
        example_path.unlink()
    files = {f: _sha256(out / f) for f in names}
    content = hashlib.sha256((files["model.json"] + files["preprocess.json"]).encode()).hexdigest()
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": name,
        # Derived from the content, so retraining the same pipeline gives the same version.
        "version": content[:12],
        "created": _created(),
        "task": "classification" if isinstance(model, xgboost.XGBClassifier) else "regression",
        "libraries": {
            "python": platform.python_version(),
            "xgboost": xgboost.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        "metrics": metrics or {},
        "feature_names": spec["feature_names"],
        "files": files,
    }
    _write_json(out / "bundle.json", manifest)
    return manifest


def _predict(pipeline, frame):
    """The pipeline's own output as float32: probabilities of class 1 for a classifier."""
    model = pipeline.steps[-1][1]
    if isinstance(model, xgboost.XGBClassifier):
        return pipeline.predict_proba(frame)[:, 1].astype(np.float32)
    return np.asarray(pipeline.predict(frame), dtype=np.float32)


def _predict_each(pipeline, frame):
    """Predictions of every row, with the rows the pipeline refuses (say, log1p(-1) = -inf before a
    scaler) as null and their reasons: the engine must refuse exactly the same rows."""
    try:
        return [float(p) for p in _predict(pipeline, frame)], {}
    except ValueError:
        pass
    predictions, refused = [], {}
    for i in range(len(frame)):
        try:
            predictions.append(float(_predict(pipeline, frame.iloc[i:i + 1])[0]))
        except ValueError as error:
            predictions.append(None)
            refused[str(i)] = str(error)
    return predictions, refused


def _created():
    # SOURCE_DATE_EPOCH makes a rebuilt bundle byte-identical, as reproducible-builds tools expect.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch else _dt.datetime.now(_dt.timezone.utc)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write_json(path, value):
    Path(path).write_text(json.dumps(value, indent=1, allow_nan=False) + "\n")


def _json_value(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


# --- the ColumnTransformer -------------------------------------------------------------------------

def _column_transformer_spec(ct, X_sample):
    names_in = list(getattr(ct, "feature_names_in_", []))
    if not names_in:
        raise ExportError("the ColumnTransformer was not fitted on a DataFrame with column names")
    blocks, used = [], []
    for block_name, transformer, columns in ct.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        columns = _column_names(columns, names_in, block_name)
        if len(columns) == 0:
            continue
        kinds = [_input_kind(X_sample, c) for c in columns]
        steps, kinds_out, width, names = _steps_spec(block_name, transformer, columns, kinds)
        if any(k != "number" for k in kinds_out):
            raise ExportError(f"block {block_name!r} ends with text; finish it with an encoder")
        blocks.append({"name": block_name, "columns": columns, "steps": steps})
        used += [c for c in columns if c not in used]
        blocks[-1]["width"] = width
        blocks[-1]["feature_names"] = names
    inputs = [{"name": c, "type": _input_kind(X_sample, c)} for c in names_in if c in used]
    feature_names = [n for b in blocks for n in b["feature_names"]]
    return {
        "format": BUNDLE_FORMAT,
        "inputs": inputs,
        "blocks": blocks,
        # A sparse ColumnTransformer output makes XGBoost treat every absent (zero) entry as missing.
        "zeros_are_missing": bool(getattr(ct, "sparse_output_", False)),
        "num_features": len(feature_names),
        "feature_names": feature_names,
    }


def _column_names(columns, names_in, block_name):
    if isinstance(columns, slice) or callable(columns):
        raise ExportError(f"block {block_name!r}: column selectors must be lists of names")
    columns = [columns] if isinstance(columns, (str, int, np.integer)) else list(columns)
    if columns and all(isinstance(c, (bool, np.bool_)) for c in columns):
        columns = [n for n, keep in zip(names_in, columns) if keep]
    return [names_in[c] if isinstance(c, (int, np.integer)) else str(c) for c in columns]


def _input_kind(X_sample, column):
    dtype = X_sample[column].dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise ExportError(f"input column {column!r}: boolean columns are not supported")
    return "number" if pd.api.types.is_numeric_dtype(dtype) else "string"


def _flatten(name, transformer):
    if isinstance(transformer, Pipeline):
        for step_name, step in transformer.steps:
            yield from _flatten(f"{name}.{step_name}", step)
    elif transformer is None or (isinstance(transformer, str) and transformer == "passthrough"):
        return
    else:
        yield name, transformer


def _steps_spec(block_name, transformer, columns, kinds):
    """The block's ops in order, with the value kinds and names they leave behind."""
    steps, width, names = [], len(columns), list(columns)
    for step_name, step in _flatten(block_name, transformer):
        def fail(reason):
            raise ExportError(f"step {step_name!r} of type {type(step).__name__}: {reason}")

        if width != len(kinds):
            fail("only the last step of a block may encode")
        if isinstance(step, Strip):
            _need(kinds, "string", fail)
            steps.append({"op": "strip"})
        elif isinstance(step, KeepOrReplace):
            _need(kinds, "string", fail)
            steps.append({"op": "keep_or_replace", "keep": [str(k) for k in step.keep],
                          "replacement": str(step.replacement)})
        elif isinstance(step, CategoryMap):
            _need(kinds, "string", fail)
            steps.append({"op": "category_map", "maps": step.mappings_, "default": float(step.default)})
            kinds = ["number"] * len(kinds)
        elif isinstance(step, FunctionTransformer):
            if step.func is None:
                continue
            if step.func is not np.log1p:
                fail("only func=np.log1p is supported")
            if step.kw_args:
                fail("kw_args are not supported")
            _need(kinds, "number", fail)
            steps.append({"op": "log1p"})
        elif isinstance(step, StandardScaler):
            _need(kinds, "number", fail)
            steps.append({
                "op": "standardize",
                # mean_ is fitted even when with_mean=False; only the flags say what transform uses.
                "mean": [float(v) for v in step.mean_] if step.with_mean else None,
                "scale": [float(v) for v in step.scale_] if step.with_std else None,
            })
        elif isinstance(step, MinMaxScaler):
            _need(kinds, "number", fail)
            steps.append({"op": "min_max", "scale": [float(v) for v in step.scale_],
                          "min": [float(v) for v in step.min_],
                          "clip": bool(getattr(step, "clip", False)),
                          "clip_range": [float(v) for v in step.feature_range]})
        elif isinstance(step, SimpleImputer):
            if step.add_indicator:
                fail("add_indicator is not supported")
            nan = isinstance(step.missing_values, float) and np.isnan(step.missing_values)
            if kinds[0] == "number" and not nan:
                fail("on number columns only missing_values=np.nan is supported")
            if kinds[0] == "string" and step.missing_values is not None:
                # sklearn compares text with missing_values; np.nan never equals the None a JSON
                # null becomes, so such an imputer fills nothing in production.
                fail("on text columns use missing_values=None (np.nan does not match JSON nulls)")
            if len(step.statistics_) != len(kinds):
                fail("an imputer that drops all-missing columns is not supported")
            values = [_json_value(v) for v in step.statistics_]
            for kind, value in zip(kinds, values):
                if kind == "number" and not isinstance(value, (int, float)):
                    fail(f"cannot fill a number column with {value!r}")
            steps.append({"op": "impute", "values": [
                float(v) if k == "number" else str(v) for k, v in zip(kinds, values)]})
        elif isinstance(step, OneHotEncoder):
            _need(kinds, "string", fail)
            if getattr(step, "infrequent_categories_", None) is not None and \
                    any(c is not None for c in step.infrequent_categories_):
                fail("infrequent categories are not supported")
            categories = [_text_categories(c, fail) for c in step.categories_]
            drop = [None] * len(categories) if step.drop_idx_ is None else \
                [None if d is None else int(d) for d in step.drop_idx_]
            steps.append({"op": "one_hot", "categories": categories, "drop": drop,
                          "unknown": "ignore" if step.handle_unknown == "ignore" else "error"})
            kinds = ["number"] * len(kinds)
            names = [f"{c}={v}" for c, cats, d in zip(columns, categories, drop)
                     for i, v in enumerate(cats) if i != d]
            width = len(names)
        elif isinstance(step, OrdinalEncoder):
            _need(kinds, "string", fail)
            categories = [_text_categories(c, fail) for c in step.categories_]
            unknown_value = getattr(step, "unknown_value", None)
            steps.append({
                "op": "ordinal", "categories": categories,
                "unknown": "error" if step.handle_unknown == "error" else "use_encoded_value",
                "unknown_value": None if unknown_value is None or np.isnan(unknown_value)
                else float(unknown_value),
            })
            kinds = ["number"] * len(kinds)
        else:
            fail("not supported")
    return steps, kinds, width, names


def _need(kinds, kind, fail):
    if any(k != kind for k in kinds):
        fail(f"needs {kind} columns, got {kinds}")


def _text_categories(categories, fail):
    if any(not isinstance(c, str) for c in categories):
        fail("only text categories are supported (a null or number was seen while fitting)")
    return [str(c) for c in categories]
