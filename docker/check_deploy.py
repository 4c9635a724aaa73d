"""Checks on the deployment files that per-resource schema validation cannot make, all offline.

    python docker/check_deploy.py deploy

deploy/*.yaml (Kubernetes): the Service, HorizontalPodAutoscaler and PodDisruptionBudget must
select or target the Deployment; the probes must hit /healthz (liveness) and /readyz (readiness)
on the container's port; requests must not exceed limits; the pod must run as the image's
non-root user (APP_UID in docker/Dockerfile).

deploy/cloudrun/service.yaml (Cloud Run, a Knative serving.knative.dev/v1 Service): one
container on port 8080 (Cloud Run sets PORT to it); a memory limit of at most 512Mi and a CPU
limit; startup probe on /readyz, liveness probe on /healthz, a startup window of at most 240 s;
scale to zero; a containerConcurrency; env names that serve/ or qa/ read, and not PORT.

render.yaml at the repository root (Render Blueprint): one web service squad-qa on the docker
runtime and the free plan, with fields of the Blueprint spec only; its Dockerfile and context
exist; its health check is /readyz; env names that serve/ or qa/ read.

For both 512 MB hosts: one gunicorn worker, no model lanes (about 100 MB each), QA_THREADS set.
Routes are read from serve/app.py and env names from serve/ and qa/ without importing them (the
lint job installs linters only). Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import math
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
APP = REPO / "serve" / "app.py"
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


DEFAULT_GUNICORN_TIMEOUT = 60  # serve/gunicorn.conf.py


def container_env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


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
        elif path not in get_routes():
            found.append(f"{probe} path {path} is not a GET route of serve/app.py")
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

    service = resources["Service"]
    ingress = resources.get("Ingress")
    if ingress is not None:
        service_ports = {key for p in service["spec"]["ports"] for key in (p.get("name"), p["port"])}
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                if backend["name"] != service["metadata"]["name"]:
                    found.append(f"Ingress routes to Service {backend['name']!r}, not {service['metadata']['name']!r}")
                port = backend["port"].get("name", backend["port"].get("number"))
                if port not in service_ports:
                    found.append(f"Ingress backend port {port!r} is not a port of the Service")
        if not ingress["spec"].get("tls"):
            found.append("Ingress has no tls section: a public endpoint must be HTTPS")
        timeout = ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-read-timeout")
        gunicorn_timeout = int(container_env(container).get("GUNICORN_TIMEOUT", DEFAULT_GUNICORN_TIMEOUT))
        if timeout is None or int(timeout) >= gunicorn_timeout:
            found.append(f"Ingress proxy-read-timeout {timeout!r} must be set below gunicorn's worker timeout "
                         f"({gunicorn_timeout} s), so the proxy answers before the worker is killed")
    policy = resources.get("NetworkPolicy")
    if policy is not None:
        if not selects(policy["spec"]["podSelector"].get("matchLabels", {})):
            found.append("NetworkPolicy podSelector does not match the Deployment's pods")
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if port["port"] not in ports and port["port"] not in ports.values():
                    found.append(f"NetworkPolicy admits port {port['port']!r}, which is not a container port")
    keys_file = container_env(container).get("QA_API_KEYS_FILE")
    if keys_file is not None:
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v}
        if not any(keys_file.startswith(mounts[name].rstrip("/") + "/") for name in secrets if name in mounts):
            found.append(f"QA_API_KEYS_FILE {keys_file} is not in a mounted Secret")

    security = pod["spec"].get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        found.append("pod securityContext.runAsNonRoot is not true")
    if security.get("runAsUser") != image_uid():
        found.append(f"pod runAsUser {security.get('runAsUser')} is not the image's APP_UID {image_uid()}")
    return found


# ---------------------------------------------------------------- what the service offers

ROUTE_DECORATORS = {"get": ("GET",), "post": ("POST",), "put": ("PUT",), "delete": ("DELETE",), "patch": ("PATCH",)}
ENV_READ = re.compile(
    r"""(?:env_int|env_bool|env_float)\(\s*[\w.]+\s*,\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|(?:os\.environ|\benv)\.(?:get|setdefault)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""
)


def routes(app_file: Path | None = None) -> dict[str, set[str]]:
    """Path -> HTTP methods of the `@routes.<method>(path)` and `@routes.route(path)` views."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse((app_file or APP).read_text(encoding="utf-8"))):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if not (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "routes"
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
            ):
                continue
            verb = decorator.func.attr
            if verb == "route":
                methods = ("GET",)
                for keyword in decorator.keywords:
                    if keyword.arg == "methods":
                        methods = tuple(ast.literal_eval(keyword.value))
            elif verb in ROUTE_DECORATORS:
                methods = ROUTE_DECORATORS[verb]
            else:
                continue
            found.setdefault(decorator.args[0].value, set()).update(methods)
    return found


def get_routes() -> set[str]:
    return {path for path, methods in routes().items() if "GET" in methods}


def env_names(root: Path = REPO) -> set[str]:
    """Environment variables the server reads: serve/*.py and qa/*.py (os.environ, env_int, ...)."""
    names = set()
    for path in sorted([*root.glob("serve/*.py"), *root.glob("qa/*.py")]):
        for match in ENV_READ.finditer(path.read_text(encoding="utf-8")):
            names.add(next(group for group in match.groups() if group))
    return names


def small_instance_problems(env: dict[str, str], where: str) -> list[str]:
    """512 MB and a fraction of a CPU hold one worker, one model session and no lanes."""
    found = []
    if env.get("WEB_CONCURRENCY") != "1":
        found.append(f"{where}: WEB_CONCURRENCY must be \"1\" on a 512 MB instance (each worker loads the model)")
    if env.get("QA_MODEL_LANES") != "0":
        found.append(f"{where}: QA_MODEL_LANES must be \"0\" on a 512 MB instance (each lane is ~100 MB)")
    if not str(env.get("QA_THREADS", "")).isdigit():
        found.append(f"{where}: QA_THREADS must be set (the container may see all of the host's cores)")
    return found


# ---------------------------------------------------------------- Cloud Run (Knative Service)

CLOUD_RUN_PORT = 8080
MEMORY_CEILING = "512Mi"
STARTUP_WINDOW_S = 240  # Cloud Run: failureThreshold x periodSeconds of a startup probe
RESERVED_ENV = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}
IDLE_INSTANCE_S = 900  # Cloud Run keeps an idle instance up to 15 minutes


def cloudrun_problems(doc: dict) -> list[str]:
    where = "cloudrun"
    if not isinstance(doc, dict) or (doc.get("apiVersion"), doc.get("kind")) != ("serving.knative.dev/v1", "Service"):
        return [f"{where}: must be apiVersion serving.knative.dev/v1, kind Service"]
    found = []
    if not (doc.get("metadata") or {}).get("name"):
        found.append(f"{where}: metadata.name is missing")
    template = (doc.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    low = annotations.get("autoscaling.knative.dev/minScale")
    high = annotations.get("autoscaling.knative.dev/maxScale")
    if low != "0":
        found.append(f"{where}: autoscaling.knative.dev/minScale must be \"0\" (scale to zero), not {low!r}")
    if not (isinstance(high, str) and high.isdigit() and int(high) >= 1):
        found.append(f"{where}: autoscaling.knative.dev/maxScale must be a quoted whole number >= 1, not {high!r}")
    spec = template.get("spec") or {}
    concurrency = spec.get("containerConcurrency")
    if not (isinstance(concurrency, int) and 1 <= concurrency <= 1000):
        found.append(f"{where}: containerConcurrency must be 1-1000, not {concurrency!r}")
    containers = spec.get("containers") or []
    if len(containers) != 1:
        return [*found, f"{where}: needs exactly one container, has {len(containers)}"]
    (container,) = containers
    if not container.get("image"):
        found.append(f"{where}: the container has no image")
    ports = [port.get("containerPort") for port in container.get("ports") or []]
    if ports != [CLOUD_RUN_PORT]:
        found.append(f"{where}: the container must declare one containerPort, {CLOUD_RUN_PORT}, not {ports}")

    env = {}
    known = env_names()
    for entry in container.get("env") or []:
        name, value = entry.get("name"), entry.get("value")
        if name in RESERVED_ENV:
            found.append(f"{where}: env {name} is reserved and set by Cloud Run")
        elif name not in known:
            found.append(f"{where}: env {name} is not read by serve/ or qa/")
        if not isinstance(value, str):
            found.append(f"{where}: env {name} needs a string value (quote it), not {value!r}")
        env[name] = value
    found += small_instance_problems(env, where)

    limits = (container.get("resources") or {}).get("limits") or {}
    memory, cpu = limits.get("memory"), limits.get("cpu")
    if memory is None:
        found.append(f"{where}: the container has no memory limit")
    elif quantity(memory) > quantity(MEMORY_CEILING):
        found.append(f"{where}: memory limit {memory} is above {MEMORY_CEILING} (the size this service is set up for)")
    if cpu is None:
        found.append(f"{where}: the container has no cpu limit")
    elif str(env.get("QA_THREADS", "")).isdigit() and int(env["QA_THREADS"]) > math.ceil(quantity(cpu)):
        found.append(f"{where}: QA_THREADS={env['QA_THREADS']} is more than the cpu limit {cpu}")
    # CPU-throttled between requests (the default): the worker's heartbeat stops with it.
    throttled = annotations.get("run.googleapis.com/cpu-throttling", "true") != "false"
    timeout = str(env.get("GUNICORN_TIMEOUT", "60"))
    if throttled and not (timeout.isdigit() and int(timeout) >= IDLE_INSTANCE_S):
        found.append(
            f"{where}: with CPU only during requests, GUNICORN_TIMEOUT must be at least {IDLE_INSTANCE_S} s, "
            f"not {timeout} (an idle instance's worker cannot heartbeat; gunicorn would kill it)"
        )

    for probe, path in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
        spec_probe = container.get(probe)
        if not spec_probe:
            found.append(f"{where}: no {probe}")
            continue
        get = spec_probe.get("httpGet") or {}
        if get.get("path") != path:
            found.append(f"{where}: {probe} must GET {path}, not {get.get('path')!r}")
        elif path not in get_routes():
            found.append(f"{where}: {probe} path {path} is not a GET route of serve/app.py")
        if get.get("port", CLOUD_RUN_PORT) != CLOUD_RUN_PORT:
            found.append(f"{where}: {probe} port {get.get('port')!r} is not the container port {CLOUD_RUN_PORT}")
        period = spec_probe.get("periodSeconds", 10)
        timeout = spec_probe.get("timeoutSeconds", 1)
        if timeout > period:
            found.append(f"{where}: {probe} timeoutSeconds {timeout} exceeds periodSeconds {period}")
        if probe == "startupProbe" and spec_probe.get("failureThreshold", 3) * period > STARTUP_WINDOW_S:
            found.append(f"{where}: startupProbe failureThreshold x periodSeconds is above {STARTUP_WINDOW_S} s")
    return found


# ---------------------------------------------------------------- Render Blueprint

RENDER_ROOT_FIELDS = {"services", "databases", "envVarGroups", "projects", "ungrouped", "previews"}
# The service fields of Render's Blueprint YAML reference (render.com/docs/blueprint-spec).
RENDER_SERVICE_FIELDS = {
    "name", "type", "runtime", "env", "plan", "previews", "previewPlan", "pullRequestPreviewsEnabled",
    "buildCommand", "startCommand", "schedule", "preDeployCommand", "region", "repo", "branch",
    "autoDeployTrigger", "autoDeploy", "domains", "healthCheckPath", "maxShutdownDelaySeconds",
    "dockerCommand", "dockerfilePath", "dockerContext", "registryCredential", "image", "numInstances",
    "scaling", "buildFilter", "rootDir", "disk", "staticPublishPath", "headers", "routes", "envVars",
    "ipAllowList", "maxmemoryPolicy",
}
RENDER_ENV_FIELDS = {"key", "value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup"}
RENDER_NOT_ON_FREE = ("disk", "preDeployCommand", "scaling")
RENDER_SERVICE = "squad-qa"


def render_problems(doc: dict, root: Path = REPO) -> list[str]:
    where = "render.yaml"
    if not isinstance(doc, dict):
        return [f"{where}: not a mapping"]
    found = [f"{where}: unknown top-level field {key!r}" for key in sorted(set(doc) - RENDER_ROOT_FIELDS)]
    services = [s for s in doc.get("services") or [] if isinstance(s, dict) and s.get("name") == RENDER_SERVICE]
    if len(services) != 1:
        return [*found, f"{where}: needs one service named {RENDER_SERVICE}, has {len(services)}"]
    (service,) = services
    found += [f"{where}: unknown service field {key!r}" for key in sorted(set(service) - RENDER_SERVICE_FIELDS)]
    for field, expected in (("type", "web"), ("runtime", "docker"), ("plan", "free")):
        if service.get(field) != expected:
            found.append(f"{where}: {field} must be {expected!r}, not {service.get(field)!r}")
    if service.get("plan") == "free":
        found += [f"{where}: {field} is not available on the free plan" for field in RENDER_NOT_ON_FREE
                  if field in service]
        if service.get("numInstances", 1) != 1:
            found.append(f"{where}: a free service runs one instance, not {service.get('numInstances')}")
    dockerfile = service.get("dockerfilePath")
    if not dockerfile or not (root / dockerfile).is_file():
        found.append(f"{where}: dockerfilePath {dockerfile!r} is not a file of the repository")
    context = service.get("dockerContext", ".")
    if not (root / context).is_dir():
        found.append(f"{where}: dockerContext {context!r} is not a folder of the repository")
    health = service.get("healthCheckPath")
    if health != "/readyz":
        found.append(f"{where}: healthCheckPath must be /readyz (200 once the model is loaded), not {health!r}")
    elif health not in get_routes():
        found.append(f"{where}: healthCheckPath {health} is not a GET route of serve/app.py")

    env = {}
    known = env_names()
    for entry in service.get("envVars") or []:
        key = entry.get("key")
        unknown = set(entry) - RENDER_ENV_FIELDS
        if unknown:
            found.append(f"{where}: env var {key!r} has unknown field(s) {sorted(unknown)}")
        if key not in known:
            found.append(f"{where}: env var {key!r} is not read by serve/ or qa/")
        if not isinstance(entry.get("value"), str):
            found.append(f"{where}: env var {key!r} needs a string value (quote it), not {entry.get('value')!r}")
        env[key] = entry.get("value")
    found += small_instance_problems(env, where)
    return found


# ---------------------------------------------------------------- entry point


def load_one(path: Path) -> dict | None:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "deploy")
    found = problems(load(folder))
    cloudrun = folder / "cloudrun" / "service.yaml"
    doc = load_one(cloudrun)
    found += cloudrun_problems(doc) if doc is not None else [f"missing {cloudrun}"]
    render = folder.resolve().parent / "render.yaml"
    doc = load_one(render)
    found += render_problems(doc, render.parent) if doc is not None else [f"missing {render}"]
    for line in found:
        print(f"deploy: {line}")
    if not found:
        print(
            f"deploy: {folder}, {cloudrun} and {render.name} are consistent "
            "(selectors, probes on real routes, resources, non-root user, env names, free-plan limits)"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
