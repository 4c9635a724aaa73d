"""Hostile inputs, one test each: the service answers or refuses clearly, never 5xx, never hangs.

Most run against the Flask test client; what gunicorn itself handles (chunked bodies, slow
clients) runs against a real gunicorn on a free loopback port.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
from gunicorn_server import GunicornServer, running_server

QUESTION = "Who built the lighthouse?"
CONTEXT = "The Harbor Point lighthouse was built in 1874 by the engineer Miriam Holt. It is 31 metres tall."
TEN_MB = 10 * 1024 * 1024


def post_json(client, path: str, body) -> tuple[int, dict]:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.get_json()


def assert_quotes_context(body: dict, context: str) -> None:
    assert 0 <= body["start"] <= body["end"] <= len(context)
    assert context[body["start"] : body["end"]] == body["answer"] != ""


def assert_still_answers(client) -> None:
    status, body = post_json(client, "/v1/answer", {"question": QUESTION, "context": CONTEXT})
    assert status == 200, body
    assert_quotes_context(body, CONTEXT)


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("path", ["/v1/answer", "/v1/answer/batch"])
def test_a_10_mb_body_is_refused_with_413(client, hardening_settings, path):
    body = json.dumps({"question": QUESTION, "context": "x" * TEN_MB}).encode()
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large"
    assert str(hardening_settings.max_body_bytes) in error["message"]
    assert_still_answers(client)


def test_a_10_mb_form_post_is_refused_with_413(client):
    response = client.post("/", data={"question": QUESTION, "context": "x" * TEN_MB})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        "[" * 200_000 + "]" * 200_000,
        '{"question": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + ', "context": "c"}',
    ],
    ids=["arrays", "objects-in-a-field"],
)
def test_deeply_nested_json_is_a_400_not_a_crash(client, body):
    response = client.post("/v1/answer", data=body, content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "malformed_json" and "nested too deeply" in error["message"]
    assert_still_answers(client)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"question": "Who \xff\xfe built it?", "context": "Miriam Holt built it."}',
        b'{"question": "Who built it?", "context": "Miriam \xc3\x28 Holt \xed\xa0\x80 built it."}',
        b"\xef\xbb\xbf\x80\x81",
    ],
    ids=["invalid-bytes", "overlong-and-surrogate", "bom-then-garbage"],
)
def test_invalid_utf8_in_a_json_body_is_a_400(client, raw):
    response = client.post("/v1/answer", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


def test_invalid_utf8_in_a_form_post_is_answered_or_refused_cleanly(client):
    body = b"question=Who%FF%FEbuilt+it%3F&context=Miriam+%C3%28Holt+built+the+lighthouse."
    response = client.post("/", data=body, content_type="application/x-www-form-urlencoded")
    # The form decoder replaces bad bytes with U+FFFD; the page then answers like any other text.
    assert response.status_code == 200
    assert b'id="answer"' in response.data


def test_nul_bytes_are_answered_with_offsets_into_the_original_context(client):
    context = "Miriam\x00Holt built the\x00 lighthouse in 1874.\x00"
    status, body = post_json(client, "/v1/answer", {"question": "Who\x00built it?", "context": context})
    assert status == 200, body
    assert_quotes_context(body, context)


def test_a_context_of_only_nul_bytes_has_no_readable_text(client):
    status, body = post_json(client, "/v1/answer", {"question": QUESTION, "context": "\x00" * 50})
    assert status == 422 and body["error"]["code"] == "no_tokens"


def test_a_raw_nul_byte_inside_a_json_string_is_a_400(client):
    raw = b'{"question": "Who\x00?", "context": "Miriam Holt built it."}'
    response = client.post("/v1/answer", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


# ---------------------------------------------------------------- sizes


def test_a_60000_character_context_is_answered_with_correct_offsets(client, hardening_engine):
    filler = "The committee met on a Tuesday and discussed the annual budget of the harbour. "
    fact = "The lighthouse keeper in 1901 was Agnes Whitlow of Port Henry. "
    context = (filler * 400)[:30_000] + fact + (filler * 400)[: 60_000 - 30_000 - len(fact)]
    assert len(context) == 60_000
    question = "Who was the lighthouse keeper in 1901?"
    status, body = post_json(client, "/v1/answer", {"question": question, "context": context, "top_k": 3})
    assert status == 200, body
    assert_quotes_context(body, context)
    for span in body["answers"]:
        assert_quotes_context(span, context)
    # The same spans as the engine gives directly: windows far into the context keep their offsets.
    expected = hardening_engine.answer(question, context, top_k=3)
    assert [(a["start"], a["end"]) for a in body["answers"]] == [(a.start, a.end) for a in expected]


def test_a_question_longer_than_the_window_is_truncated_and_answered(client, hardening_engine, tiny_bert_dir):
    from tokenizers import Tokenizer

    question = " ".join("7" * 499) + "?"  # 999 characters, 500 tokens
    tokenizer = Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    assert len(tokenizer.encode(question).ids) > hardening_engine.params.max_seq_length
    status, body = post_json(client, "/v1/answer", {"question": question, "context": CONTEXT})
    assert status == 200, body
    assert_quotes_context(body, CONTEXT)


def test_a_question_over_the_character_limit_is_a_413(client, hardening_settings):
    question = "why " * hardening_settings.max_question_chars
    status, body = post_json(client, "/v1/answer", {"question": question, "context": CONTEXT})
    assert status == 413 and body["error"]["code"] == "question_too_long"


# ---------------------------------------------------------------- odd text


@pytest.mark.parametrize("context", [" ", " \t\n\r " * 200, "\u00a0\u2003\u3000\n"])
def test_a_whitespace_only_context_is_a_422(client, context):
    status, body = post_json(client, "/v1/answer", {"question": QUESTION, "context": context})
    assert status == 422 and body["error"]["code"] == "empty_field"
    assert "'context'" in body["error"]["message"]


@pytest.mark.parametrize("context", ["!!!", "?!.,;:-()[]{}\"'" * 50, "... --- ... !!! ???"])
def test_a_punctuation_only_context_gets_a_punctuation_answer(client, context):
    status, body = post_json(client, "/v1/answer", {"question": QUESTION, "context": context})
    assert status == 200, body
    assert_quotes_context(body, context)


@pytest.mark.parametrize(
    "question, context",
    [
        ("ما هي عاصمة مصر؟", "القاهرة هي عاصمة مصر. يبلغ عدد سكانها أكثر من عشرين مليون نسمة."),
        ("מה בירת ישראל?", "ירושלים היא עיר הבירה. \u202eהטקסט הזה הפוך\u202c ואחריו טקסט רגיל."),
        ("Who wrote it?", "Le cafe\u0301 «Zo\u0308e» was written by Ame\u0301lie Poulain in 2001."),
        (
            "What is this?",
            "Z\u0336\u0337a\u0301\u0302\u0303l\u0308\u0309g\u030a\u030bo text h\u0334e\u0335re.",
        ),
    ],
    ids=["arabic", "hebrew-with-rlo", "decomposed-accents", "zalgo"],
)
def test_right_to_left_and_combining_text_gets_whole_characters(client, question, context):
    status, body = post_json(client, "/v1/answer", {"question": question, "context": context, "top_k": 5})
    assert status == 200, body
    for span in [body, *body["answers"]]:
        assert_quotes_context(span, context)
        # A span never ends between a letter and its combining accent ("cafe" out of "café").
        end = span["end"]
        assert end == len(context) or unicodedata.category(context[end]) not in ("Mn", "Me"), span
        assert unicodedata.category(context[span["start"]]) not in ("Mn", "Me"), span


def test_html_and_script_in_inputs_are_escaped_on_the_form_page(client):
    question = '<script>alert("q")</script>'
    context = 'Miriam Holt <img src=x onerror=alert(1)> built it. </textarea><script>alert("c")</script>'
    response = client.post("/", data={"question": question, "context": context})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<script>" not in page and "<img" not in page and "</textarea><" not in page
    assert "&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt;" in page or "&lt;script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # Scripts only from this server's own files (the feedback form's): no inline script can run.
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    # The JSON API returns the same text as data, never as a page a browser would render.
    api = client.post("/v1/answer", json={"question": question, "context": context})
    assert api.mimetype == "application/json" and api.headers["X-Content-Type-Options"] == "nosniff"


# ---------------------------------------------------------------- through gunicorn


@pytest.fixture(scope="module")
def short_timeout_server(tiny_bert_dir):
    with running_server(
        {
            "QA_MODEL_DIR": str(tiny_bert_dir),
            "QA_BACKEND": "torch",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "GUNICORN_TIMEOUT": "3",
            "GUNICORN_KEEPALIVE": "1",
            "QA_THREADS": "1",
        }
    ) as server:
        yield server


def answer_over_http(server: GunicornServer) -> float:
    """Seconds one normal question takes; asserts it is answered."""
    started = time.monotonic()
    status, _, raw = server.request(
        "POST", "/v1/answer", {"question": QUESTION, "context": CONTEXT}, timeout=20
    )
    assert status == 200, raw
    assert_quotes_context(json.loads(raw), CONTEXT)
    return time.monotonic() - started


@pytest.mark.slow
def test_a_10_mb_chunked_body_without_length_is_refused_by_gunicorn(short_timeout_server):
    def chunks():
        yield b'{"question": "Who?", "context": "'
        for _ in range(TEN_MB // 65536):
            yield b"x" * 65536
        yield b'"}'

    connection = http.client.HTTPConnection("127.0.0.1", short_timeout_server.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/v1/answer",
            body=chunks(),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        # Not a 400 "malformed JSON": the body is cut at the limit, and that must read as too large.
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    finally:
        connection.close()
    answer_over_http(short_timeout_server)


@pytest.mark.slow
def test_a_slow_client_does_not_stop_the_server_answering_others(short_timeout_server):
    """Slowloris: one client sends its headers a byte at a time for about 3 s; others get answers."""
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
        b"X-Padding: " + b"a" * 40 + b"\r\nConnection: close\r\n\r\n"
    )
    byte_interval_s = 3.0 / len(request)  # bounded: the whole request takes about 3 s

    def slow_client() -> bytes:
        with socket.create_connection(("127.0.0.1", short_timeout_server.port), timeout=20) as sock:
            for i in range(len(request)):
                sock.sendall(request[i : i + 1])
                time.sleep(byte_interval_s)  # the attack itself: trickle the bytes
            return sock.recv(65536)

    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(slow_client)
        # Normal requests keep being answered while the slow one trickles in (3 s > GUNICORN_TIMEOUT).
        answered = 0
        while not slow.done():
            assert answer_over_http(short_timeout_server) < 10
            answered += 1
        reply = slow.result()
    assert answered >= 3
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert short_timeout_server.process.poll() is None


@pytest.mark.slow
def test_idle_connections_are_closed_and_do_not_block_others(short_timeout_server):
    """Clients that connect and never send: gunicorn closes them; others are answered meanwhile.

    gthread gives each new connection a thread for up to 5 s while it waits for the first byte, so
    fewer idle connections than threads (here 3 of 4) leave threads free. More idle connections than
    threads delay everyone by 5 s per wave (measured: 10 s with 8 idle on 4 threads): in production a
    buffering proxy (nginx, an ingress) must hold slow and idle clients, as gunicorn's docs advise.
    """
    idle = [socket.create_connection(("127.0.0.1", short_timeout_server.port), timeout=30) for _ in range(3)]
    try:
        assert answer_over_http(short_timeout_server) < 4  # it did not wait out a 5 s idle slot
        for sock in idle:
            # recv returns b"" once the server has closed the connection; bounded by the socket timeout.
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
    answer_over_http(short_timeout_server)


@pytest.mark.slow
def test_invalid_bytes_in_the_request_line_are_a_400(short_timeout_server):
    with socket.create_connection(("127.0.0.1", short_timeout_server.port), timeout=20) as sock:
        sock.sendall(b"GET /\xff\xfe\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    answer_over_http(short_timeout_server)
