"""What the OpenAPI document cannot say, told to schemathesis (loaded through SCHEMATHESIS_HOOKS).

A columnar /predict body needs its lists to be of equal length, which JSON Schema cannot express.
Bodies generated as valid are cut to their shortest list so they are valid for the server too;
bodies generated as invalid are left as they are.
"""

import schemathesis
from schemathesis.generation.modes import GenerationMode


@schemathesis.hook
def map_case(context, case):
    body = case.body
    valid = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if valid and case.operation.path == "/predict" and isinstance(body, dict):
        lists = [value for value in body.values() if isinstance(value, list)]
        if lists:
            rows = min(len(value) for value in lists)
            case.body = {name: value[:rows] if isinstance(value, list) else value for name, value in body.items()}
    return case
