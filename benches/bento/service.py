"""A BentoML 1.0 service for the Ford pipeline, as the seed served it: POST /predict takes the
columnar JSON body and answers the float32 predictions. Only for measuring the seed's design
(benches/stream.rs with XGSERVE_BENCH_PREDICT_URL); xgserve replaces it."""

import sys
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
from bentoml.io import JSON, NumpyNdarray

# The pipeline's own transformers are pickled by module path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))

runner = bentoml.sklearn.get("ford_used_car_price:latest").to_runner()
svc = bentoml.Service("ford_used_car_price", runners=[runner])


@svc.api(input=JSON(), output=NumpyNdarray())
def predict(columns):
    frame = pd.DataFrame(columns)
    return np.asarray(runner.predict.run(frame), dtype=np.float32)
