"""Fuzz the real server from its own OpenAPI document (schemathesis): no 5xx, every response as specified.

One gunicorn (2 workers, tiny model) on a free loopback port; schemathesis loads /openapi.json from it
and Hypothesis generates valid (positive) and schema-violating (negative) requests for every operation.
Run with `-s` to see the tally of requests by operation and status.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Generated requests per (operationId, mode). The answering routes get most of them; the GET routes
# take no input, so Hypothesis stops after the few distinct requests it can make for them.
BUDGET = {
    ("answer", POSITIVE): 550,
    ("answer", NEGATIVE): 250,
    ("questionAnswering", POSITIVE): 250,
    ("questionAnswering", NEGATIVE): 150,
    ("answerBatch", POSITIVE): 350,
    ("answerBatch", NEGATIVE): 200,
    ("submitForm", POSITIVE): 300,
    ("submitForm", NEGATIVE): 200,
    ("form", POSITIVE): 10,
    ("healthz", POSITIVE): 10,
    ("readyz", POSITIVE): 10,
    ("metrics", POSITIVE): 10,
    ("apiDocs", POSITIVE): 5,
    ("swaggerCss", POSITIVE): 3,
    ("swaggerJs", POSITIVE): 3,
    # GET /openapi.json is not listed: schemathesis leaves out the operation that serves the schema.
}
# The feedback routes exist only with QA_FEEDBACK=on: the public setup turns it on.
FEEDBACK_BUDGET = {
    ("addFeedback", POSITIVE): 150,
    ("addFeedback", NEGATIVE): 150,
    ("listFeedback", POSITIVE): 30,
    ("deleteFeedback", POSITIVE): 30,
    ("submitFeedbackForm", POSITIVE): 100,
    ("submitFeedbackForm", NEGATIVE): 60,
}
MIN_REQUESTS = 2_000
# The service answers 413 (not 422) for a field over its documented length limit: a rejection too.
REJECTED = ["400", "404", "405", "413", "415", "422"]
# positive_data_acceptance is left out on purpose: the schema cannot say "not whitespace only" or
# "has a readable character", so some valid-by-schema requests are rightly answered 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


def answer_is_the_quoted_span(ctx, response, case) -> None:
    """Every 200 from the JSON API quotes its context: answer == context[start:end]."""
    if response.status_code != 200 or case.operation.path not in ("/v1/answer", "/v1/answer/batch"):
        return None
    body = json.loads(response.content)
    if case.operation.path == "/v1/answer":
        pairs = [(case.body, body)]
    else:
        pairs = list(zip(case.body["items"], body["results"], strict=True))
    for item, result in pairs:
        spans = [result, *result.get("answers", [])]
        for span in spans:
            context = item["context"]
            if isinstance(context, list):  # passages: the answer quotes the one it names
                if span["passage"] is None:
                    assert span["answer"] == "", f"an answer {span['answer']!r} names no passage"
                    continue
                passage = context[span["passage"]["index"]]
                context = passage["text"] if isinstance(passage, dict) else passage
            quoted = context[span["start"] : span["end"]]
            assert quoted == span["answer"], f"answer {span['answer']!r} is not context[start:end] {quoted!r}"
        if item.get("top_k") is not None:
            assert 1 <= len(result["answers"]) <= item["top_k"]
    return None


def error_code(response) -> str:
    """The API's error code of a JSON error response ("" for anything else)."""
    if response.status_code < 400 or "json" not in response.headers.get("content-type", [""])[0]:
        return ""
    return json.loads(response.content)["error"]["code"]


def fuzzer(operation, mode, budget: int, base_url: str, session, tally: Counter):
    """A Hypothesis test that sends `budget` generated requests to one operation and counts the answers."""
    operation_id = operation.definition.raw["operationId"]

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,  # failures are collected and reported below, without megabyte bodies
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        response = case.call_and_validate(
            base_url=base_url,
            session=session,
            checks=CHECKS,
            additional_checks=[answer_is_the_quoted_span],
            timeout=60,
        )
        tally[(operation_id, mode.value, response.status_code, error_code(response))] += 1

    return fuzz


FUZZ_KEY = "fuzzing-key-0123456789abcdefgh"
FUZZ_READER_KEY = "fuzzing-feedback-reader-key-0123"
# The public-endpoint setup: keys on, and a rate limiter in the path (too high a limit to refuse).
PUBLIC = {"QA_API_KEYS": FUZZ_KEY, "QA_RATE_LIMIT": "1000000/minute", "QA_CORS_ORIGINS": "https://app.example.com"}


@pytest.fixture(scope="module", params=["open", "public"])
def fuzz_server(request, tiny_bert_dir, tmp_path_factory):
    from gunicorn_server import running_server

    public = {**PUBLIC, "QA_FEEDBACK": "on", "QA_FEEDBACK_KEYS": FUZZ_READER_KEY,
              "QA_FEEDBACK_URL": f"sqlite:///{tmp_path_factory.mktemp('fuzz-feedback') / 'feedback.db'}"}

    with running_server(
        {
            "QA_MODEL_DIR": str(tiny_bert_dir),
            "QA_BACKEND": "torch",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "2",
            "QA_THREADS": "1",
            **(public if request.param == "public" else {}),
        }
    ) as server:
        server.setup = request.param
        yield server


def test_generated_requests_get_no_5xx_and_match_the_spec(fuzz_server):
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}
    )
    schema = schemathesis.openapi.from_url(fuzz_server.base_url + "/openapi.json", config=config)
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations[operation.definition.raw["operationId"]] = operation
    budget = BUDGET | (FEEDBACK_BUDGET if fuzz_server.setup == "public" else {})
    assert {op for op, _ in budget} == set(operations), "a new route needs a fuzz budget"

    session = requests.Session()
    # With keys on, every generated request carries a valid key (the access and feedback tests cover refusals);
    # the public setup gets half the budget: it repeats the open one's requests behind the checks.
    scale = 1.0
    if fuzz_server.setup == "public":
        # A feedback reader's key: it also passes the API-key check, so every route is reachable.
        session.headers["Authorization"] = f"Bearer {FUZZ_READER_KEY}"
        scale = 0.5
    tally: Counter[tuple[str, str, int, str]] = Counter()
    failures: dict[str, str] = {}
    for (operation_id, mode), requests_wanted in budget.items():
        fuzz = fuzzer(operations[operation_id], mode, max(3, int(requests_wanted * scale)), fuzz_server.base_url,
                      session, tally)
        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect all, then report them
            failures[f"{operation_id} ({mode.value})"] = f"{type(exc).__name__}: {exc}"[:3000]

    total = sum(tally.values())
    server_errors = sum(n for (_, _, status, _), n in tally.items() if status >= 500)
    lines = [
        f"{op:12} {mode:8} {status} {code:22} {n}" for (op, mode, status, code), n in sorted(tally.items())
    ]
    summary = f"{total} requests, {server_errors} with status 5xx\n" + "\n".join(lines)
    print(summary)
    if os.environ.get("FUZZ_SUMMARY"):
        with open(os.environ["FUZZ_SUMMARY"], "w") as handle:
            handle.write(summary + "\n")
    assert not failures, "\n\n".join(f"== {name}\n{text}" for name, text in failures.items()) + "\n" + summary
    assert server_errors == 0, summary
    assert total >= MIN_REQUESTS * scale, summary
    # The fuzzer must reach the model, not only the validator: most valid requests get answers.
    answered = sum(n for (op, _, status, _), n in tally.items() if op == "answer" and status == 200)
    assert answered >= BUDGET[("answer", POSITIVE)] * scale // 2, summary
    refused = sum(n for (_, _, status, _), n in tally.items() if status in (401, 429))
    assert refused == 0, "a request with a valid key was refused\n" + summary
    assert fuzz_server.process.poll() is None, "the server died under fuzzing\n" + fuzz_server.log()
