"""Real Open Inference Protocol clients against a running xgserve: tritonclient over HTTP (binary
tensors on and off, JSON and binary outputs, compressed requests, the asyncio client, gevent's
async_infer) and over gRPC (health, metadata, infer, an error), with Ford rows as numpy arrays.
Every answer must equal, bit for bit, what `/predict` answers for the same rows, and the output
`contributions`, asked for with `predict`, what `/explain` answers.

Run by tests/oip_clients.rs: clients.py --http PORT --grpc PORT --data ford.csv --rows N.
Prints one "ok <case>" line per case; exits non-zero at the first difference.
"""

import argparse
import asyncio
import csv
import json
import sys
import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

TEXT = ("model", "transmission", "fuelType")
INTEGER = ("year", "mileage", "tax")
REAL = ("mpg", "engineSize")


def read_rows(path, count):
    """The first `count` rows, as the columnar JSON /predict takes and as numpy tensors."""
    with open(path, newline="") as f:
        rows = [row for _, row in zip(range(count), csv.DictReader(f))]
    columns = {name: [row[name] for row in rows] for name in TEXT + INTEGER + REAL}
    body = {name: columns[name] for name in TEXT}
    body.update({name: [int(v) for v in columns[name]] for name in INTEGER})
    body.update({name: [float(v) for v in columns[name]] for name in REAL})
    tensors = {name: np.array(columns[name], dtype=np.object_) for name in TEXT}
    tensors.update({name: np.array(body[name], dtype=np.int64) for name in INTEGER})
    tensors.update({name: np.array(body[name], dtype=np.float64) for name in REAL})
    return body, tensors


def predict(port, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return np.array(json.loads(answer.read()), dtype=np.float32)


def explain(port, body):
    """/explain's answer as the v2 output `contributions` carries it: per row each column's
    contribution, in the order /explain writes them, then the base value."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/explain", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        rows = json.loads(answer.read())
    return np.array([[*row["contributions"].values(), row["base_value"]] for row in rows], dtype=np.float32)


def same_contributions(case, expected, explained, answer):
    """Both outputs asked for, each equal to its reference bit for bit."""
    got = answer.as_numpy("contributions")
    if got is None or got.dtype != np.float32 or got.shape != explained.shape:
        sys.exit(f"{case}: contributions {None if got is None else (got.dtype, got.shape)}, "
                 f"expected float32 {explained.shape}")
    differ = np.argwhere(got.view(np.uint32) != explained.view(np.uint32))
    if differ.size:
        row, column = differ[0]
        sys.exit(f"{case}: {len(differ)} contributions differ from /explain; row {row}, column {column}: "
                 f"{got[row, column]!r} != {explained[row, column]!r}")
    same(case, expected, answer)


def datatype(array):
    return "BYTES" if array.dtype == np.object_ else {np.int64: "INT64", np.float64: "FP64"}[array.dtype.type]


def inputs(module, tensors, **binary):
    made = []
    for name, array in tensors.items():
        tensor = module.InferInput(name, list(array.shape), datatype(array))
        tensor.set_data_from_numpy(array, **binary)
        made.append(tensor)
    return made


def same(case, expected, answer):
    got = answer.as_numpy("predict")
    if got is None or got.dtype != np.float32 or got.shape != expected.shape:
        sys.exit(f"{case}: got {got!r}, expected {expected.shape[0]} float32 values")
    differ = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
    if differ.size:
        i = differ[0]
        sys.exit(f"{case}: {differ.size} predictions differ from /predict; row {i}: {got[i]!r} != {expected[i]!r}")
    print(f"ok {case}", flush=True)


def expect_error(case, call, status, fragment):
    try:
        call()
    except InferenceServerException as e:
        if status not in str(e.status()) or fragment not in e.message():
            sys.exit(f"{case}: got status {e.status()!r}, message {e.message()!r}; expected {status}, {fragment!r}")
        print(f"ok {case}", flush=True)
        return
    sys.exit(f"{case}: no error")


def http_cases(port, model, tensors, expected, explained):
    url = f"127.0.0.1:{port}"
    client = httpclient.InferenceServerClient(url, concurrency=2)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    extensions = client.get_server_metadata()["extensions"]
    if "binary_tensor_data" not in extensions:
        sys.exit(f"http metadata: extensions {extensions!r} lack binary_tensor_data")
    metadata = client.get_model_metadata(model)
    if sorted(t["name"] for t in metadata["inputs"]) != sorted(tensors):
        sys.exit(f"http metadata: inputs {metadata['inputs']!r}")
    if [t["name"] for t in metadata["outputs"]] != ["predict", "contributions"]:
        sys.exit(f"http metadata: outputs {metadata['outputs']!r}")
    print("ok http metadata", flush=True)

    # tritonclient's defaults: binary inputs, and binary_data_output since no output is named.
    same("http defaults (binary in, binary out)", expected, client.infer(model, inputs(httpclient, tensors)))
    json_out = [httpclient.InferRequestedOutput("predict", binary_data=False)]
    binary_out = [httpclient.InferRequestedOutput("predict", binary_data=True)]
    same("http json in, json out", expected,
         client.infer(model, inputs(httpclient, tensors, binary_data=False), outputs=json_out))
    same("http binary in, json out", expected, client.infer(model, inputs(httpclient, tensors), outputs=json_out))
    same("http json in, binary out", expected,
         client.infer(model, inputs(httpclient, tensors, binary_data=False), outputs=binary_out))
    for binary in (True, False):
        both = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("predict", "contributions")]
        same_contributions(f"http contributions, {'binary' if binary else 'json'} out", expected, explained,
                           client.infer(model, inputs(httpclient, tensors), outputs=both))
    for algorithm in ("gzip", "deflate"):
        same(f"http {algorithm} request", expected,
             client.infer(model, inputs(httpclient, tensors), request_compression_algorithm=algorithm))
    same("http async_infer", expected, client.async_infer(model, inputs(httpclient, tensors)).get_result())
    expect_error("http unknown model", lambda: client.infer("no-such-model", inputs(httpclient, tensors)),
                 "404", "no-such-model")
    client.close()

    async def aio():
        async with aiohttpclient.InferenceServerClient(url) as client:
            return await client.infer(model, inputs(httpclient, tensors))
    same("http asyncio client", expected, asyncio.run(aio()))


def grpc_cases(port, model, tensors, expected, explained):
    url = f"127.0.0.1:{port}"
    # grpc.health.v1 Check with an empty request (service ""); SERVING is status 1: bytes 08 01.
    with grpc.insecure_channel(url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        if check(b"", timeout=10) != b"\x08\x01":
            sys.exit("grpc health: not SERVING")
    print("ok grpc health", flush=True)
    client = grpcclient.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    metadata = client.get_model_metadata(model, as_json=True)
    if sorted(t["name"] for t in metadata["inputs"]) != sorted(tensors):
        sys.exit(f"grpc metadata: inputs {metadata['inputs']!r}")
    print("ok grpc metadata", flush=True)
    same("grpc infer", expected, client.infer(model, inputs(grpcclient, tensors)))
    same("grpc infer, output named", expected,
         client.infer(model, inputs(grpcclient, tensors), outputs=[grpcclient.InferRequestedOutput("predict")]))
    both = [grpcclient.InferRequestedOutput(name) for name in ("contributions", "predict")]
    same_contributions("grpc contributions", expected, explained,
                       client.infer(model, inputs(grpcclient, tensors), outputs=both))
    wrong = dict(tensors, mileage=tensors["mileage"].astype(np.object_))
    expect_error("grpc wrong datatype", lambda: client.infer(model, inputs(grpcclient, wrong)),
                 "INVALID_ARGUMENT", "mileage")
    expect_error("grpc unknown model", lambda: client.infer("no-such-model", inputs(grpcclient, tensors)),
                 "NOT_FOUND", "no-such-model")
    client.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, required=True)
    parser.add_argument("--grpc", type=int, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--model", default="ford_used_car_price")
    args = parser.parse_args()
    body, tensors = read_rows(args.data, args.rows)
    expected = predict(args.http, body)
    if expected.shape != (args.rows,):
        sys.exit(f"/predict answered {expected.shape} values for {args.rows} rows")
    explained = explain(args.http, body)
    http_cases(args.http, args.model, tensors, expected, explained)
    grpc_cases(args.grpc, args.model, tensors, expected, explained)


if __name__ == "__main__":
    main()
