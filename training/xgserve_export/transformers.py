"""The custom preprocessing steps the exporter knows, written as ordinary sklearn transformers.

They replace the original notebook's ``FunctionTransformer`` closures (which cannot be inspected) with
classes whose parameters are plain data, so the exporter can write them into ``preprocess.json``.
"""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


def _as_frame(X):
    return X.copy() if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))


class Strip(BaseEstimator, TransformerMixin):
    """Strips surrounding whitespace from text values (``str.strip``); nulls stay null."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        frame = _as_frame(X)
        return frame.applymap(lambda v: v.strip() if isinstance(v, str) else v).to_numpy(dtype=object)


class KeepOrReplace(BaseEstimator, TransformerMixin):
    """Keeps the listed categories and replaces every other value, null included, by ``replacement``.

    The original pipeline grouped minor fuel types this way: ``fuelType`` not in {Petrol, Diesel}
    becomes "Others".
    """

    def __init__(self, keep=("Petrol", "Diesel"), replacement="Others"):
        self.keep = keep
        self.replacement = replacement

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        frame = _as_frame(X)
        return frame.where(frame.isin(list(self.keep)), self.replacement).to_numpy(dtype=object)


class CategoryMap(BaseEstimator, TransformerMixin):
    """Maps each category to a number learned at fit time; unseen values and nulls get ``default``.

    With ``mapping=None`` the map is each category's frequency in the fitted data (``value_counts() /
    len``), which is how the original pipeline encoded the car model.
    """

    def __init__(self, mapping=None, default=0.0):
        self.mapping = mapping
        self.default = default

    def fit(self, X, y=None):
        frame = _as_frame(X)
        if self.mapping is not None:
            self.mappings_ = [dict(self.mapping) for _ in frame.columns]
        else:
            self.mappings_ = [
                {str(k): float(v) for k, v in (frame[c].value_counts() / len(frame)).items()}
                for c in frame.columns
            ]
        return self

    def transform(self, X):
        frame = _as_frame(X)
        out = np.empty(frame.shape, dtype=np.float64)
        for j, column in enumerate(frame.columns):
            mapping = self.mappings_[j]
            out[:, j] = [mapping.get(v, self.default) if isinstance(v, str) else self.default
                         for v in frame[column]]
        return out
