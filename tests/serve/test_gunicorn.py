"""The real server: gunicorn with serve/gunicorn.conf.py on a free loopback port."""

from __future__ import annotations

import json
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gunicorn_server import START_TIMEOUT_S, GunicornServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def run_server():
    servers: list[GunicornServer] = []

    def start(**env: str) -> GunicornServer:
        server = GunicornServer(env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.mark.slow
def test_gunicorn_answers_over_http_and_shuts_down_cleanly(run_server, tiny_bert_dir, tiny_engine):
    server = run_server(
        QA_MODEL_DIR=str(tiny_bert_dir), QA_BACKEND="torch", WEB_CONCURRENCY="2", GUNICORN_THREADS="2"
    )
    server.wait_ready()
    # /readyz answers as soon as one worker is ready; the gauge is the minimum over all workers.
    server.wait_for("/metrics", lambda status, body: b"qa_model_ready 1.0" in body)
    question, context = (
        "Where is the tower?",
        "The Eiffel Tower stands in Paris, on the Champ de Mars. Ça va?",
    )
    status, headers, raw = server.request("POST", "/v1/answer", {"question": question, "context": context})
    assert status == 200, raw
    body = json.loads(raw)
    expected = tiny_engine.answer(question, context)[0]
    assert (body["answer"], body["start"], body["end"]) == (expected.text, expected.start, expected.end)
    assert context[body["start"] : body["end"]] == body["answer"]
    assert body["model"] == tiny_bert_dir.name and body["backend"] == "torch"

    # Concurrent requests (two workers x two threads) each get their own answer.
    pairs = [
        (f"Question number {i}?", f"Context {i}: item {i} costs {i * 7} euros in shop {i}.") for i in range(8)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(
                lambda qc: server.request("POST", "/v1/answer", {"question": qc[0], "context": qc[1]}), pairs
            )
        )
    for (q, c), (status, _, raw) in zip(pairs, replies, strict=True):
        assert status == 200
        expected = tiny_engine.answer(q, c)[0]
        assert (json.loads(raw)["answer"], json.loads(raw)["start"]) == (expected.text, expected.start)

    status, _, raw = server.request("POST", "/v1/answer", {"question": " ", "context": context})
    assert status == 422 and json.loads(raw)["error"]["code"] == "empty_field"
    # Several requests, so both workers are likely to serve some; /metrics must count them all.
    for _ in range(6):
        assert server.request("GET", "/healthz")[0] == 200
    status, _, raw = server.request("GET", "/metrics")
    text = raw.decode()
    assert status == 200
    assert re.search(r'qa_http_requests_total\{method="POST",route="/v1/answer",status="200"\} 9\.0', text)
    assert re.search(r'qa_http_requests_total\{method="GET",route="/healthz",status="200"\} 6\.0', text)
    assert re.search(
        r'qa_model_info\{backend="torch",model="[^"]+",version="sha256:[0-9a-f]{12}"\} 1\.0', text
    )

    server.process.send_signal(signal.SIGTERM)
    assert server.finish() == 0, server.log()
    access = [json.loads(line) for line in server.stdout if line.startswith("{")]
    answered = [r for r in access if r["path"] == "/v1/answer"]
    assert sorted(r["status"] for r in answered) == [200] * 9 + [422]
    assert all(r["method"] == "POST" and r["duration_ms"] > 0 and r["request_id"] for r in answered)
    assert len(access) == len(server.stdout)  # every stdout line is a JSON access record
    assert "Shutting down: Master" in server.log()


@pytest.mark.slow
def test_a_missing_model_directory_stops_startup_with_one_line(run_server, tmp_path):
    missing = tmp_path / "no-model-here"
    server = run_server(QA_MODEL_DIR=str(missing))
    assert server.finish() == 1
    assert server.stderr == [f"error: cannot load model from {missing}: no such directory\n"]
    assert server.port is None  # it never listened


@pytest.mark.slow
def test_a_model_that_fails_to_load_in_the_worker_stops_the_server(run_server, tiny_bert_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_bert_dir, broken)
    # Passes the cheap check in the master; only loading the model finds the problem.
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    server = run_server(QA_MODEL_DIR=str(broken), QA_BACKEND="torch")
    assert server.finish(timeout=START_TIMEOUT_S) == 4
    errors = [line for line in server.stderr if line.startswith("error: ")]
    assert len(errors) == 1 and f"cannot load model from {broken}" in errors[0], server.log()
    # Apart from that line, stderr holds only gunicorn's own timestamped log lines.
    assert all(line.startswith("[") for line in server.stderr if line not in errors), server.log()
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_a_bad_setting_stops_startup_with_one_line(run_server, tiny_bert_dir):
    server = run_server(QA_MODEL_DIR=str(tiny_bert_dir), GUNICORN_THREADS="many")
    assert server.finish() == 1
    assert server.stderr == ["error: GUNICORN_THREADS='many' is not an integer\n"]
    server = run_server(QA_MODEL_DIR=str(tiny_bert_dir), QA_MAX_CONTEXT_CHARS="0")
    assert server.finish() == 1
    assert server.stderr == ["error: QA_MAX_CONTEXT_CHARS=0 is below the minimum 1\n"]
