"""Checks deploy/kubernetes/: every object validates, strictly, against the schemas of the pinned
Kubernetes version (kubernetes-validate, offline), and the manifests agree with the server and the
bridge: probes on the routes they serve and the ports they listen on, resources and a non-root,
read-only container, a termination grace longer than the drain, autoscalers and disruption budgets
that point at their Deployments, and no more bridge replicas than the source topic's partitions.

check.py KUBERNETES_VERSION DIR '{"server_ports": [3000, 8001], "bridge_port": 3001, ...}'
Prints one "ok ..." line per object; exits non-zero at the first failure.
"""

import json
import pathlib
import sys

import kubernetes_validate
import yaml

version, folder, expected = sys.argv[1], pathlib.Path(sys.argv[2]), json.loads(sys.argv[3])
objects = {}
for path in sorted(folder.glob("*.yaml")):
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            sys.exit(f"{path.name}: {document['kind']} {document['metadata']['name']}: {e.message} at {list(e.path)}")
        objects[(document["kind"], document["metadata"]["name"])] = document
        print(f"ok {path.name}: {document['kind']} {document['metadata']['name']} is valid for Kubernetes {version}")


def fail(message):
    sys.exit(message)


def deployment(name, ports):
    d = objects.get(("Deployment", name)) or fail(f"no Deployment {name}")
    pod = d["spec"]["template"]["spec"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    if d["spec"]["selector"]["matchLabels"].items() - labels.items():
        fail(f"{name}: the selector does not match the pod's labels")
    (container,) = pod["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    if sorted(named.values()) != sorted(ports):
        fail(f"{name}: container ports {named} are not {ports}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        if get["path"] != path or named.get(get["port"], get["port"]) != ports[0]:
            fail(f"{name}: {probe} is {get}, not {path} on {ports[0]}")
    resources = container["resources"]
    if not all(k in resources.get(kind, {}) for kind in ("requests", "limits") for k in ("cpu", "memory")):
        fail(f"{name}: resources need cpu and memory requests and limits: {resources}")
    security = container["securityContext"]
    if not (pod["securityContext"]["runAsNonRoot"] and security["readOnlyRootFilesystem"]
            and security["allowPrivilegeEscalation"] is False):
        fail(f"{name}: the container must run as non-root on a read-only root file system")
    env = {e["name"]: e for e in container.get("env", [])}
    for variable in env:
        if variable.startswith("XGSERVE_") and variable not in expected["variables"]:
            fail(f"{name}: {variable} is no flag's environment variable")
    for scaled in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        other = objects.get((scaled, name)) or fail(f"no {scaled} {name}")
        if scaled == "HorizontalPodAutoscaler":
            if other["spec"]["scaleTargetRef"]["name"] != name:
                fail(f"{scaled} {name} scales another Deployment")
        elif other["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{scaled} {name} selects other pods")
    print(f"ok {name}: ports, probes, resources, security, autoscaler and budget agree")
    return d, env


def grace_over(d, drain):
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    if grace <= drain:
        fail(f"{d['metadata']['name']}: terminationGracePeriodSeconds {grace} is not over its drain, {drain:.0f} s")


def seconds(env, variable, default, scale=1):
    """A duration the manifest sets through its environment variable, or the flag's default."""
    value = env.get(variable, {}).get("value")
    return (int(value) if value is not None else default) / scale


server, env = deployment("xgserve", expected["server_ports"])
drain = (seconds(env, "XGSERVE_SHUTDOWN_DELAY_MS", expected["shutdown_delay_ms"], 1000)
         + seconds(env, "XGSERVE_SHUTDOWN_GRACE_SECONDS", expected["shutdown_grace_seconds"]))
grace_over(server, drain)
service = objects.get(("Service", "xgserve")) or fail("no Service xgserve")
if sorted(p["port"] for p in service["spec"]["ports"]) != sorted(expected["server_ports"]):
    fail(f"Service xgserve: ports {service['spec']['ports']}")
print(f"ok xgserve: the grace outlasts the drain of {drain:.0f} s; the Service exposes HTTP and gRPC")

bridge, env = deployment("xgserve-bridge", [expected["bridge_port"]])
grace_over(bridge, expected["bridge_drain_seconds"])
partitions = int(bridge["metadata"]["annotations"]["xgserve.io/source-partitions"])
autoscaler = objects[("HorizontalPodAutoscaler", "xgserve-bridge")]
if max(bridge["spec"]["replicas"], autoscaler["spec"]["maxReplicas"]) > partitions:
    fail(f"xgserve-bridge: more replicas than the {partitions} partitions")
if "group.instance.id=" not in env.get("XGSERVE_CONSUMER_OPTIONS", {}).get("value", ""):
    fail("xgserve-bridge: no static membership (group.instance.id)")
print(f"ok xgserve-bridge: at most {partitions} replicas, one per partition, with static membership")
