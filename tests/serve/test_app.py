"""Every route and every error of the HTTP API, through Flask's test client and a tiny random model."""

from __future__ import annotations

import json
import re
import shutil
import threading

import pytest

from qa.decoding import Answer
from qa.errors import ModelLoadError, SettingsError
from qa.model_dir import check_model_dir
from serve.app import WARMUP_QUESTION, create_app
from serve.settings import Settings

QUESTION = "Who discovered radium?"
CONTEXT = (
    "Marie Curie and Pierre Curie discovered radium and polonium in 1898. She won the Nobel Prize\t"
    "in Physics in 1903  and in Chemistry in 1911."
)


def post(client, path, body, content_type="application/json"):
    """POST `body` encoded as JSON."""
    return client.post(path, data=json.dumps(body), content_type=content_type)


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]


# ---------------------------------------------------------------- answers


def test_answer_matches_the_engine_and_is_a_span_of_the_context(client, tiny_engine):
    response = post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"answer", "score", "start", "end", "model", "backend", "elapsed_ms"}
    assert CONTEXT[body["start"] : body["end"]] == body["answer"] != ""
    expected = tiny_engine.answer(QUESTION, CONTEXT)[0]
    assert (body["answer"], body["start"], body["end"]) == (expected.text, expected.start, expected.end)
    assert body["score"] == pytest.approx(expected.score)
    assert body["model"] == "tiny-bert" and body["backend"] == "torch"
    assert body["elapsed_ms"] > 0
    assert response.headers["Content-Type"] == "application/json"


def test_top_k_adds_distinct_ranked_answers(client, tiny_engine):
    body = post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT, "top_k": 5}).get_json()
    answers = body["answers"]
    assert 1 <= len(answers) <= 5
    assert len({a["answer"] for a in answers}) == len(answers)
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert {k: answers[0][k] for k in ("answer", "start", "end")} == {
        k: body[k] for k in ("answer", "start", "end")
    }
    for a in answers:
        assert CONTEXT[a["start"] : a["end"]] == a["answer"]
    expected = [a.text for a in tiny_engine.answer(QUESTION, CONTEXT, top_k=5)]
    assert [a["answer"] for a in answers] == expected


def test_max_answer_len_is_passed_to_the_decoder(client, tiny_engine):
    body = post(
        client, "/v1/answer", {"question": QUESTION, "context": CONTEXT, "max_answer_len": 1}
    ).get_json()
    expected = tiny_engine.answer(QUESTION, CONTEXT, max_answer_length=1)[0]
    assert (body["answer"], body["start"], body["end"]) == (expected.text, expected.start, expected.end)
    # One token of this context never holds a space.
    assert " " not in body["answer"]


def test_without_top_k_there_is_no_answers_list(client):
    body = post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT}).get_json()
    assert "answers" not in body


def test_batch_answers_in_order_with_per_item_options(client, tiny_engine):
    items = [
        {"question": QUESTION, "context": CONTEXT},
        {"question": "When did she win in Chemistry?", "context": CONTEXT, "top_k": 3},
        {"question": "Which element?", "context": "Polonium is named after Poland.", "max_answer_len": 2},
    ]
    response = post(client, "/v1/answer/batch", {"items": items})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == "tiny-bert" and len(body["results"]) == 3
    for item, result in zip(items, body["results"], strict=True):
        expected = tiny_engine.answer(
            item["question"],
            item["context"],
            top_k=item.get("top_k", 1),
            max_answer_length=item.get("max_answer_len"),
        )
        assert (result["answer"], result["start"], result["end"]) == (
            expected[0].text,
            expected[0].start,
            expected[0].end,
        )
        assert ("answers" in result) == ("top_k" in item)
    assert [a["answer"] for a in body["results"][1]["answers"]] == [
        a.text for a in tiny_engine.answer(items[1]["question"], CONTEXT, top_k=3)
    ]


def test_a_60000_character_context_is_answered_across_windows(client):
    sentence = "The quick brown fox number {} jumps over the lazy dog near the river bank. "
    context = "".join(sentence.format(i) for i in range(900))[:60_500]
    assert len(context) >= 60_000
    response = post(client, "/v1/answer", {"question": "Which fox jumps?", "context": context, "top_k": 3})
    assert response.status_code == 200
    body = response.get_json()
    assert context[body["start"] : body["end"]] == body["answer"]


def test_unicode_offsets_are_code_point_offsets(client):
    context = "Ça coûte 5 €\t\tà Zürich — 東京タワー 🚀👩‍🔬 naïve  café."
    for question in ("Where?", "What costs?", "東京?"):
        body = post(client, "/v1/answer", {"question": question, "context": context, "top_k": 10}).get_json()
        for a in [body, *body["answers"]]:
            assert context[a["start"] : a["end"]] == a["answer"]


def test_utf8_body_without_ascii_escapes(client):
    context = "東京タワーは東京都港区芝公園にある総合電波塔です。"
    raw = json.dumps({"question": "どこ?", "context": context}, ensure_ascii=False).encode("utf-8")
    body = client.post("/v1/answer", data=raw, content_type="application/json; charset=utf-8").get_json()
    assert context[body["start"] : body["end"]] == body["answer"]


# ---------------------------------------------------------------- client errors


@pytest.mark.parametrize(
    "data,content_type,status,code",
    [
        ("{", "application/json", 400, "malformed_json"),
        ('{"question": "a", "context": "b",}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe\x00garbage", "application/json", 400, "malformed_json"),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400, "malformed_json"),
        ('{"question": "a", "context": "b"}', "text/plain", 415, "unsupported_media_type"),
        ("question=a&context=b", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"question": "a", "context": "b"}', "", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies_and_wrong_content_types(client, data, content_type, status, code):
    for path in ("/v1/answer", "/v1/answer/batch"):
        response = client.post(path, data=data, content_type=content_type or None)
        assert response.status_code == status
        assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    "body,field,code",
    [
        ({"context": CONTEXT}, "question", "missing_field"),
        ({"question": QUESTION}, "context", "missing_field"),
        ({"question": None, "context": CONTEXT}, "question", "missing_field"),
        ({"question": "", "context": CONTEXT}, "question", "empty_field"),
        ({"question": QUESTION, "context": ""}, "context", "empty_field"),
        ({"question": " \t\n ", "context": CONTEXT}, "question", "empty_field"),
        ({"question": QUESTION, "context": "\u3000\u00a0 \n"}, "context", "empty_field"),
        ({"question": 42, "context": CONTEXT}, "question", "invalid_field"),
        ({"question": QUESTION, "context": ["a", 3]}, "context[1]", "invalid_field"),
        ({"question": QUESTION, "context": []}, "context", "empty_field"),
        ({"question": QUESTION, "context": ["a", " \n"]}, "context[1]", "empty_field"),
        ({"question": QUESTION, "context": [{"id": "p1"}]}, "context[0].text", "missing_field"),
        ({"question": QUESTION, "context": [{"text": "a", "id": 1.5}]}, "context[0].id", "invalid_field"),
        ({"question": QUESTION, "context": [{"text": "a", "page": 2}]}, "context[0].page", "unknown_field"),
        ({"question": QUESTION, "context": [[CONTEXT]]}, "context[0]", "invalid_field"),
        ({"question": QUESTION, "context": ["\x00\x01", "\x7f"]}, "context", "no_tokens"),
        ({"question": QUESTION, "context": CONTEXT, "max_windows": -1}, "max_windows", "out_of_range"),
        ({"question": QUESTION, "context": {"text": "a"}}, "context", "invalid_field"),
        ({"question": QUESTION, "context": "ok \ud800 lone surrogate"}, "context", "invalid_field"),
        ({"question": QUESTION, "context": CONTEXT, "top_k": 0}, "top_k", "out_of_range"),
        ({"question": QUESTION, "context": CONTEXT, "top_k": 11}, "top_k", "out_of_range"),
        ({"question": QUESTION, "context": CONTEXT, "top_k": "3"}, "top_k", "invalid_field"),
        ({"question": QUESTION, "context": CONTEXT, "top_k": True}, "top_k", "invalid_field"),
        ({"question": QUESTION, "context": CONTEXT, "top_k": 2.5}, "top_k", "invalid_field"),
        ({"question": QUESTION, "context": CONTEXT, "max_answer_len": 0}, "max_answer_len", "out_of_range"),
        ({"question": QUESTION, "context": CONTEXT, "max_answer_len": 101}, "max_answer_len", "out_of_range"),
        (
            {"question": QUESTION, "context": CONTEXT, "max_answer_length": 5},
            "max_answer_length",
            "unknown_field",
        ),
        ({"question": QUESTION, "context": "\x00\x01\x02\x7f"}, "context", "no_tokens"),
    ],
)
def test_invalid_fields_get_422_naming_the_field(client, body, field, code):
    response = post(client, "/v1/answer", body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == code
    assert f"'{field}'" in error["message"]
    # The same item inside a batch names its position.
    batch = post(client, "/v1/answer/batch", {"items": [{"question": "ok?", "context": "fine"}, body]})
    assert batch.status_code == 422
    assert f"'items[1].{field}'" in error_of(batch)["message"]


@pytest.mark.parametrize("body", [[1, 2], "text", 3, None])
def test_a_body_that_is_not_an_object_is_422(client, body):
    for path in ("/v1/answer", "/v1/answer/batch"):
        response = post(client, path, body)
        assert response.status_code == 422
        assert error_of(response)["code"] == "invalid_body"


@pytest.mark.parametrize(
    "body,message",
    [
        ({}, "'items' is required"),
        ({"items": {"question": "a"}}, "'items' must be an array"),
        ({"items": []}, "'items' must hold at least one item"),
        ({"items": [{"question": "a", "context": "b"}], "extra": 1}, "unknown field(s) 'extra'"),
        ({"items": ["text"]}, "'items[0]' must be a JSON object"),
    ],
)
def test_batch_shape_errors(client, body, message):
    response = post(client, "/v1/answer/batch", body)
    assert response.status_code == 422
    assert message in error_of(response)["message"]


def test_context_over_the_limit_is_413_stating_the_limit(client, tiny_settings):
    limit = tiny_settings.max_context_chars
    assert limit == 100_000
    response = post(client, "/v1/answer", {"question": QUESTION, "context": "a" * (limit + 1)})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "context_too_long"
    assert f"{limit} characters" in error["message"] and "'context'" in error["message"]


def test_question_over_the_limit_is_413(client, tiny_settings):
    response = post(
        client, "/v1/answer", {"question": "q" * (tiny_settings.max_question_chars + 1), "context": "c"}
    )
    assert response.status_code == 413
    assert str(tiny_settings.max_question_chars) in error_of(response)["message"]


def test_batch_limits_are_413(client, tiny_settings, tiny_engine, tiny_bert_dir):
    many = {"items": [{"question": "a?", "context": "b"}] * (tiny_settings.max_batch_items + 1)}
    response = post(client, "/v1/answer/batch", many)
    assert response.status_code == 413
    assert f"limit is {tiny_settings.max_batch_items} items" in error_of(response)["message"]
    small = create_app(
        tiny_engine, Settings(model_dir=tiny_bert_dir, max_batch_context_chars=1000)
    ).test_client()
    fits = {"items": [{"question": "a?", "context": "b " * 125}] * 4}
    assert post(small, "/v1/answer/batch", fits).status_code == 200
    too_long = {"items": [{"question": "a?", "context": "b " * 126}] * 4}
    response = post(small, "/v1/answer/batch", too_long)
    assert response.status_code == 413
    assert "1008 characters together; the limit is 1000 characters" in error_of(response)["message"]


def test_oversize_body_is_413_stating_the_byte_limit(tiny_engine, tiny_bert_dir):
    small = create_app(tiny_engine, Settings(model_dir=tiny_bert_dir, max_body_bytes=4096))
    client = small.test_client()
    body = {"question": QUESTION, "context": "x" * 5000}
    for response in (
        post(client, "/v1/answer", body),
        post(client, "/v1/answer/batch", {"items": [body]}),
        client.post("/", data=body),
    ):
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "payload_too_large" and "4096 bytes" in error["message"]


def test_unknown_routes_and_methods_get_json_404_405(client):
    response = client.get("/v2/answer")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = client.get("/v1/answer")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    response = client.delete("/healthz")
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    response = client.put("/")
    assert response.status_code == 405 and response.is_json


class ExplodingEngine:
    """Answers the warm-up question, then fails like a bug would."""

    def answer_many(self, questions, contexts, **options):
        if questions == [WARMUP_QUESTION]:
            return [[Answer("service", 4, 11, 1.0, 0.0)]]
        raise RuntimeError("secret internal detail")


def test_an_unexpected_error_is_a_json_500_without_a_trace(tiny_bert_dir, caplog):
    client = create_app(ExplodingEngine(), Settings(model_dir=tiny_bert_dir)).test_client()
    response = post(
        client,
        "/v1/answer",
        {"question": QUESTION, "context": CONTEXT},
    )
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(
        as_text=True
    )
    assert response.headers["X-Request-ID"] in error["message"]
    assert "secret internal detail" in caplog.text  # logged for the operator


# ---------------------------------------------------------------- readiness and loading


def test_readyz_is_503_until_the_model_is_loaded_and_warmed_up(tiny_engine, tiny_bert_dir):
    release = threading.Event()
    warmed = []

    class SlowEngine:
        backend = tiny_engine.backend

        def answer_many(self, questions, contexts, **options):
            warmed.append(questions)
            return tiny_engine.answer_many(questions, contexts, **options)

    def factory():
        assert release.wait(timeout=30)
        return SlowEngine()

    app = create_app(factory, Settings(model_dir=tiny_bert_dir, load_in_background=True))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503 and error_of(response)["code"] == "not_ready"
    response = post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "qa_model_ready 0.0" in client.get("/metrics").get_data(as_text=True)
    release.set()
    assert app.extensions["qa"].slot.loaded.wait(timeout=30)
    assert warmed == [[WARMUP_QUESTION]]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["backend"] == "torch"
    assert post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT}).status_code == 200
    assert "qa_model_ready 1.0" in client.get("/metrics").get_data(as_text=True)


def test_a_failed_background_load_is_reported_by_readyz(tmp_path):
    def factory():
        raise ModelLoadError(tmp_path / "gone", "no such directory")

    app = create_app(factory, Settings(model_dir=tmp_path / "gone", load_in_background=True))
    slot = app.extensions["qa"].slot
    slot.thread.join(timeout=30)
    assert not slot.loaded.is_set()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "no such directory" in error_of(response)["message"]


def test_eager_create_app_raises_the_model_load_error(tmp_path):
    from qa.engine import QAEngine

    missing = tmp_path / "missing"
    with pytest.raises(ModelLoadError, match="no such directory"):
        create_app(lambda: QAEngine.from_model_dir(missing), Settings(model_dir=missing))


# ---------------------------------------------------------------- probes, metrics, docs, headers


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["model"] == "tiny-bert"
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", body["version"])


def test_metrics_count_requests_by_route_and_status(app, tiny_bert_dir):
    client = app.test_client()

    def sample(text: str, name: str, **labels) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                got = line[len(name) :].split(" ")[0].strip("{}")
                if ",".join(sorted(got.split(","))) == wanted:
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = client.get("/metrics").get_data(as_text=True)
    post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT})
    post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT})
    post(client, "/v1/answer", {"question": "", "context": CONTEXT})
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    after = response.get_data(as_text=True)
    ok = {"route": "/v1/answer", "method": "POST", "status": "200"}
    bad = {**ok, "status": "422"}
    assert sample(after, "qa_http_requests_total", **ok) - sample(before, "qa_http_requests_total", **ok) == 2
    assert (
        sample(after, "qa_http_requests_total", **bad) - sample(before, "qa_http_requests_total", **bad) == 1
    )
    count = "qa_http_request_duration_seconds_count"
    assert sample(after, count, route="/v1/answer") - sample(before, count, route="/v1/answer") == 3
    assert sample(after, "qa_http_requests_in_flight") == 1  # this /metrics request
    info = [line for line in after.splitlines() if line.startswith("qa_model_info{")]
    assert len(info) == 1 and 'model="tiny-bert"' in info[0] and 'backend="torch"' in info[0]


def test_openapi_documents_every_route_method_and_error(app, client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = doc["paths"][rule.rule][method.lower()]
            assert {"404", "405", "500"} <= set(operation["responses"]), (rule.rule, method)
    for path in ("/v1/answer", "/v1/answer/batch"):
        assert {"200", "400", "413", "415", "422", "503"} <= set(doc["paths"][path]["post"]["responses"])

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        name = ref.removeprefix("#/components/schemas/")
        assert name in doc["components"]["schemas"], ref
    limits = doc["components"]["schemas"]["AnswerRequest"]["properties"]
    assert limits["context"]["oneOf"][0]["maxLength"] == 100_000 and limits["top_k"]["maximum"] == 10
    assert limits["context"]["oneOf"][1]["maxItems"] == 1_000


def test_request_id_is_echoed_or_generated(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces <and> symbols"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])


def test_no_cors_headers_by_default(client):
    for response in (
        client.get("/healthz", headers={"Origin": "https://evil.example"}),
        client.options(
            "/v1/answer", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        ),
        post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT}),
    ):
        assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


# ---------------------------------------------------------------- the HTML form


def test_form_page(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'name="question"' in html and 'name="context"' in html and 'method="post"' in html
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert client.get("/static/style.css").status_code == 200


def test_form_post_highlights_the_escaped_answer(client, tiny_engine):
    question = 'Who <b>found</b> "it"?'
    context = "<script>alert(1)</script> Marie Curie & Pierre found radium in 1898."
    response = client.post("/", data={"question": question, "context": context})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<script>" not in html and "<b>found" not in html
    expected = tiny_engine.answer(question, context)[0]
    highlighted = re.search(r'<pre id="highlighted">(.*?)</pre>', html, re.S).group(1)
    escape = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    assert highlighted.replace("&#34;", '"').replace("&#39;", "'") == (
        escape(context[: expected.start])
        + "<mark>"
        + escape(expected.text)
        + "</mark>"
        + escape(context[expected.end :])
    )
    assert f"{expected.score:.3f}" in html


def test_form_errors_are_shown_with_their_status(client):
    response = client.post("/", data={"question": "   ", "context": CONTEXT})
    assert response.status_code == 422 and response.mimetype == "text/html"
    assert "must not be whitespace only" in response.get_data(as_text=True)
    response = client.post("/", data={"question": "q", "context": "c" * 100_001})
    assert response.status_code == 413 and "100000 characters" in response.get_data(as_text=True)
    response = post(client, "/", {"question": "q", "context": "c"})
    assert response.status_code == 415 and response.mimetype == "text/html"


# ---------------------------------------------------------------- settings and model checks


def test_settings_from_env_validates_values(tmp_path):
    settings = Settings.from_env({"QA_MODEL_DIR": str(tmp_path / "m"), "QA_MAX_CONTEXT_CHARS": "70000"})
    assert settings.max_context_chars == 70_000 and settings.model_name == "m"
    assert Settings.from_env({}).model_dir.as_posix() == "models/minilm-l6-squad"
    with pytest.raises(SettingsError, match="QA_MAX_CONTEXT_CHARS='lots' is not an integer"):
        Settings.from_env({"QA_MAX_CONTEXT_CHARS": "lots"})
    with pytest.raises(SettingsError, match="QA_MAX_BATCH_ITEMS=0 is below the minimum 1"):
        Settings.from_env({"QA_MAX_BATCH_ITEMS": "0"})
    with pytest.raises(SettingsError, match="QA_LOAD_IN_BACKGROUND"):
        Settings.from_env({"QA_LOAD_IN_BACKGROUND": "maybe"})


def test_check_model_dir_names_the_problem(tiny_bert_dir, tmp_path):
    check_model_dir(tiny_bert_dir)
    with pytest.raises(ModelLoadError, match="no such directory"):
        check_model_dir(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors is truncated"):
        check_model_dir(broken)
    weights.unlink()
    with pytest.raises(ModelLoadError, match="no weights file"):
        check_model_dir(broken)
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json is unreadable"):
        check_model_dir(broken)
    (broken / "config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"config\.json is missing"):
        check_model_dir(broken)


def test_responses_and_requests_match_the_openapi_schemas(client):
    jsonschema = pytest.importorskip("jsonschema")
    doc = client.get("/openapi.json").get_json()

    def validator(name: str):
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        return jsonschema.Draft202012Validator(schema)

    good = {"question": QUESTION, "context": CONTEXT, "top_k": 2}
    validator("AnswerRequest").validate(good)
    validator("AnswerResponse").validate(post(client, "/v1/answer", good).get_json())
    batch = {"items": [good, {"question": "When?", "context": CONTEXT}]}
    validator("BatchRequest").validate(batch)
    validator("BatchResponse").validate(post(client, "/v1/answer/batch", batch).get_json())
    validator("Error").validate(post(client, "/v1/answer", {"question": QUESTION}).get_json())
    validator("Ready").validate(client.get("/readyz").get_json())
    validator("Status").validate(client.get("/healthz").get_json())
    # What the schema forbids, the server refuses too.
    for bad in ({"question": QUESTION}, {**good, "top_k": 11}, {**good, "extra": 1}, {**good, "context": ""}):
        assert not validator("AnswerRequest").is_valid(bad)
        assert post(client, "/v1/answer", bad).status_code == 422


def test_requests_during_shutdown_get_503_not_500(tiny_engine, tiny_settings):
    from serve.batching import MicroBatcher

    batcher = MicroBatcher(tiny_engine)
    client = create_app(batcher, tiny_settings).test_client()
    assert client.get("/readyz").status_code == 200
    batcher.close()  # what a worker does while it drains for shutdown
    response = client.post("/v1/answer", json={"question": "Who?", "context": "Ada wrote it."})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert response.headers["Retry-After"] == "1"


# ---------------------------------------------------------------- abstention (handle_impossible_answer)


def test_handle_impossible_answer_gives_the_pipelines_empty_answer(abstaining_client, abstaining_engine):
    body = post(abstaining_client, "/v1/answer",
                {"question": QUESTION, "context": CONTEXT, "handle_impossible_answer": True}).get_json()
    assert (body["answer"], body["start"], body["end"]) == ("", 0, 0)
    expected = abstaining_engine.answer(QUESTION, CONTEXT, handle_impossible_answer=True)[0]
    assert expected.text == "" and body["score"] == pytest.approx(expected.score)
    assert 0 < body["score"] <= 1  # p(no answer) among the n-best spans and the null


@pytest.mark.parametrize("flag", [False, None, "absent"])
def test_without_the_flag_the_service_never_abstains(abstaining_client, flag):
    item = {"question": QUESTION, "context": CONTEXT}
    if flag != "absent":
        item["handle_impossible_answer"] = flag
    body = post(abstaining_client, "/v1/answer", item).get_json()
    assert body["answer"] != "" and CONTEXT[body["start"] : body["end"]] == body["answer"]


def test_a_threshold_no_null_score_reaches_keeps_the_span(tiny_bert_dir, tiny_settings, tmp_path):
    from helpers import model_with_null_threshold

    from qa.engine import QAEngine

    model_dir = model_with_null_threshold(tiny_bert_dir, tmp_path / "never", 1e6)
    client = create_app(QAEngine.from_model_dir(model_dir, backend="torch", threads=1), tiny_settings).test_client()
    body = post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT,
                                       "handle_impossible_answer": True}).get_json()
    assert body["answer"] != "" and CONTEXT[body["start"] : body["end"]] == body["answer"]


def test_top_k_ranks_the_empty_answer_among_the_spans(abstaining_client):
    body = post(abstaining_client, "/v1/answer", {"question": QUESTION, "context": CONTEXT, "top_k": 3,
                                                  "handle_impossible_answer": True}).get_json()
    texts = [a["answer"] for a in body["answers"]]
    assert texts[0] == "" and all(texts[1:]) and len(texts) == 3


@pytest.mark.parametrize("value", ["yes", 1, 0, [], {}])
def test_handle_impossible_answer_must_be_a_boolean(client, value):
    response = post(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT,
                                           "handle_impossible_answer": value})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_field"
    assert "field 'handle_impossible_answer' must be true or false" in error["message"]


def test_handle_impossible_answer_in_a_batch_item_is_named_with_its_index(client):
    items = [{"question": QUESTION, "context": CONTEXT}, {"question": QUESTION, "context": CONTEXT,
                                                         "handle_impossible_answer": "no"}]
    error = error_of(post(client, "/v1/answer/batch", {"items": items}))
    assert "field 'items[1].handle_impossible_answer' must be true or false, got a string" in error["message"]


def test_a_batch_mixes_abstaining_and_answering_items(abstaining_client):
    items = [{"question": QUESTION, "context": CONTEXT, "handle_impossible_answer": True},
             {"question": QUESTION, "context": CONTEXT}]
    results = post(abstaining_client, "/v1/answer/batch", {"items": items}).get_json()["results"]
    assert results[0]["answer"] == "" and results[1]["answer"] != ""


def test_the_openapi_document_declares_the_field(client):
    props = client.get("/openapi.json").get_json()["components"]["schemas"]["AnswerRequest"]["properties"]
    assert props["handle_impossible_answer"]["type"] == ["boolean", "null"]
    assert props["handle_impossible_answer"]["default"] is False


def test_the_form_says_plainly_that_the_text_does_not_hold_the_answer(abstaining_client):
    ticked = abstaining_client.post("/", data={"question": QUESTION, "context": CONTEXT,
                                               "handle_impossible_answer": "true"})
    page = ticked.get_data(as_text=True)
    assert ticked.status_code == 200 and "The text does not contain the answer." in page
    assert 'id="handle_impossible_answer" name="handle_impossible_answer" type="checkbox" value="true" checked' in page
    unticked = abstaining_client.post("/", data={"question": QUESTION, "context": CONTEXT}).get_data(as_text=True)
    assert "The text does not contain the answer." not in unticked and "<mark>" in unticked


def test_the_api_docs_are_bundled_and_only_they_relax_the_csp(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "http" not in csp  # no CDN
    for asset in ("/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"):
        assert asset in page.get_data(as_text=True) and client.get(asset).status_code == 200
    assert "unsafe-inline" not in client.get("/").headers["Content-Security-Policy"]  # the form keeps the strict one


# ---------------------------------------------------------------- passages

PASSAGES = ["Pierre Curie was born in Paris in 1859.", CONTEXT, "Polonium is named after Poland."]


def test_passages_answer_names_the_passage_and_offsets_inside_it(client, tiny_engine):
    body = {"question": QUESTION, "context": [PASSAGES[0], {"text": PASSAGES[1], "id": "curie-2"},
                                              {"text": PASSAGES[2], "id": 7}], "top_k": 3}
    result = post(client, "/v1/answer", body).get_json()
    expected = tiny_engine.answer(QUESTION, PASSAGES, top_k=3)
    for got in [result, *result["answers"]]:
        index = got["passage"]["index"]
        assert PASSAGES[index][got["start"] : got["end"]] == got["answer"]
        assert got["passage"] == {"index": index, **({"id": ["", "curie-2", 7][index]} if index else {})}
    assert [(a["answer"], a["passage"]["index"]) for a in result["answers"]] == [(a.text, a.passage) for a in expected]


def test_an_abstention_over_passages_names_no_passage(abstaining_client):
    body = {"question": QUESTION, "context": PASSAGES, "handle_impossible_answer": True}
    result = post(abstaining_client, "/v1/answer", body).get_json()
    assert (result["answer"], result["start"], result["end"], result["passage"]) == ("", 0, 0, None)


def test_passage_limits_apply_to_the_total_and_name_the_field(tiny_engine):
    app = create_app(tiny_engine, Settings(model_dir=tiny_engine.model_dir, max_context_chars=100, max_passages=3))
    client = app.test_client()
    too_long = post(client, "/v1/answer", {"question": QUESTION, "context": ["a" * 60, "b" * 50]})
    assert too_long.status_code == 413
    assert error_of(too_long)["code"] == "context_too_long" and "'context'" in error_of(too_long)["message"]
    assert "110 characters" in error_of(too_long)["message"]
    too_many = post(client, "/v1/answer", {"question": QUESTION, "context": ["a", "b", "c", "d"]})
    assert too_many.status_code == 413 and error_of(too_many)["code"] == "too_many_passages"
    assert post(client, "/v1/answer", {"question": QUESTION, "context": ["a" * 50, "b" * 50]}).status_code == 200
    batch = post(client, "/v1/answer/batch", {"items": [{"question": QUESTION, "context": ["a" * 60, "b" * 50]}]})
    assert batch.status_code == 413 and "'items[0].context'" in error_of(batch)["message"]


def test_the_pipeline_route_keeps_lists_as_a_batch(client):
    body = {"inputs": [{"question": QUESTION, "context": PASSAGES[0]}, {"question": QUESTION, "context": CONTEXT}]}
    response = post(client, "/v1/question-answering", body)
    assert response.status_code == 200 and isinstance(response.get_json(), list) and len(response.get_json()) == 2
    as_passages = post(client, "/v1/question-answering", {"inputs": {"question": QUESTION, "context": PASSAGES}})
    assert as_passages.status_code == 422 and "'inputs.context'" in error_of(as_passages)["message"]
