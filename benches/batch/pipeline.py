"""The Python pipeline re-pricing a large CSV file the way a data team would without xgserve:
pandas reads it in chunks, the fitted pipeline predicts each chunk, the predictions are appended
to a CSV. Trains the pipeline first (as training/train.py does; not timed) and prints the seconds
the scoring took. Run in the reference venv (.venv):

    .venv/bin/python benches/batch/pipeline.py DATA INPUT.csv OUTPUT.csv
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "training"))

from train import fitted_pipeline  # noqa: E402

CHUNK_ROWS = 100_000


def main():
    data, source, target = (Path(a) for a in sys.argv[1:4])
    pipeline = fitted_pipeline(data)
    start = time.perf_counter()
    rows = 0
    with open(target, "w") as out:
        out.write("prediction\n")
        for chunk in pd.read_csv(source, chunksize=CHUNK_ROWS):
            chunk["model"] = chunk["model"].str.strip()
            predictions = np.asarray(pipeline.predict(chunk.drop(columns="price")), dtype=np.float32)
            out.write("\n".join(repr(float(p)) for p in predictions))
            out.write("\n")
            rows += len(chunk)
    print(f"{rows} {time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    main()
