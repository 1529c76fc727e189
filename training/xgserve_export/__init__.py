"""Export a fitted scikit-learn ``Pipeline(ColumnTransformer, XGBModel)`` as an xgserve bundle.

A bundle is a folder of four files (see ``docs/bundle.md``):

* ``model.json``      - the booster, exactly as ``Booster.save_model`` writes it;
* ``preprocess.json`` - the ColumnTransformer as a declarative spec the Rust engine evaluates;
* ``parity.json``     - synthetic inputs with this pipeline's own predictions, so the engine can prove
  it agrees before it serves;
* ``bundle.json``     - name, version, library versions, metrics, feature names and file digests.

Only transformers whose arithmetic the engine reproduces exactly are exported; anything else fails with
the step's name and type, because a silently different prediction is worse than no export.
"""

from .transformers import CategoryMap, KeepOrReplace, Strip
from .export import ExportError, export

__all__ = ["CategoryMap", "ExportError", "KeepOrReplace", "Strip", "export"]
