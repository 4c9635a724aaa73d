"""Security basics: no debug mode or reloader outside `make dev`, request limits, no CORS, exact pins."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBUG_SWITCHES = re.compile(
    r"FLASK_DEBUG=1|--reload\b|--debug\b|debug\s*=\s*True|use_reloader|FLASK_ENV=development"
)
QUESTION = "Who built it?"
CONTEXT = "Miriam Holt built the lighthouse in 1874."


def test_flask_debug_in_the_environment_does_not_reach_the_app(
    monkeypatch, hardening_engine, hardening_settings
):
    from serve.app import create_app

    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app(hardening_engine, hardening_settings)
    assert app.debug is False and app.config["DEBUG"] is False


def test_only_the_dev_target_turns_on_debug_or_reload():
    makefile = (ROOT / "Makefile").read_text()
    targets_with_debug = set()
    target = None
    for line in makefile.splitlines():
        header = re.match(r"^([A-Za-z0-9_.-]+):", line)
        if header:
            target = header.group(1)
        elif line.startswith("\t") and DEBUG_SWITCHES.search(line):
            targets_with_debug.add(target)
    assert targets_with_debug == {"dev"}
    shipped = [ROOT / "serve", ROOT / "docker", ROOT / "deploy"]
    offenders = [
        str(path.relative_to(ROOT))
        for folder in shipped
        if folder.is_dir()
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix in ("", ".py", ".sh", ".yaml", ".yml", ".conf", ".toml")
        and path.name != "__pycache__"
        and DEBUG_SWITCHES.search(path.read_text(errors="ignore"))
    ]
    assert offenders == []


@pytest.mark.slow
def test_gunicorn_runs_without_reload_and_with_request_line_limits(tiny_bert_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "serve/gunicorn.conf.py",
            "--print-config",
            "serve.wsgi:app",
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "QA_MODEL_DIR": str(tiny_bert_dir), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))
    assert config["reload"] == "False"
    assert config["bind"] == "['127.0.0.1:8000']"  # loopback unless HOST says otherwise
    assert 0 < int(config["limit_request_line"]) <= 8190
    assert 0 < int(config["limit_request_field_size"]) <= 8190
    assert 0 < int(config["timeout"]) <= 120


def test_request_size_and_batch_limits_are_enforced(client, hardening_settings):
    s = hardening_settings
    assert s.max_body_bytes <= 16 * 2**20 and s.max_batch_items <= 64 and s.max_context_chars <= 200_000
    assert s.max_passages <= 10_000
    too_many = {"items": [{"question": QUESTION, "context": CONTEXT}] * (s.max_batch_items + 1)}
    response = client.post("/v1/answer/batch", json=too_many)
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_many_items"
    per_item = s.max_batch_context_chars // s.max_batch_items + 1
    too_long = {"items": [{"question": QUESTION, "context": "x " * (per_item // 2 + 1)}] * s.max_batch_items}
    response = client.post("/v1/answer/batch", json=too_long)
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "batch_too_long"
    response = client.post(
        "/v1/answer", json={"question": QUESTION, "context": "x" * (s.max_context_chars + 1)}
    )
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "context_too_long"
    # The spec states the same limits, so clients can know them in advance.
    spec = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert spec["BatchRequest"]["properties"]["items"]["maxItems"] == s.max_batch_items
    context = spec["AnswerRequest"]["properties"]["context"]["oneOf"]
    assert context[0]["maxLength"] == s.max_context_chars and context[1]["maxItems"] == s.max_passages
    # Passages: their total is what counts, and their number is bounded.
    halves = ["x " * (s.max_context_chars // 4 + 1)] * 2
    response = client.post("/v1/answer", json={"question": QUESTION, "context": halves})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "context_too_long"
    response = client.post("/v1/answer", json={"question": QUESTION, "context": ["x"] * (s.max_passages + 1)})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_many_passages"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("OPTIONS", "/v1/answer", None),
        ("POST", "/v1/answer", {"question": QUESTION, "context": CONTEXT}),
        ("GET", "/openapi.json", None),
        ("GET", "/", None),
        ("GET", "/healthz", None),
    ],
)
def test_no_cors_headers_are_sent(client, method, path, body):
    headers = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = client.open(path, method=method, json=body, headers=headers)
    assert response.status_code < 500
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for group in project["optional-dependencies"].values():
        requirements += [r for r in group if not r.startswith(project["name"] + "[")]
    loose = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+]+", r)]
    assert loose == []
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    loose = [c for c in constraints if c.strip() and not c.startswith("#") and "==" not in c]
    assert loose == []
