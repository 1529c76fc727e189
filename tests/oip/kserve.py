"""Reads deploy/kserve/: prints, as JSON, the ServingRuntime container's arguments, its declared
ports and protocols, and each InferenceService's name, protocol and ports, for tests/oip_clients.rs
to start the server exactly as KServe would."""

import json
import sys

import yaml

runtime_path, services_path = sys.argv[1:3]
with open(runtime_path) as f:
    runtime = yaml.safe_load(f)
with open(services_path) as f:
    services = [s for s in yaml.safe_load_all(f) if s]
container = runtime["spec"]["containers"][0]
print(json.dumps({
    "kind": runtime["kind"],
    "name": runtime["metadata"]["name"],
    "formats": [f["name"] for f in runtime["spec"]["supportedModelFormats"]],
    "protocols": runtime["spec"]["protocolVersions"],
    "args": container["args"],
    "ports": [p["containerPort"] for p in container["ports"]],
    "services": [{
        "kind": s["kind"],
        "name": s["metadata"]["name"],
        "runtime": s["spec"]["predictor"]["model"]["runtime"],
        "format": s["spec"]["predictor"]["model"]["modelFormat"]["name"],
        "protocol": s["spec"]["predictor"]["model"]["protocolVersion"],
        "ports": [p["containerPort"] for p in s["spec"]["predictor"]["model"].get("ports", [])],
    } for s in services],
}))
