"""Writes the engine bench's rows as the Python pipeline hands them to the regressor: the bundle's
parity cases that it scores with finite features (as benches/engine.rs picks them), cycled to
10,000 rows, float32, NaN for a missing value. Run in the reference venv (.venv):

    .venv/bin/python benches/anchors/features.py DATA OUT.npy
"""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "training"))

from train import fitted_pipeline, parity_features  # noqa: E402

ROWS = 10_000


def main():
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    _, features = parity_features(fitted_pipeline(data), REPO / "models" / "ford_used_car_price")
    cycled = features[np.arange(ROWS) % len(features)]
    np.save(out, cycled)
    print(f"{len(features)} parity cases' features, cycled to {ROWS} rows: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
