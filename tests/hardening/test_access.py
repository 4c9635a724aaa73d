"""Keys, rate limits and CORS for a public endpoint (serve/security.py): in the app, then against a real gunicorn."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess

import pytest

from serve.security import ApiKeys

KEY = "k3y-for-tests-0123456789abcdef"
OTHER_KEY = "another-valid-key-abcdefghijkl"
ALLOWED = "https://app.example.com"
REFUSED = "https://evil.example"
ASK = {"question": "Who built it?", "context": "Miriam Holt built the lighthouse in 1874."}


@pytest.fixture()
def make_client(hardening_engine, hardening_settings):
    from serve.app import create_app

    def make(**changes):
        return create_app(hardening_engine, dataclasses.replace(hardening_settings, **changes)).test_client()

    return make


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_keys_off_by_default_leaves_the_service_open(client):
    assert client.post("/v1/answer", json=ASK).status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").get_json()["components"]


@pytest.mark.parametrize("route, body", [("/v1/answer", ASK), ("/v1/answer/batch", {"items": [ASK]}),
                                         ("/v1/question-answering", {"inputs": ASK})])
def test_no_key_a_wrong_key_and_a_right_key(make_client, route, body):
    client = make_client(api_keys=(KEY, OTHER_KEY))
    missing = client.post(route, json=body)
    assert missing.status_code == 401 and error_code(missing) == "missing_api_key"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.post(route, json=body, headers={"Authorization": "Bearer " + KEY[:-1] + "X"})
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_api_key"
    assert KEY not in wrong.get_data(as_text=True)
    assert client.post(route, json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.post(route, json=body, headers={"X-API-Key": OTHER_KEY}).status_code == 200


@pytest.mark.parametrize("name", ["api_key", "key", "token", "access_token"])
def test_a_key_in_the_url_is_refused_even_when_right(make_client, name):
    client = make_client(api_keys=(KEY,))
    response = client.post(f"/v1/answer?{name}={KEY}", json=ASK, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400 and error_code(response) == "key_in_url"
    assert KEY not in response.get_data(as_text=True)


def test_probes_and_metrics_stay_open_unless_metrics_are_protected(make_client):
    client = make_client(api_keys=(KEY,))
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/"):
        assert client.get(path).status_code == 200, path
    protected = make_client(api_keys=(KEY,), metrics_require_key=True)
    assert protected.get("/metrics").status_code == 401
    assert protected.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
    assert protected.get("/healthz").status_code == 200


def test_the_form_asks_for_the_key_and_shows_a_refusal_on_its_page(make_client):
    client = make_client(api_keys=(KEY,))
    page = client.get("/").get_data(as_text=True)
    assert 'name="api_key"' in page and 'type="password"' in page
    refused = client.post("/", data={**ASK, "api_key": "not-the-key-at-all-0000"})
    assert refused.status_code == 401 and refused.mimetype == "text/html"
    assert "not valid" in refused.get_data(as_text=True)
    answered = client.post("/", data={**ASK, "api_key": KEY})
    assert answered.status_code == 200 and 'id="answer"' in answered.get_data(as_text=True)
    assert KEY not in answered.get_data(as_text=True)  # the key is never written back into the page


def test_the_openapi_document_states_the_key_and_the_limit(make_client):
    spec = make_client(api_keys=(KEY,), rate_limit="5/minute").get("/openapi.json").get_json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKeyHeader"}
    answer = spec["paths"]["/v1/answer"]["post"]
    assert answer["security"] and {"401", "429"} <= set(answer["responses"])
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_every_key_is_compared_in_constant_time_whichever_matches(monkeypatch):
    import serve.security as security

    compared = []
    real = security.hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", recording)
    keys = [f"key-number-{i}-abcdefghijklmnop" for i in range(5)]
    api_keys = ApiKeys(keys)
    for presented in (keys[0], keys[4], "no-such-key-abcdefghijklmnop", ""):
        compared.clear()
        found = api_keys.identify(presented)
        assert len(compared) == len(keys)  # no early exit on a match or a mismatch
        # Fixed-length digests, never the raw (variable-length) strings.
        assert all(len(a) == len(b) == 32 for a, b in compared)
        expected = hashlib.sha256(presented.encode()).hexdigest()[:12] if presented in keys else None
        assert found == expected


def test_short_keys_and_key_files(tmp_path):
    from qa.errors import SettingsError
    from serve.settings import Settings

    with pytest.raises(SettingsError, match="fewer than 16 characters") as raised:
        Settings.from_env({"QA_API_KEYS": "short"})
    assert "short" not in str(raised.value)  # a key is never echoed
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# rotated 2026-12-01\n{KEY}\n\n{OTHER_KEY}\n")
    settings = Settings.from_env({"QA_API_KEYS_FILE": str(keys_file), "QA_API_KEYS": KEY})
    assert settings.api_keys == (KEY, OTHER_KEY) and KEY not in repr(settings)
    keys_file.write_text("# nothing yet\n")
    with pytest.raises(SettingsError, match="holds no key"):
        Settings.from_env({"QA_API_KEYS_FILE": str(keys_file)})


def test_over_the_limit_gets_429_json_with_retry_after(make_client):
    client = make_client(rate_limit="3/minute")
    statuses = [client.post("/v1/answer", json=ASK).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    over = client.post("/v1/answer", json=ASK)
    assert over.status_code == 429 and error_code(over) == "too_many_requests"
    assert int(over.headers["Retry-After"]) > 0
    # Probes and metrics are never limited.
    assert all(client.get(path).status_code == 200 for path in ("/healthz", "/readyz", "/metrics") * 3)


def test_each_key_has_its_own_budget_and_bad_keys_spend_the_address(make_client):
    client = make_client(api_keys=(KEY, OTHER_KEY), rate_limit="2/minute")
    first = [client.post("/v1/answer", json=ASK, headers={"X-API-Key": KEY}).status_code for _ in range(3)]
    second = [client.post("/v1/answer", json=ASK, headers={"X-API-Key": OTHER_KEY}).status_code for _ in range(2)]
    assert first == [200, 200, 429] and second == [200, 200]
    guesses = [client.post("/v1/answer", json=ASK, headers={"X-API-Key": f"guess-{i:030d}"}).status_code
               for i in range(3)]
    assert guesses == [401, 401, 429]


def test_cors_preflight_from_an_allowed_and_a_refused_origin(make_client):
    client = make_client(cors_origins=(ALLOWED,), api_keys=(KEY,))
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, authorization"}
    allowed = client.options("/v1/answer", headers={"Origin": ALLOWED, **preflight})
    assert allowed.status_code == 200  # a preflight needs no key
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    refused = client.options("/v1/answer", headers={"Origin": REFUSED, **preflight})
    assert "Access-Control-Allow-Origin" not in refused.headers
    # The answer (and an error) carries the header, so browser code can read it.
    answered = client.post("/v1/answer", json=ASK, headers={"Origin": ALLOWED, "X-API-Key": KEY})
    assert answered.status_code == 200 and answered.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-ID" in answered.headers["Access-Control-Expose-Headers"]
    refused_key = client.post("/v1/answer", json=ASK, headers={"Origin": ALLOWED})
    assert refused_key.status_code == 401 and refused_key.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Origin" not in client.post("/v1/answer", json=ASK,
                                                             headers={"Origin": REFUSED, "X-API-Key": KEY}).headers


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"question": "Who built it?", "context": "Miriam Holt built the lighthouse in 1874."}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer KEY"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do io.write(string.format("status %d %d\\n", status, n)) end
end
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (.ci/run installs it)")
def test_a_real_gunicorn_under_wrk_answers_429_past_the_limit_and_never_5xx(start_gunicorn, tiny_bert_dir, tmp_path):
    server = start_gunicorn(QA_MODEL_DIR=str(tiny_bert_dir), QA_BACKEND="torch", WEB_CONCURRENCY="1",
                            GUNICORN_THREADS="4", QA_THREADS="1", QA_API_KEYS=KEY, QA_RATE_LIMIT="20/minute",
                            QA_CORS_ORIGINS=ALLOWED)
    server.wait_ready()
    assert server.request("POST", "/v1/answer", ASK)[0] == 401
    wrong = {"Authorization": "Bearer wrong-key-000000000000"}
    assert server.request("POST", "/v1/answer", ASK, headers=wrong)[0] == 401
    assert server.request("POST", f"/v1/answer?api_key={KEY}", ASK)[0] == 400
    status, headers, _ = server.request("OPTIONS", "/v1/answer", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ALLOWED
    status, headers, _ = server.request("OPTIONS", "/v1/answer", headers={
        "Origin": REFUSED, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in headers
    script = tmp_path / "post.lua"
    script.write_text(WRK_SCRIPT.replace("KEY", KEY))
    # Bounded: 2 connections for 3 seconds against the key's budget of 20 a minute (the refusals above
    # carried no valid key, so they spent the address's budget, not the key's).
    result = subprocess.run(["wrk", "-t1", "-c2", "-d3s", "-s", str(script), server.base_url + "/v1/answer"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    counts = {int(s): int(n) for s, n in re.findall(r"^status (\d+) (\d+)$", result.stdout, re.MULTILINE)}
    assert counts.get(200) == 20, result.stdout  # the budget, exactly: one worker's memory storage
    assert counts.get(429, 0) > 0, result.stdout
    assert not [s for s in counts if s >= 500], result.stdout
    status, headers, body = server.request("POST", "/v1/answer", ASK, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 429 and int(headers["Retry-After"]) > 0 and b"too_many_requests" in body
    assert server.request("GET", "/healthz")[0] == 200 and server.request("GET", "/metrics")[0] == 200
    server.terminate()
    server.finish()
    logs = "".join(server.stdout + server.stderr)
    assert '"query": "api_key=%5Bredacted%5D"' in logs  # the refused request is logged, its key is not
    assert KEY not in logs


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (.ci/run installs it)")
def test_a_redis_budget_is_shared_by_every_worker(start_gunicorn, tiny_bert_dir, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        server = start_gunicorn(QA_MODEL_DIR=str(tiny_bert_dir), QA_BACKEND="torch", WEB_CONCURRENCY="2",
                                GUNICORN_THREADS="1", QA_THREADS="1", QA_RATE_LIMIT="10/minute",
                                QA_RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{port}")
        server.wait_ready()
        # A new connection per request: either worker may take it; the budget is the one in Redis.
        statuses = [server.request("POST", "/v1/answer", ASK)[0] for _ in range(16)]
        assert statuses.count(200) == 10 and statuses.count(429) == 6, statuses
        import redis as redis_client

        assert redis_client.Redis(port=port).keys("*squad-qa*"), "the counts are not kept in Redis"
    finally:
        redis.terminate()
        redis.wait(10)
