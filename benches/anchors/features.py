"""Writes the engine bench's rows as the Python pipeline hands them to the regressor: the bundle's
parity cases that it scores with finite features (as benches/engine.rs picks them), cycled to
10,000 rows, float32, NaN for a missing value. Run in the reference venv (.venv):

    .venv/bin/python benches/anchors/features.py DATA OUT.npy
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "training"))

from train import build_pipeline, read_ford  # noqa: E402

ROWS = 10_000


def main():
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    train, _ = train_test_split(read_ford(data), test_size=0.2, random_state=1234)
    pipeline = build_pipeline().fit(train.drop(columns="price"), train["price"])
    bundle = REPO / "models" / "ford_used_car_price"
    parity = json.loads((bundle / "parity.json").read_text())
    spec = json.loads((bundle / "preprocess.json").read_text())
    text = {column["name"] for column in spec["inputs"] if column["type"] == "string"}
    cases = pd.DataFrame({name: pd.Series(values, dtype=object if name in text else np.float64)
                          for name, values in parity["inputs"].items()})
    kept = [i for i in range(len(cases)) if str(i) not in parity["refused"]]
    features = np.asarray(pipeline[:-1].transform(cases.iloc[kept]), dtype=np.float32)
    features = features[~np.isinf(features).any(axis=1)]
    cycled = features[np.arange(ROWS) % len(features)]
    np.save(out, cycled)
    print(f"{len(features)} parity cases' features, cycled to {ROWS} rows: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
