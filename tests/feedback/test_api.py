"""POST /v1/feedback and reading it back, against the app and against 2 real gunicorn workers."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from feedback.store import FeedbackStore

READER = "feedback-reader-key-0123456789"
CONTEXT = "Miriam Holt built the lighthouse in 1874. It stands on the northern cape."
GOOD = {"question": "When was it built?", "context": CONTEXT, "answer": {"start": 0, "end": 11},
        "verdict": "wrong", "correction": {"start": 36, "end": 40}}


@pytest.fixture()
def settings(tiny_bert_dir, tmp_path):
    from serve.settings import Settings

    return Settings(model_dir=tiny_bert_dir, backend="torch", model_name="tiny-bert", feedback=True,
                    feedback_url=f"sqlite:///{tmp_path / 'feedback.db'}", feedback_keys=(READER,))


@pytest.fixture()
def client(settings):
    from qa.engine import QAEngine
    from serve.app import create_app

    engine = QAEngine.from_model_dir(settings.model_dir, backend="torch", threads=1)
    return create_app(engine, settings).test_client()


def stored(settings) -> list[dict]:
    return FeedbackStore(settings.feedback_url).items(limit=1000)


def test_the_openapi_document_has_every_feedback_route(client):
    import re

    doc = client.get("/openapi.json").get_json()
    rules = [r for r in client.application.url_map.iter_rules() if r.rule.startswith("/v1/feedback")]
    assert len(rules) == 2 + 1  # /v1/feedback (POST, GET) and /v1/feedback/<id> (DELETE)
    for rule in rules:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert {"404", "405", "500"} <= set(doc["paths"][path][method.lower()]["responses"])
    assert doc["components"]["schemas"]["FeedbackRequest"]["properties"]["verdict"]["enum"] == [
        "correct", "wrong", "unanswerable"]


def test_feedback_is_off_by_default(tiny_bert_dir):
    from qa.engine import QAEngine
    from serve.app import create_app
    from serve.settings import Settings

    app = create_app(QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1),
                     Settings(model_dir=tiny_bert_dir, backend="torch"))
    assert app.test_client().post("/v1/feedback", json=GOOD).status_code == 404


def test_a_verdict_is_stored_with_the_model_and_request_id(client, settings):
    response = client.post("/v1/feedback", json=GOOD, headers={"X-Request-ID": "req-7"})
    assert response.status_code == 201
    (row,) = stored(settings)
    assert row["id"] == response.get_json()["id"] and row["request_id"] == "req-7"
    assert row["model"] == "tiny-bert" and row["model_version"].startswith("sha256:") and row["source"] == "api"
    assert CONTEXT[row["correction_start"]:row["correction_end"]] == "1874"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'qa_feedback_verdicts_total{verdict="wrong"} 1.0' in metrics


@pytest.mark.parametrize("change, status, field", [
    ({"answer": {"start": 0, "end": len(CONTEXT) + 5}}, 422, "answer"),
    ({"correction": {"start": 70, "end": 90}}, 422, "correction"),
    ({"verdict": "meh"}, 422, "verdict"),
    ({"verdict": None}, 422, "verdict"),
    ({"answer": {"start": "0", "end": 11}}, 422, "answer.start"),
    ({"extra": 1}, 422, "extra"),
    ({"context": ["passage one", "passage two"]}, 422, "context"),
    ({"context": "x" * 100_001}, 413, "context"),
])
def test_bad_feedback_gets_a_4xx_naming_the_field_and_stores_nothing(client, settings, change, status, field):
    body = {k: v for k, v in (GOOD | change).items() if v is not None}
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == status, response.get_json()
    assert field in response.get_json()["error"]["message"]
    assert stored(settings) == []


def test_an_oversized_body_is_refused_and_stores_nothing(client, settings):
    response = client.post("/v1/feedback", data=json.dumps(GOOD | {"context": "x" * 9_000_000}),
                           content_type="application/json")
    assert response.status_code == 413 and stored(settings) == []


def test_reading_and_deleting_need_a_feedback_key(client, settings):
    client.post("/v1/feedback", json=GOOD)
    assert client.get("/v1/feedback").status_code == 401
    assert client.get("/v1/feedback", headers={"Authorization": "Bearer not-the-reader-key-000"}).status_code == 401
    page = client.get("/v1/feedback", headers={"Authorization": f"Bearer {READER}"}).get_json()
    (item,) = page["items"]
    assert item["context"] == CONTEXT and page["next_after"] == item["id"]
    assert client.delete(f"/v1/feedback/{item['id']}").status_code == 401
    assert client.delete(f"/v1/feedback/{item['id']}", headers={"X-API-Key": READER}).status_code == 204
    assert client.delete(f"/v1/feedback/{item['id']}", headers={"X-API-Key": READER}).status_code == 404
    assert stored(settings) == []


def test_without_reader_keys_nobody_reads_feedback_over_http(tiny_bert_dir, settings):
    from qa.engine import QAEngine
    from serve.app import create_app

    app = create_app(QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1),
                     dataclasses.replace(settings, feedback_keys=()))
    assert app.test_client().get("/v1/feedback", headers={"X-API-Key": READER}).status_code == 403


def test_with_api_keys_on_posting_feedback_needs_a_key_and_a_wrong_one_stores_nothing(tiny_bert_dir, settings):
    from qa.engine import QAEngine
    from serve.app import create_app

    key = "api-key-for-feedback-0123456789"
    app = create_app(QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1),
                     dataclasses.replace(settings, api_keys=(key,)))
    client = app.test_client()
    assert client.post("/v1/feedback", json=GOOD, headers={"X-API-Key": "wrong-key-000000000000"}).status_code == 401
    assert stored(settings) == []
    assert client.post("/v1/feedback", json=GOOD, headers={"X-API-Key": key}).status_code == 201
    # A feedback reader's key also answers questions; it never turned keys on by itself.
    assert client.get("/v1/feedback", headers={"X-API-Key": READER}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_gunicorn_workers_writing_at_once_lose_nothing(database, tiny_bert_dir, tmp_path, request):
    from gunicorn_server import running_server

    before: set[int] = set()  # a new SQLite file: the gunicorn master creates its tables before forking
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'feedback.db'}"
    else:  # the session's server may hold rows of other tests: count from here
        url = request.getfixturevalue("postgres_url")
        FeedbackStore(url).migrate()
        before = {r["id"] for r in FeedbackStore(url).items(limit=100_000)}
    env = {"QA_MODEL_DIR": str(tiny_bert_dir), "QA_BACKEND": "torch", "WEB_CONCURRENCY": "2",
           "GUNICORN_THREADS": "4", "QA_THREADS": "1", "QA_FEEDBACK": "on", "QA_FEEDBACK_URL": url}
    with running_server(env) as server:
        workers = server.wait_for_workers(2)
        failures: list[str] = []

        def post(client: int) -> None:
            for i in range(40):
                body = GOOD | {"question": f"client {client} question {i}?"}
                status, _, payload = server.request("POST", "/v1/feedback", body)
                if status != 201:
                    failures.append(f"{status} {payload[:200]!r}")

        threads = [threading.Thread(target=post, args=(c,)) for c in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert server.process.poll() is None and len(workers) == 2
    rows = [r for r in FeedbackStore(url).items(limit=100_000) if r["id"] not in before]
    assert len(rows) == 320 and len({r["question"] for r in rows}) == 320


def form_answer(client) -> dict:
    """The form page's hidden fields after asking the question (as a browser without JavaScript sees them)."""
    import re

    page = client.post("/", data={"question": "When was it built?", "context": CONTEXT}).get_data(as_text=True)
    assert 'id="feedback"' in page and "Not in the text" in page
    fields = dict(re.findall(r'<input type="hidden" (?:id="\w+" )?name="(\w+)" value="([^"]*)"', page))
    return {k: v for k, v in fields.items() if k in ("question", "context", "answer_start", "answer_end")}


def test_the_form_takes_a_typed_right_answer_without_javascript(client, settings):
    fields = form_answer(client)
    page = client.post("/feedback", data={**fields, "verdict": "wrong", "correction_text": "in  1874"})
    assert page.status_code == 200 and "stored as item" in page.get_data(as_text=True)
    (row,) = stored(settings)
    assert row["source"] == "form" and CONTEXT[row["correction_start"]:row["correction_end"]] == "in 1874"
    assert (row["answer_start"], row["answer_end"]) == (int(fields["answer_start"]), int(fields["answer_end"]))


def test_the_form_takes_selected_offsets_and_the_other_verdicts(client, settings):
    fields = form_answer(client)
    client.post("/feedback", data={**fields, "verdict": "wrong", "correction_start": "36", "correction_end": "40"})
    client.post("/feedback", data={**fields, "verdict": "unanswerable", "correction_text": "ignored"})
    client.post("/feedback", data={**fields, "verdict": "correct"})
    rows = stored(settings)
    assert [r["verdict"] for r in rows] == ["wrong", "unanswerable", "correct"]
    assert CONTEXT[rows[0]["correction_start"]:rows[0]["correction_end"]] == "1874"
    assert rows[1]["correction_start"] is None


def test_a_typed_answer_that_is_not_in_the_text_is_refused_on_the_page(client, settings):
    fields = form_answer(client)
    page = client.post("/feedback", data={**fields, "verdict": "wrong", "correction_text": "in 1901"})
    assert page.status_code == 422 and "must be words of the text" in page.get_data(as_text=True)
    assert stored(settings) == []
