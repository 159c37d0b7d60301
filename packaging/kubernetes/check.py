#!/usr/bin/env python3
"""Validates the Kubernetes manifests of this directory offline, without a cluster.

1. Schemas: every resource against the Kubernetes schemas bundled with kubernetes-validate
   (strict: unknown fields are errors), for each version in KUBERNETES_VERSIONS; custom
   resources, which it has no schema for, against the schemas vendored in schemas/. A resource
   with no schema at all is an error, never skipped.
2. What schemas cannot express: the pod-sidecar contract of docs/KUBERNETES.md (one
   memory-backed emptyDir with a size limit, mounted at the same path in every container; one
   segment path for the apps' COORDMETRICS_SEGMENT and the sidecar's --segment; the scrape
   port agreeing between annotations, PodMonitor, NetworkPolicy, container port and `listen`;
   separate pid namespaces; one uid for all containers; the hardened security contexts).

    check.py [--self-test] [DIR]

--self-test breaks copies of the manifests in known ways and fails unless every breakage is
reported, so that a check that can no longer fail does not go unnoticed.
"""

import argparse
import copy
import json
import posixpath
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# 1.29: the oldest release with restartable init containers (native sidecars) on by default.
# 1.33: the release in which they became stable.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
CUSTOM_SCHEMAS = {("monitoring.coreos.com/v1", "PodMonitor"): "schemas/podmonitor-monitoring-v1.json"}
SEGMENT_ENV = "COORDMETRICS_SEGMENT"
METRICS_PORT_NAME = "metrics"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def load_manifests(directory):
    """Every resource of every *.yaml file in `directory`, as (file name, resource) pairs."""
    resources = []
    for path in sorted(directory.glob("*.yaml")):
        with open(path) as f:
            resources.extend((path.name, doc) for doc in yaml.safe_load_all(f) if doc)
    return resources


def schema_errors(resources, directory):
    errors = []
    for filename, resource in resources:
        where = f"{filename}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        custom = CUSTOM_SCHEMAS.get((resource.get("apiVersion"), resource.get("kind")))
        if custom:
            schema = json.loads((directory / custom).read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            for error in validator.iter_errors(resource):
                path = ".".join(str(p) for p in error.absolute_path)
                errors.append(f"{where}: {path}: {error.message} (schema {custom})")
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                errors.append(f"{where}: {path}: {error.message} (Kubernetes {version})")
            except kubernetes_validate.SchemaNotFoundError as error:
                errors.append(f"{where}: no schema: {error.message}")
    return errors


def one(resources, kind):
    found = [r for _, r in resources if r.get("kind") == kind]
    if len(found) != 1:
        raise CheckFailed(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


class CheckFailed(Exception):
    """A manifest breaks a rule so badly that the remaining checks cannot run."""


def option(args, name):
    """The value of `--name=VALUE` or `--name VALUE` in a container's args, or None."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def selects(selector, labels):
    """Whether a non-empty matchLabels selector matches these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def contract_errors(resources):
    """The pod-sidecar contract; each returned string names the resource and the rule."""
    errors = []
    deployment = one(resources, "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    pod_labels = template["metadata"].get("labels", {})
    init_containers = pod.get("initContainers", [])
    containers = init_containers + pod.get("containers", [])

    for field in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        if pod.get(field):
            errors.append(f"Deployment: {field} must not be set: each container keeps its own namespaces")

    sidecars = [c for c in containers if c.get("args", [])[:1] == ["run"]]
    if len(sidecars) != 1:
        raise CheckFailed(f"Deployment: expected one sidecar container with args `run ...`, found {len(sidecars)}")
    sidecar = sidecars[0]
    apps = [c for c in containers if c is not sidecar]
    if not apps:
        errors.append("Deployment: no app container beside the sidecar")
    if sidecar in init_containers and sidecar.get("restartPolicy") != "Always":
        errors.append("Deployment: the sidecar init container needs restartPolicy: Always, or it blocks the pod")

    # The segment: one path, on a memory-backed emptyDir with a size limit, mounted alike everywhere.
    segment = option(sidecar["args"], "--segment")
    if not segment:
        raise CheckFailed("Deployment: the sidecar has no --segment argument")
    segment_dir = posixpath.dirname(segment)
    mounts = [m for m in sidecar.get("volumeMounts", []) if m["mountPath"] == segment_dir]
    if len(mounts) != 1:
        raise CheckFailed(f"Deployment: the sidecar mounts no volume at {segment_dir} (the directory of --segment)")
    volume_name = mounts[0]["name"]
    volume = next((v for v in pod.get("volumes", []) if v["name"] == volume_name), {})
    empty_dir = volume.get("emptyDir")
    if empty_dir is None:
        errors.append(f"Deployment: volume {volume_name} of the segment must be an emptyDir")
    else:
        if empty_dir.get("medium") != "Memory":
            errors.append(f"Deployment: emptyDir {volume_name} must have medium: Memory (a tmpfs)")
        if not empty_dir.get("sizeLimit"):
            errors.append(f"Deployment: emptyDir {volume_name} must have a sizeLimit")
    for container in apps:
        name = container["name"]
        paths = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] == volume_name]
        if paths != [segment_dir]:
            errors.append(f"Deployment: container {name} mounts {volume_name} at {paths}, not at {segment_dir}")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if env.get(SEGMENT_ENV) != segment:
            errors.append(f"Deployment: container {name}: {SEGMENT_ENV}={env.get(SEGMENT_ENV)!r}, not {segment!r}")

    # Configuration: --config inside the ConfigMap's mount, and its `listen` on the metrics port.
    config_path = option(sidecar["args"], "--config")
    config_map = one(resources, "ConfigMap")
    config_map_name = config_map["metadata"]["name"]
    config_volumes = {
        v["name"] for v in pod.get("volumes", []) if v.get("configMap", {}).get("name") == config_map_name
    }
    config_dirs = [m["mountPath"] for m in sidecar.get("volumeMounts", []) if m["name"] in config_volumes]
    config_key = posixpath.basename(config_path or "")
    if posixpath.dirname(config_path or "") not in config_dirs:
        errors.append(f"Deployment: --config {config_path} is not in the mount of ConfigMap {config_map_name}")
    if config_key not in config_map.get("data", {}):
        raise CheckFailed(f"ConfigMap: no key {config_key!r} for --config {config_path}")
    config = tomllib.loads(config_map["data"][config_key])
    if config.get("segment", segment) != segment:
        errors.append(f"ConfigMap: segment = {config['segment']!r} disagrees with the sidecar's --segment {segment!r}")

    # The scrape port, everywhere it is named.
    ports = {p.get("name"): p["containerPort"] for p in sidecar.get("ports", [])}
    port = ports.get(METRICS_PORT_NAME)
    if port is None:
        raise CheckFailed(f"Deployment: the sidecar has no container port named {METRICS_PORT_NAME!r}")
    host, _, listen_port = config.get("listen", "").rpartition(":")
    if listen_port != str(port):
        errors.append(f"ConfigMap: listen = {config.get('listen')!r} is not on the container port {port}")
    if host in LOOPBACK_HOSTS or not host:
        errors.append(f"ConfigMap: listen = {config.get('listen')!r} is loopback: Prometheus scrapes from another pod")
    annotations = template["metadata"].get("annotations", {})
    expected = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
    for key, value in expected.items():
        if annotations.get(key) != value:
            errors.append(f"Deployment: pod annotation {key} is {annotations.get(key)!r}, expected {value!r}")
    for probe in ("startupProbe", "livenessProbe"):
        get = sidecar.get(probe, {}).get("httpGet", {})
        if get.get("path") != "/healthz" or get.get("port") not in (METRICS_PORT_NAME, port):
            errors.append(f"Deployment: the sidecar's {probe} must GET /healthz on the metrics port")

    pod_monitor = one(resources, "PodMonitor")
    selector = pod_monitor["spec"]["selector"].get("matchLabels", {})
    if not selects(selector, pod_labels):
        errors.append(f"PodMonitor: selector {selector} does not select the pod labels {pod_labels}")
    for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]:
        if endpoint.get("port") != METRICS_PORT_NAME or endpoint.get("path", "/metrics") != "/metrics":
            errors.append(f"PodMonitor: endpoint {endpoint} is not port {METRICS_PORT_NAME!r}, path /metrics")

    policy = one(resources, "NetworkPolicy")
    policy_selector = policy["spec"]["podSelector"].get("matchLabels", {})
    if not selects(policy_selector, pod_labels):
        errors.append(f"NetworkPolicy: podSelector {policy_selector} does not select the pod labels {pod_labels}")
    named_ports = {p.get("name"): p["containerPort"] for c in containers for p in c.get("ports", [])}
    admitted = {
        named_ports.get(p.get("port"), p.get("port"))
        for rule in policy["spec"].get("ingress", [])
        for p in rule.get("ports", [])
    }
    for name, number in named_ports.items():
        if number not in admitted:
            errors.append(f"NetworkPolicy: container port {name} ({number}) is admitted by no ingress rule")

    errors.extend(security_errors(pod, containers))
    return errors


def security_errors(pod, containers):
    errors = []
    pod_security = pod.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True:
        errors.append("Deployment: the pod's securityContext needs runAsNonRoot: true")
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        if not pod_security.get(field):
            errors.append(f"Deployment: the pod's securityContext needs a fixed non-zero {field}")
    pod_seccomp = pod_security.get("seccompProfile", {}).get("type")
    for container in containers:
        name, security = container["name"], container.get("securityContext", {})
        # Both the exporter and the client in the apps trust a segment owned by their own uid:
        # a container with another uid would refuse the segment, or have its own refused.
        for field in ("runAsUser", "runAsGroup"):
            if field in security and security[field] != pod_security.get(field):
                errors.append(f"Deployment: container {name} overrides the pod's {field} ({security[field]})")
        if security.get("allowPrivilegeEscalation") is not False:
            errors.append(f"Deployment: container {name} needs allowPrivilegeEscalation: false")
        if security.get("readOnlyRootFilesystem") is not True:
            errors.append(f"Deployment: container {name} needs readOnlyRootFilesystem: true")
        if "ALL" not in security.get("capabilities", {}).get("drop", []):
            errors.append(f"Deployment: container {name} must drop ALL capabilities")
        if security.get("seccompProfile", {}).get("type", pod_seccomp) != "RuntimeDefault":
            errors.append(f"Deployment: container {name} needs seccompProfile RuntimeDefault")
        if not container.get("resources", {}).get("requests") or not container.get("resources", {}).get("limits"):
            errors.append(f"Deployment: container {name} needs resource requests and limits")
    return errors


def check(resources, directory):
    try:
        return schema_errors(resources, directory) + contract_errors(resources)
    except (CheckFailed, KeyError, TypeError, jsonschema.SchemaError) as error:
        return [f"{type(error).__name__}: {error}"]


def pod_spec(resources):
    return one(resources, "Deployment")["spec"]["template"]["spec"]


def app(resources, index):
    return pod_spec(resources)["containers"][index]


def sidecar(resources):
    return pod_spec(resources)["initContainers"][0]


def segment_volume(resources):
    return next(v for v in pod_spec(resources)["volumes"] if "emptyDir" in v)["emptyDir"]


def set_config(resources, old, new):
    data = one(resources, "ConfigMap")["data"]
    assert old in data["config.toml"], old
    data["config.toml"] = data["config.toml"].replace(old, new)


# Each breakage: what it does, how, and a fragment of the error that must report it.
BREAKAGES = [
    ("disk-backed emptyDir", lambda r: segment_volume(r).pop("medium"), "medium: Memory"),
    ("no sizeLimit", lambda r: segment_volume(r).pop("sizeLimit"), "sizeLimit"),
    ("one app mounts the segment elsewhere",
     lambda r: app(r, 1)["volumeMounts"][0].update(mountPath="/dev/shm"), "container tools mounts"),
    ("an app's COORDMETRICS_SEGMENT differs",
     lambda r: app(r, 0)["env"][0].update(value="/run/coordmetrics/other"), "COORDMETRICS_SEGMENT="),
    ("annotation port differs", lambda r: one(r, "Deployment")["spec"]["template"]["metadata"]["annotations"]
     .update({"prometheus.io/port": "9465"}), "prometheus.io/port"),
    ("hostPID", lambda r: pod_spec(r).update(hostPID=True), "hostPID"),
    ("hostNetwork", lambda r: pod_spec(r).update(hostNetwork=True), "hostNetwork"),
    ("shareProcessNamespace", lambda r: pod_spec(r).update(shareProcessNamespace=True), "shareProcessNamespace"),
    ("listen on loopback", lambda r: set_config(r, '"0.0.0.0:9464"', '"127.0.0.1:9464"'), "is loopback"),
    ("listen on another port", lambda r: set_config(r, '"0.0.0.0:9464"', '"0.0.0.0:9100"'),
     "not on the container port"),
    ("config names another segment", lambda r: set_config(r, "prom = \"\"", 'segment = "/dev/shm/x"\nprom = ""'),
     "disagrees with the sidecar"),
    ("sidecar as a plain init container", lambda r: sidecar(r).pop("restartPolicy"), "restartPolicy: Always"),
    ("liveness probe on another path", lambda r: sidecar(r)["livenessProbe"]["httpGet"].update(path="/metrics"),
     "livenessProbe"),
    ("an app runs as root", lambda r: app(r, 0)["securityContext"].update(runAsUser=0), "overrides the pod's runAsUser"),
    ("no fsGroup", lambda r: pod_spec(r)["securityContext"].pop("fsGroup"), "fsGroup"),
    ("writable root file system", lambda r: sidecar(r)["securityContext"].update(readOnlyRootFilesystem=False),
     "readOnlyRootFilesystem"),
    ("capabilities kept", lambda r: app(r, 1)["securityContext"].pop("capabilities"), "drop ALL"),
    ("PodMonitor on another port", lambda r: one(r, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
     .update(port="http"), "PodMonitor: endpoint"),
    ("PodMonitor selects other pods", lambda r: one(r, "PodMonitor")["spec"]["selector"]["matchLabels"]
     .update({"app.kubernetes.io/name": "other"}), "PodMonitor: selector"),
    ("NetworkPolicy leaves the metrics port closed", lambda r: one(r, "NetworkPolicy")["spec"]["ingress"].pop(0),
     "port metrics (9464)"),
    ("unknown container field (strict schema)", lambda r: app(r, 0).update(imagePullPolicyy="Always"),
     "imagePullPolicyy"),
    ("wrong type (schema)", lambda r: sidecar(r)["ports"][0].update(containerPort="9464"), "containerPort"),
    ("PodMonitor field unknown to its schema",
     lambda r: one(r, "PodMonitor")["spec"]["podMetricsEndpoints"][0].update(honorLabel=True), "honorLabel"),
    ("PodMonitor interval malformed",
     lambda r: one(r, "PodMonitor")["spec"]["podMetricsEndpoints"][0].update(interval="15 seconds"), "15 seconds"),
    ("a kind without any schema", lambda r: r.append(("extra.yaml", {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}})),
     "no schema"),
]


def self_test(resources, directory):
    """Returns the breakages that check() fails to report (empty when all is well)."""
    missed = []
    for description, breakage, expected in BREAKAGES:
        broken = copy.deepcopy(resources)
        breakage(broken)
        errors = check(broken, directory)
        if not any(expected in error for error in errors):
            missed.append(f"{description}: no error mentions {expected!r}; errors: {errors}")
    return missed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--self-test", action="store_true", help="check that known breakages are reported")
    options = parser.parse_args()
    resources = load_manifests(options.directory)
    errors = check(resources, options.directory)
    if errors:
        sys.exit("\n".join(["check.py: the manifests are invalid:"] + errors))
    names = ", ".join(f"{r['kind']}/{r['metadata']['name']}" for _, r in resources)
    print(f"check.py: {len(resources)} resources valid against Kubernetes {' and '.join(KUBERNETES_VERSIONS)}"
          f" (strict) and the vendored schemas, and keep the pod-sidecar contract: {names}")
    if options.self_test:
        missed = self_test(resources, options.directory)
        if missed:
            sys.exit("\n".join(["check.py --self-test: breakages not reported:"] + missed))
        print(f"check.py --self-test: all {len(BREAKAGES)} deliberate breakages reported")


if __name__ == "__main__":
    main()
