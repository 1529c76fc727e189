"""Synthetic parity cases: every category, unknown and padded categories, nulls and extreme values.

The cases are drawn from the spec (which categories exist) and the training sample (which numbers are
realistic), so they cover what real traffic sends and what it should never send.
"""

import numpy as np
import pandas as pd

# Values no category list holds, including whitespace-only and non-ASCII text.
UNKNOWN_TEXT = ["", " ", "unknown-category", "ÄÖÜ-ß", "\u00a0"]
# Whitespace that Python's str.strip removes; the engine must strip the same characters.
PADDING = [(" ", ""), ("", "  "), ("\t", "\n"), ("\u2003", "\u00a0"), ("\x1c", "\x1f")]
EXTREME_NUMBERS = [0.0, -0.0, 1.0, -1.0, 1e-300, 1e12, -1e12, 1.7976931348623157e308, 2.5e-8]


def parity_frame(spec, X_sample, rows, seed):
    """At least ``rows`` cases; more when one column has more fixed cases than that."""
    rng = np.random.default_rng(seed)
    fixed = {}
    for column in spec["inputs"]:
        name = column["name"]
        if column["type"] == "string":
            fixed[name] = _fixed_text(name, spec, rng)
        else:
            fixed[name] = _fixed_numbers(X_sample[name])
    n = max([rows] + [len(v) for v in fixed.values()])
    frame = {}
    for column in spec["inputs"]:
        name = column["name"]
        sample = X_sample[name].dropna()
        if column["type"] == "string":
            drawn = list(rng.choice(sample.astype(str).to_numpy(), size=n - len(fixed[name])))
            frame[name] = pd.Series(rng.permutation(np.array(fixed[name] + drawn, dtype=object)),
                                    dtype=object)
        else:
            drawn = rng.choice(sample.to_numpy(dtype=np.float64), size=n - len(fixed[name]))
            # Halfway values between data points land between split thresholds too.
            drawn[::3] += 0.5
            values = np.concatenate([np.array(fixed[name], dtype=np.float64), drawn])
            frame[name] = pd.Series(rng.permutation(values), dtype=np.float64)
    return pd.DataFrame(frame)


def _known_categories(name, spec):
    known = []
    for block in spec["blocks"]:
        if name not in block["columns"]:
            continue
        j = block["columns"].index(name)
        for step in block["steps"]:
            if step["op"] in ("one_hot", "ordinal"):
                known += step["categories"][j]
            elif step["op"] == "category_map":
                known += list(step["maps"][j])
            elif step["op"] == "keep_or_replace":
                known += step["keep"] + [step["replacement"]]
            elif step["op"] == "impute" and isinstance(step["values"][j], str):
                known.append(step["values"][j])
    return sorted(set(known))


def _fixed_text(name, spec, rng):
    known = _known_categories(name, spec)
    padded = [left + k + right for k, (left, right) in zip(rng.permutation(known), PADDING)]
    return known + UNKNOWN_TEXT + [None, None] + padded


def _fixed_numbers(sample):
    values = sample.dropna().to_numpy(dtype=np.float64)
    quantiles = list(np.quantile(values, [0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0]))
    return EXTREME_NUMBERS + quantiles + [np.nan, np.nan, np.nan]
