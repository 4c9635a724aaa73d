"""render.yaml and deploy/cloudrun/service.yaml: what Render's Blueprint spec and Cloud Run require,
checked against the service itself (its routes, the environment variables it reads and their values).

Render's published JSON schema is not in any package this project can install, so the Blueprint is
checked here and by docker/check_deploy.py against the fields of its YAML reference instead.
"""

import copy
import shutil
import types

import pytest
import yaml
from flask import Flask

from .test_prune_model import ROOT, load_script

check_deploy = load_script("check_deploy")
RENDER = ROOT / "render.yaml"
CLOUD_RUN = ROOT / "deploy" / "cloudrun" / "service.yaml"


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def flask_get_routes() -> set[str]:
    """The GET routes of the real app, from Flask's url map (no model needed to build it)."""
    from serve.app import routes

    app = Flask("routes-only", static_folder=None)
    app.register_blueprint(routes)
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}


def render_service() -> dict:
    (service,) = [s for s in load(RENDER)["services"] if s["name"] == "squad-qa"]
    return service


def render_env() -> dict[str, str]:
    return {entry["key"]: entry["value"] for entry in render_service()["envVars"]}


def cloud_run_container() -> dict:
    (container,) = load(CLOUD_RUN)["spec"]["template"]["spec"]["containers"]
    return container


def cloud_run_env() -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in cloud_run_container()["env"]}


# ---------------------------------------------------------------- what the checker reads


def test_the_static_route_reader_matches_flasks_url_map():
    assert {path for path, methods in check_deploy.routes().items() if "GET" in methods} == flask_get_routes()


def test_the_env_reader_finds_the_settings_and_nothing_of_wsgi():
    names = check_deploy.env_names()
    settings = {"QA_MODEL_DIR", "QA_BACKEND", "QA_MAX_CONTEXT_CHARS", "QA_MAX_BATCH_CONTEXT_CHARS",
                "QA_LOAD_IN_BACKGROUND", "QA_THREADS", "QA_MODEL_LANES", "WEB_CONCURRENCY",
                "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "HOST", "PORT"}
    assert settings <= names
    assert not names & {"PATH_INFO", "REMOTE_ADDR", "QUERY_STRING", "HTTP_USER_AGENT"}


# ---------------------------------------------------------------- Render


def test_render_blueprint_is_one_free_docker_web_service():
    doc = load(RENDER)
    assert set(doc) <= check_deploy.RENDER_ROOT_FIELDS
    service = render_service()
    assert (service["type"], service["name"], service["runtime"], service["plan"]) == (
        "web", "squad-qa", "docker", "free",
    )
    assert (ROOT / service["dockerfilePath"]).is_file()
    assert service["dockerContext"] == "."
    assert set(service) <= check_deploy.RENDER_SERVICE_FIELDS
    assert check_deploy.render_problems(doc) == []


def test_render_health_check_is_the_readiness_route():
    assert render_service()["healthCheckPath"] == "/readyz"
    assert "/readyz" in flask_get_routes()


def test_render_env_is_read_by_the_service_and_sized_for_512_mb():
    env = render_env()
    assert set(env) <= check_deploy.env_names()
    assert all(isinstance(value, str) for value in env.values())
    assert env["PORT"] == "10000"  # Render's default, which the image's gunicorn config must bind
    assert (env["WEB_CONCURRENCY"], env["GUNICORN_THREADS"], env["QA_THREADS"], env["QA_MODEL_LANES"]) == (
        "1", "4", "1", "0",
    )


@pytest.mark.parametrize("env", [render_env(), cloud_run_env()], ids=["render", "cloud-run"])
def test_the_env_values_are_accepted_by_the_code_that_reads_them(env, monkeypatch):
    from qa.backends import default_threads
    from serve.batching import lane_count
    from serve.settings import Settings, env_int

    settings = Settings.from_env(env)
    assert settings.max_context_chars == int(env["QA_MAX_CONTEXT_CHARS"])
    assert settings.max_batch_context_chars >= settings.max_context_chars
    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT"):
        if name in env:
            assert env_int(env, name, 0, minimum=1) == int(env[name])
    monkeypatch.setenv("QA_THREADS", env["QA_THREADS"])
    assert default_threads() == 1
    backend = types.SimpleNamespace(name="onnx-int8", threads=1)
    assert lane_count(backend, env["QA_MODEL_LANES"]) == 0


def set_var(service, key, value):
    service["envVars"] = [e for e in service["envVars"] if e["key"] != key] + [{"key": key, "value": value}]


def edit_render(change):
    doc = load(RENDER)
    (service,) = [s for s in doc["services"] if s["name"] == "squad-qa"]
    change(service)
    return check_deploy.render_problems(doc)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.update(healthCheckPath="/health"), "healthCheckPath must be /readyz"),
        (lambda s: s.update(plan="starter"), "plan must be 'free'"),
        (lambda s: s.update(runtime="python"), "runtime must be 'docker'"),
        (lambda s: s.update(dockerfilePath="./Dockerfile"), "dockerfilePath './Dockerfile' is not a file"),
        (lambda s: s.update(healthcheckPath=s.pop("healthCheckPath")), "unknown service field 'healthcheckPath'"),
        (lambda s: s.update(disk={"name": "data", "mountPath": "/data"}), "disk is not available on the free plan"),
        (lambda s: s["envVars"].append({"key": "QA_MAX_CONTEXT", "value": "1"}), "'QA_MAX_CONTEXT' is not read"),
        (lambda s: s["envVars"].append({"key": "QA_BATCH_MAX_SIZE", "value": 4}), "needs a string value"),
        (lambda s: set_var(s, "QA_MODEL_LANES", "auto"), "QA_MODEL_LANES must be"),
    ],
    ids=["health-path", "plan", "runtime", "dockerfile", "typo", "disk", "env-name", "env-value", "lanes"],
)
def test_a_broken_blueprint_is_reported(change, problem):
    found = edit_render(change)
    assert any(problem in line for line in found), found


# ---------------------------------------------------------------- Cloud Run


def test_cloud_run_service_is_consistent():
    doc = load(CLOUD_RUN)
    assert (doc["apiVersion"], doc["kind"]) == ("serving.knative.dev/v1", "Service")
    container = cloud_run_container()
    assert [port["containerPort"] for port in container["ports"]] == [8080]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert container["startupProbe"]["httpGet"]["path"] in flask_get_routes()
    assert container["livenessProbe"]["httpGet"]["path"] in flask_get_routes()
    assert check_deploy.cloudrun_problems(doc) == []


def test_cloud_run_and_render_share_the_sizing():
    render = {k: v for k, v in render_env().items() if k not in ("PORT", "GUNICORN_TIMEOUT")}
    cloud_run = {k: v for k, v in cloud_run_env().items() if k != "GUNICORN_TIMEOUT"}
    assert cloud_run == render


def edit_cloud_run(change):
    doc = copy.deepcopy(load(CLOUD_RUN))
    change(doc, doc["spec"]["template"]["spec"]["containers"][0])
    return check_deploy.cloudrun_problems(doc)


def set_env(container, name, value):
    container["env"] = [e for e in container["env"] if e["name"] != name] + [{"name": name, "value": value}]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d, c: c["startupProbe"]["httpGet"].update(path="/healthz"), "startupProbe must GET /readyz"),
        (lambda d, c: c["livenessProbe"]["httpGet"].update(path="/live"), "livenessProbe must GET /healthz"),
        (lambda d, c: c["resources"]["limits"].pop("memory"), "no memory limit"),
        (lambda d, c: c["resources"]["limits"].update(memory="1Gi"), "memory limit 1Gi is above 512Mi"),
        (lambda d, c: c["resources"].pop("limits"), "no cpu limit"),
        (lambda d, c: c["ports"][0].update(containerPort=8000), "containerPort, 8080"),
        (lambda d, c: c["startupProbe"]["httpGet"].update(port=8000), "startupProbe port 8000"),
        (lambda d, c: c.pop("livenessProbe"), "no livenessProbe"),
        (lambda d, c: c["startupProbe"].update(failureThreshold=200), "above 240 s"),
        (lambda d, c: set_env(c, "PORT", "8080"), "PORT is reserved"),
        (lambda d, c: set_env(c, "QA_MAX_CONTEXT", "1"), "QA_MAX_CONTEXT is not read"),
        (lambda d, c: set_env(c, "QA_THREADS", "4"), "QA_THREADS=4 is more than the cpu limit"),
        (lambda d, c: set_env(c, "GUNICORN_TIMEOUT", "60"), "GUNICORN_TIMEOUT must be at least 900"),
        (lambda d, c: set_env(c, "WEB_CONCURRENCY", "2"), "WEB_CONCURRENCY must be"),
        (lambda d, c: d["spec"]["template"]["metadata"]["annotations"].update(
            {"autoscaling.knative.dev/minScale": "1"}), "minScale must be \"0\""),
        (lambda d, c: d["spec"]["template"]["metadata"]["annotations"].update(
            {"autoscaling.knative.dev/maxScale": 2}), "maxScale must be a quoted whole number"),
        (lambda d, c: d["spec"]["template"]["spec"].pop("containerConcurrency"), "containerConcurrency"),
        (lambda d, c: d["spec"]["template"]["spec"]["containers"].append(dict(c)), "exactly one container"),
        (lambda d, c: d.update(apiVersion="apps/v1"), "serving.knative.dev/v1"),
    ],
    ids=["startup-path", "liveness-path", "no-memory", "memory-1Gi", "no-limits", "port", "probe-port",
         "no-liveness", "startup-window", "PORT", "env-name", "threads", "gunicorn-timeout", "workers",
         "min-scale", "max-scale-int", "concurrency", "two-containers", "api-version"],
)
def test_a_broken_cloud_run_service_is_reported(change, problem):
    found = edit_cloud_run(change)
    assert any(problem in line for line in found), found


def test_a_probe_on_a_route_the_app_no_longer_has_is_reported(tmp_path, monkeypatch):
    app = tmp_path / "app.py"
    app.write_text((ROOT / "serve" / "app.py").read_text().replace('@routes.get("/readyz")', '@routes.get("/ready")'))
    monkeypatch.setattr(check_deploy, "APP", app)
    found = check_deploy.cloudrun_problems(load(CLOUD_RUN)) + check_deploy.render_problems(load(RENDER))
    assert any("startupProbe path /readyz is not a GET route" in line for line in found), found
    assert any("healthCheckPath /readyz is not a GET route" in line for line in found), found


# ---------------------------------------------------------------- the command make delivery-lint runs


def test_main_checks_all_three(tmp_path, capsys):
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copy(RENDER, tmp_path / "render.yaml")
    (tmp_path / "docker").mkdir()
    shutil.copy(ROOT / "docker" / "Dockerfile", tmp_path / "docker" / "Dockerfile")
    assert check_deploy.main([str(tmp_path / "deploy")]) == 0
    assert "render.yaml are consistent" in capsys.readouterr().out

    service = tmp_path / "deploy" / "cloudrun" / "service.yaml"
    service.write_text(service.read_text().replace("memory: 512Mi", "memory: 2Gi"))
    (tmp_path / "render.yaml").unlink()
    assert check_deploy.main([str(tmp_path / "deploy")]) == 1
    out = capsys.readouterr().out
    assert "memory limit 2Gi is above 512Mi" in out
    assert "missing" in out and "render.yaml" in out
