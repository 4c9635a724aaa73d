"""The model-behaviour metrics and the prediction log, as a client sees them."""

from __future__ import annotations

import dataclasses
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qa.monitoring import ABSTENTION_ALLOWED, ABSTENTIONS, LOW_CONFIDENCE, SIGNALS
from serve.app import create_app

QUESTION = "Who built the lighthouse?"
CONTEXT = "Miriam Holt built the lighthouse in 1874. It stands on the northern cape."


def samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").get_data(as_text=True)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name, **labels) -> float:
    matching = [v for (n, ls), v in found.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items())]
    return sum(matching)


@pytest.fixture()
def fresh_client(tiny_engine, tiny_settings):
    return create_app(tiny_engine, tiny_settings).test_client()


def test_every_signal_is_exported_with_the_model_version_and_backend(fresh_client):
    for _ in range(3):
        assert fresh_client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT}).status_code == 200
    found = samples(fresh_client)
    version = fresh_client.get("/readyz").get_json()["version"]
    for signal in SIGNALS:
        assert value(found, signal.name + "_count", version=version, backend="torch") == 3, signal.name
        assert value(found, signal.name + "_bucket", le="+Inf") == 3
    assert value(found, ABSTENTION_ALLOWED + "_total") == 0 and value(found, ABSTENTIONS + "_total") == 0


def test_token_counts_and_windows_read_are_what_the_model_read(fresh_client, tiny_engine):
    long_context = " ".join([CONTEXT] * 200)
    response = fresh_client.post("/v1/answer", json={"question": QUESTION, "context": long_context})
    assert response.status_code == 200
    found = samples(fresh_client)
    windows = tiny_engine.windows([QUESTION], [long_context], tiny_engine.params)
    (reading,) = windows.readings
    every = tiny_engine.windows([QUESTION], [long_context], dataclasses.replace(tiny_engine.params, max_windows=0))
    assert reading.windows == len(windows) < len(every)  # pre-ranked: fewer windows read than there are
    assert value(found, "qa_windows_read_sum") == reading.windows
    assert value(found, "qa_context_tokens_sum") == reading.context_tokens
    assert value(found, "qa_question_tokens_sum") == reading.question_tokens


def test_abstentions_count_against_the_questions_that_allowed_them(abstaining_engine, tiny_settings):
    client = create_app(abstaining_engine, tiny_settings).test_client()
    body = {"question": QUESTION, "context": CONTEXT}
    client.post("/v1/answer", json=body)  # may not abstain: not asked to
    client.post("/v1/answer", json={**body, "handle_impossible_answer": True})
    client.post("/v1/answer/batch", json={"items": [{**body, "handle_impossible_answer": True}] * 2})
    found = samples(client)
    assert value(found, ABSTENTION_ALLOWED + "_total") == 3
    assert value(found, ABSTENTIONS + "_total") == 3
    assert value(found, "qa_answer_score_count") == 1  # only the answer that was not an abstention


def test_low_confidence_answers_use_the_models_threshold(tiny_engine, tiny_settings):
    certain = dataclasses.replace(tiny_engine.params, low_confidence_score=0.0)
    doubtful = dataclasses.replace(tiny_engine.params, low_confidence_score=1.0)
    counts = []
    for params in (certain, doubtful):
        original, tiny_engine.params = tiny_engine.params, params
        try:  # the threshold is read once, when the app has loaded the model
            client = create_app(tiny_engine, tiny_settings).test_client()
        finally:
            tiny_engine.params = original
        client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT})
        counts.append(value(samples(client), LOW_CONFIDENCE + "_total"))
    assert counts == [0, 1]


def test_the_pipeline_route_is_observed_too(fresh_client):
    response = fresh_client.post("/v1/question-answering", json={"inputs": {"question": QUESTION, "context": CONTEXT}})
    assert response.status_code == 200
    assert value(samples(fresh_client), "qa_answer_score_count") == 1


def test_the_prediction_log_has_request_ids_hashes_and_lengths_never_text(tiny_engine, tiny_settings, tmp_path):
    log = tmp_path / "predictions.jsonl"
    settings = dataclasses.replace(tiny_settings, prediction_log=log, prediction_log_sample=1.0)
    client = create_app(tiny_engine, settings).test_client()
    one = client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT}, headers={"X-Request-ID": "req-1"})
    batch = client.post("/v1/answer/batch", json={"items": [{"question": QUESTION, "context": CONTEXT},
                                                            {"question": "When?", "context": [CONTEXT, "Other."]}]})
    text = log.read_text()
    assert QUESTION not in text and "Miriam" not in text and "lighthouse" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["request_id"] for line in lines] == ["req-1", batch.headers["X-Request-ID"],
                                                      batch.headers["X-Request-ID"]]
    first = lines[0]
    assert first["route"] == "/v1/answer" and first["model"] == "tiny-bert" and first["backend"] == "torch"
    assert first["context_chars"] == len(CONTEXT) and len(first["context_sha256"]) == 64
    assert first["answer"]["start"] == one.get_json()["start"] and first["read"]["windows"] == 1
    assert lines[2]["passages"] == 2


def test_the_prediction_log_samples_whole_requests(tiny_engine, tiny_settings, tmp_path):
    log = tmp_path / "predictions.jsonl"
    settings = dataclasses.replace(tiny_settings, prediction_log=log, prediction_log_sample=0.5)
    app = create_app(tiny_engine, settings)
    draws = iter([0.9, 0.1])  # the first request is out, the second in
    app.extensions["qa"].slot.engine.predictions._draw = lambda: next(draws)
    client = app.test_client()
    items = {"items": [{"question": QUESTION, "context": CONTEXT, "top_k": k} for k in (1, 2)]}  # two engine calls
    client.post("/v1/answer/batch", json=items, headers={"X-Request-ID": "out"})
    client.post("/v1/answer/batch", json=items, headers={"X-Request-ID": "in"})
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["in", "in"]
