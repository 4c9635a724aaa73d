"""Checks on deploy/ that per-resource schema validation cannot make.

    python docker/check_deploy.py deploy

The Service, HorizontalPodAutoscaler and PodDisruptionBudget must select or target the
Deployment; the probes must hit /healthz (liveness) and /readyz (readiness) on the container's
port; requests must not exceed limits; the pod must run as the image's non-root user
(APP_UID in docker/Dockerfile). Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

DOCKERFILE = Path(__file__).resolve().parent / "Dockerfile"
UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3}


def quantity(value: str | int | float) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    if not match or match.group(2) not in UNITS:
        raise ValueError(f"unreadable quantity {value!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def load(folder: Path) -> dict[str, dict]:
    by_kind: dict[str, dict] = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") != "Kustomization":
                by_kind[doc["kind"]] = doc
    return by_kind


def image_uid() -> int:
    match = re.search(r"^ARG APP_UID=(\d+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise SystemExit(f"error: no ARG APP_UID in {DOCKERFILE}")
    return int(match.group(1))


def problems(resources: dict[str, dict]) -> list[str]:
    found = []
    missing = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} - set(resources)
    if missing:
        return [f"missing resource(s): {', '.join(sorted(missing))}"]
    deployment = resources["Deployment"]
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    if not selects(deployment["spec"]["selector"]["matchLabels"]):
        found.append("Deployment selector does not match its own pod labels")
    if not selects(resources["Service"]["spec"].get("selector", {})):
        found.append("Service selector does not match the Deployment's pods")
    if not selects(resources["PodDisruptionBudget"]["spec"]["selector"].get("matchLabels", {})):
        found.append("PodDisruptionBudget selector does not match the Deployment's pods")
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Deployment", name):
        found.append(
            f"HorizontalPodAutoscaler targets {target['kind']}/{target['name']}, not Deployment/{name}"
        )
    hpa = resources["HorizontalPodAutoscaler"]["spec"]
    if not any(m.get("resource", {}).get("name") == "cpu" for m in hpa.get("metrics", [])):
        found.append("HorizontalPodAutoscaler does not scale on CPU")

    (container,) = pod["spec"]["containers"]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    service_ports = [p["targetPort"] for p in resources["Service"]["spec"]["ports"]]
    for port in service_ports:
        if port not in ports and port not in ports.values():
            found.append(f"Service targetPort {port!r} is not a container port")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            found.append(f"{probe} must GET {path}, not {get.get('path')!r}")
        if get.get("port") not in ports and get.get("port") not in ports.values():
            found.append(f"{probe} port {get.get('port')!r} is not a container port")

    resources_spec = container.get("resources", {})
    for kind in ("cpu", "memory"):
        request = resources_spec.get("requests", {}).get(kind)
        limit = resources_spec.get("limits", {}).get(kind)
        if request is None or limit is None:
            found.append(f"container has no {kind} request or limit")
        elif quantity(request) > quantity(limit):
            found.append(f"{kind} request {request} exceeds the limit {limit}")

    security = pod["spec"].get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        found.append("pod securityContext.runAsNonRoot is not true")
    if security.get("runAsUser") != image_uid():
        found.append(f"pod runAsUser {security.get('runAsUser')} is not the image's APP_UID {image_uid()}")
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "deploy")
    found = problems(load(folder))
    for line in found:
        print(f"deploy: {line}")
    if not found:
        print(f"deploy: {folder} is consistent (selectors, probes, resources, non-root user)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
