"""POST /v1/question-answering: the Hugging Face task shape, answered as the pipeline (and qa.QuestionAnswerer)."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from qa import QuestionAnswerer

QUESTION = "Who discovered radium?"
CONTEXT = "Marie Curie and Pierre Curie discovered radium and polonium in 1898 in Paris."
ROUTE = "/v1/question-answering"


def post(client, body):
    return client.post(ROUTE, data=json.dumps(body), content_type="application/json")


@pytest.fixture(scope="module")
def answerer(tiny_engine):
    return QuestionAnswerer(tiny_engine)


def test_one_input_answers_like_the_python_api(client, answerer):
    response = post(client, {"inputs": {"question": QUESTION, "context": CONTEXT}})
    assert response.status_code == 200
    assert response.get_json() == pytest.approx(answerer(question=QUESTION, context=CONTEXT))


def test_parameters_and_lists_take_the_pipeline_shapes(client, answerer):
    body = {"inputs": [{"question": QUESTION, "context": CONTEXT}, {"question": "Where?", "context": CONTEXT}],
            "parameters": {"top_k": 2, "max_answer_len": 4, "align_to_words": False}}
    got = post(client, body).get_json()
    expected = answerer(question=[QUESTION, "Where?"], context=[CONTEXT, CONTEXT], top_k=2, max_answer_len=4,
                        align_to_words=False)
    assert [[a["answer"] for a in answers] for answers in got] == [[a["answer"] for a in e] for e in expected]
    one = post(client, {"inputs": {"question": QUESTION, "context": CONTEXT}, "parameters": {"top_k": 3}}).get_json()
    assert isinstance(one, list) and isinstance(one[0], dict)


def test_a_mixed_list_of_dicts_and_lists_matches_the_published_schema(client):
    # A one-character context has a single candidate span, so the pipeline gives a dict for it even with
    # top_k > 1, beside lists for the others (the shape the fuzzer found outside the old schema).
    jsonschema = pytest.importorskip("jsonschema")
    doc = client.get("/openapi.json").get_json()
    body = {"inputs": [{"question": QUESTION, "context": "t"}, {"question": QUESTION, "context": CONTEXT}],
            "parameters": {"top_k": 2}}
    got = post(client, body).get_json()
    assert isinstance(got[0], dict) and isinstance(got[1], list)
    schema = {"$ref": "#/components/schemas/PipelineResponse", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(got)


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"inputs": "text"}, 422, "invalid_field", "field 'inputs' must be an object or an array"),
        ({}, 422, "missing_field", "field 'inputs' is required"),
        ({"inputs": []}, 422, "empty_field", "at least one input"),
        ({"inputs": {"question": QUESTION}}, 422, "missing_field", "field 'inputs.context' is required"),
        ({"inputs": [{"question": QUESTION, "context": CONTEXT, "extra": 1}]}, 422, "unknown_field",
         "'inputs[0].extra'"),
        ({"inputs": {"question": QUESTION, "context": CONTEXT}, "parameters": {"max_seq_len": 8}}, 422,
         "out_of_range", "field 'parameters.max_seq_len' must be between 32 and 512"),
        ({"inputs": {"question": QUESTION, "context": CONTEXT},
          "parameters": {"max_seq_len": 261, "doc_stride": 256, "max_question_len": 1}}, 422,
         "invalid_parameters", "a window moves on by 1 tokens; it must move on by at least 65"),
        ({"inputs": {"question": QUESTION, "context": CONTEXT}, "parameters": {"max_seq_len": 100_000}}, 422,
         "out_of_range", "must be between 32 and 512"),
        ({"inputs": {"question": QUESTION, "context": CONTEXT}, "parameters": {"padding": "longest"}}, 422,
         "unknown_field", "'parameters.padding'"),
        ({"inputs": {"question": QUESTION, "context": "\u200b"}}, 422, "no_tokens", "field 'inputs.context' has no"),
        ({"inputs": [{"question": QUESTION, "context": CONTEXT}] * 33}, 413, "too_many_items", "limit is 32"),
    ],
)
def test_mistakes_are_4xx_that_name_the_field(client, body, status, code, message):
    response = post(client, body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code and message in error["message"]


def test_a_short_window_derives_its_stride_and_question_room_as_the_pipeline(client, answerer):
    body = {"inputs": {"question": QUESTION, "context": CONTEXT}, "parameters": {"max_seq_len": 64}}
    response = post(client, body)
    assert response.status_code == 200
    assert response.get_json() == pytest.approx(answerer(question=QUESTION, context=CONTEXT, max_seq_len=64))


def test_the_route_is_in_the_openapi_document(client):
    doc = client.get("/openapi.json").get_json()
    assert "post" in doc["paths"][ROUTE]
    parameters = doc["components"]["schemas"]["PipelineRequest"]["properties"]["parameters"]["properties"]
    assert set(parameters) == {"top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
                               "handle_impossible_answer", "align_to_words"}
    assert parameters["align_to_words"]["default"] is True


def test_huggingface_hubs_inference_client_talks_to_the_service(app, answerer, monkeypatch):
    """The client real users have, pointed at a loopback server (offline mode lifted for it alone)."""
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = InferenceClient(model=f"http://127.0.0.1:{server.server_port}{ROUTE}")
        got = client.question_answering(question=QUESTION, context=CONTEXT)
        expected = answerer(question=QUESTION, context=CONTEXT)
        assert (got.answer, got.start, got.end) == (expected["answer"], expected["start"], expected["end"])
        top = client.question_answering(question=QUESTION, context=CONTEXT, top_k=2, max_answer_len=3)
        assert [a.answer for a in top] == [a["answer"] for a in answerer(question=QUESTION, context=CONTEXT,
                                                                          top_k=2, max_answer_len=3)]
    finally:
        server.shutdown()
        thread.join(10)
