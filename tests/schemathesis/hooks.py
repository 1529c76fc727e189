"""What the OpenAPI document cannot say, told to schemathesis (loaded through SCHEMATHESIS_HOOKS).

The columns of a request need the same number of values, and a v2 tensor's shape must be that number:
JSON Schema cannot express either. Bodies generated as valid are cut to their shortest column (v2
data flattened, shapes set to the length) so they are valid for the server too; bodies generated as invalid are left as
they are.
"""

import schemathesis
from schemathesis.generation.modes import GenerationMode


def equal_lengths(columns):
    """The columns cut to the shortest one's length, and that length."""
    rows = min(len(values) for values in columns)
    return [values[:rows] for values in columns], rows


def flat(data):
    """Tensor data in row-major order, as the server reads nested data."""
    return [value for item in data for value in (item if isinstance(item, list) else [item])]


@schemathesis.hook
def map_case(context, case):
    body = case.body
    valid = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if not valid or not isinstance(body, dict):
        return case
    path = case.operation.path
    if path in ("/predict", "/explain"):
        names = [name for name, value in body.items() if isinstance(value, list)]
        if names:
            columns, _ = equal_lengths([body[name] for name in names])
            case.body = {**body, **dict(zip(names, columns))}
    elif path.endswith("/infer") and isinstance(body.get("inputs"), list):
        tensors = body["inputs"]
        columns, rows = equal_lengths([flat(tensor["data"]) for tensor in tensors])
        case.body = {
            **body,
            "inputs": [{**tensor, "data": data, "shape": [rows]} for tensor, data in zip(tensors, columns)],
        }
    return case
